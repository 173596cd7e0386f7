#if canImport(Glibc)
import Glibc
#endif
import OsqueryEngine

/// A small line editor for the REPL (what linenoise does for osquery):
/// cursor movement, history with up/down, TAB completion, Ctrl-C cancels
/// the line, Ctrl-D on an empty line ends input.
final class LineEditor {
    enum Input {
        case line(String)
        case cancelled
        case endOfInput
    }

    var history: [String] = []
    let historyPath: String?
    let maxHistory = 100
    var completions: (String) -> [String] = { _ in [] }

    init(historyPath: String?) {
        self.historyPath = historyPath
        // Never through a link: history read from another file would be written back into ours.
        if let historyPath, let bytes = FileIO.readAll(historyPath, limit: 1 << 20, openFlags: O_NOFOLLOW) {
            history = String(decoding: bytes, as: UTF8.self).split(separator: "\n").map(String.init).suffix(maxHistory).map { $0 }
        }
    }

    func addHistory(_ line: String) {
        let trimmed = line.trimmingCharacters()
        guard !trimmed.isEmpty, history.last != line else { return }
        history.append(line)
        if history.count > maxHistory { history.removeFirst(history.count - maxHistory) }
        if let historyPath { Self.save(history, to: historyPath) }
    }

    /// Replaces the history file with `lines`: written to a new file next to it, then renamed
    /// over it. Whatever is at the path (a link to another file included) is replaced, never
    /// written through, and a crash mid-write leaves the old history whole.
    static func save(_ lines: [String], to path: String) {
        let temporary = path + ".tmp-\(getpid())"
        var fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        if fd < 0 && errno == EEXIST {
            // Left by a shell of this pid that died: unlink removes a link, not its target.
            unlink(temporary)
            fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        }
        guard fd >= 0 else { return }
        ShellIO.writeAll(fd, lines.joined(separator: "\n") + "\n")
        close(fd)
        if rename(temporary, path) != 0 { unlink(temporary) }
    }

    private func write(_ s: String) { ShellIO.writeAll(1, s) }

    private func readByte() -> UInt8? {
        var b: UInt8 = 0
        while true {
            let n = read(0, &b, 1)
            if n == 1 { return b }
            if n < 0 && errno == EINTR { continue }
            return nil
        }
    }

    /// Read one line with editing; falls back to plain reads if raw mode fails.
    func readLine(prompt: String) -> Input {
        var original = termios()
        guard tcgetattr(0, &original) == 0 else { return plainRead(prompt: prompt) }
        var raw = original
        raw.c_iflag &= ~tcflag_t(BRKINT | ICRNL | INPCK | ISTRIP | IXON)
        raw.c_lflag &= ~tcflag_t(ECHO | ICANON | IEXTEN | ISIG)
        withUnsafeMutableBytes(of: &raw.c_cc) { cc in
            cc[Int(VMIN)] = 1
            cc[Int(VTIME)] = 0
        }
        guard tcsetattr(0, TCSADRAIN, &raw) == 0 else { return plainRead(prompt: prompt) }
        defer { tcsetattr(0, TCSADRAIN, &original) }

        var buffer: [Character] = []
        var cursor = 0
        var historyIndex = history.count
        var saved: [Character] = []
        var lastWasTab = false

        func refresh() {
            var s = "\r" + prompt + String(buffer) + "\u{1b}[0K\r"
            let column = prompt.count + cursor
            if column > 0 { s += "\u{1b}[\(column)C" }
            write(s)
        }
        write(prompt)
        while true {
            guard let b = readByte() else { return .endOfInput }
            let tab = b == 9
            defer { lastWasTab = tab }
            switch b {
            case 13, 10:  // Enter
                write("\n")
                return .line(String(buffer))
            case 3:  // Ctrl-C
                write("^C\n")
                return .cancelled
            case 4:  // Ctrl-D
                if buffer.isEmpty {
                    write("\n")
                    return .endOfInput
                }
                if cursor < buffer.count { buffer.remove(at: cursor); refresh() }
            case 127, 8:  // Backspace
                if cursor > 0 {
                    buffer.remove(at: cursor - 1)
                    cursor -= 1
                    refresh()
                }
            case 1: cursor = 0; refresh()  // Ctrl-A
            case 5: cursor = buffer.count; refresh()  // Ctrl-E
            case 2: if cursor > 0 { cursor -= 1; refresh() }  // Ctrl-B
            case 6: if cursor < buffer.count { cursor += 1; refresh() }  // Ctrl-F
            case 11: buffer.removeSubrange(cursor...); refresh()  // Ctrl-K
            case 21: buffer.removeSubrange(..<cursor); cursor = 0; refresh()  // Ctrl-U
            case 23:  // Ctrl-W
                var i = cursor
                while i > 0 && buffer[i - 1] == " " { i -= 1 }
                while i > 0 && buffer[i - 1] != " " { i -= 1 }
                buffer.removeSubrange(i..<cursor)
                cursor = i
                refresh()
            case 12: write("\u{1b}[H\u{1b}[2J"); refresh()  // Ctrl-L
            case 9:  // TAB
                complete(&buffer, &cursor, listAll: lastWasTab, prompt: prompt)
                refresh()
            case 27:  // Escape sequences
                guard let b1 = readByte(), let b2 = readByte() else { continue }
                guard b1 == 91 || b1 == 79 else { continue }
                switch b2 {
                case 65, 66:  // Up, Down
                    if historyIndex == history.count { saved = buffer }
                    if b2 == 65, historyIndex > 0 { historyIndex -= 1 } else if b2 == 66, historyIndex < history.count { historyIndex += 1 } else { continue }
                    buffer = historyIndex == history.count ? saved : Array(history[historyIndex])
                    cursor = buffer.count
                    refresh()
                case 67: if cursor < buffer.count { cursor += 1; refresh() }
                case 68: if cursor > 0 { cursor -= 1; refresh() }
                case 72: cursor = 0; refresh()
                case 70: cursor = buffer.count; refresh()
                case 51:  // Delete: ESC [ 3 ~
                    _ = readByte()
                    if cursor < buffer.count { buffer.remove(at: cursor); refresh() }
                default: continue
                }
            default:
                if b >= 32 {
                    // Collect a whole UTF-8 sequence.
                    var bytes = [b]
                    let extra = b >= 0xf0 ? 3 : b >= 0xe0 ? 2 : b >= 0xc0 ? 1 : 0
                    for _ in 0..<extra { if let c = readByte() { bytes.append(c) } }
                    for ch in String(decoding: bytes, as: UTF8.self) {
                        buffer.insert(ch, at: cursor)
                        cursor += 1
                    }
                    refresh()
                }
            }
        }
    }

    private func complete(_ buffer: inout [Character], _ cursor: inout Int, listAll: Bool, prompt: String) {
        var start = cursor
        while start > 0, buffer[start - 1] != " ", buffer[start - 1] != "(", buffer[start - 1] != "," { start -= 1 }
        let word = String(buffer[start..<cursor])
        guard !word.isEmpty else { return }
        let candidates = completions(word).filter { $0.hasPrefix(word) }
        guard !candidates.isEmpty else { return }
        var common = candidates[0]
        for c in candidates.dropFirst() {
            while !c.hasPrefix(common) { common.removeLast() }
        }
        if common.count > word.count {
            let addition = Array(common.dropFirst(word.count))
            buffer.insert(contentsOf: addition, at: cursor)
            cursor += addition.count
        } else if listAll && candidates.count > 1 {
            write("\n" + candidates.joined(separator: "  ") + "\n")
        }
    }

    private func plainRead(prompt: String) -> Input {
        write(prompt)
        var bytes: [UInt8] = []
        while let b = readByte() {
            if b == 10 { return .line(String(decoding: bytes, as: UTF8.self)) }
            bytes.append(b)
        }
        return bytes.isEmpty ? .endOfInput : .line(String(decoding: bytes, as: UTF8.self))
    }
}

extension String {
    func trimmingCharacters() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}
