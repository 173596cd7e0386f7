#if canImport(Glibc)
import Glibc
#endif
import OsqueryEngine

/// The REPL's line editor. It shows a terminal the same bytes as linenoise-ng, osquery's shell
/// editor, because tools drive osqueryi through a pseudo-terminal (expect, pexpect) and read them:
/// the prompt is written once per line; a character typed at the end of a line that fits is echoed
/// alone; any other change redraws only the input (`ESC[<col>G ESC[J <input> ESC[<col>G`). With
/// an unsupported terminal (`TERM` dumb, cons25, emacs) or when standard input is not a terminal,
/// lines are read as they come, with no escape codes. Ctrl-C or Ctrl-D on an empty line ends
/// input, as in osquery's shell.
final class LineEditor {
    enum Input {
        case line(String)
        case endOfInput
    }

    var history: [String] = []
    let historyPath: String?
    let maxHistory = 100
    var completions: (String) -> [String] = { _ in [] }

    /// linenoise-ng's buffer: 4096 characters with the terminator.
    static let maxLineLength = 4095
    /// Terminals linenoise-ng reads plain lines on.
    static let unsupportedTerminals: Set<String> = ["dumb", "cons25", "emacs"]
    /// More completions than this ask before being listed.
    static let completionListCutoff = 100

    /// The history entry recalled by the last accepted line, which the next Down continues from.
    var recallContinuation: Int?
    /// Killed text survives from line to line.
    var killRing = KillRing()
    /// The last history search's text, which Ctrl-R or Ctrl-S on an empty search recalls.
    var previousSearch: [Unicode.Scalar] = []

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
        if history.count > maxHistory {
            let dropped = history.count - maxHistory
            history.removeFirst(dropped)
            if let index = recallContinuation { recallContinuation = index >= dropped ? index - dropped : nil }
        }
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

    /// Whether `TERM` names a terminal that gets plain lines.
    static func terminalIsUnsupported(_ term: String?) -> Bool {
        guard let term else { return false }
        return unsupportedTerminals.contains(term.lowercased())
    }

    /// Reads one line: edited in raw mode on a supported terminal, plain otherwise.
    func readLine(prompt: String) -> Input {
        guard isatty(0) != 0 else { return Self.plainLine(prompt: nil) }
        if Self.terminalIsUnsupported(getenv("TERM").map { String(cString: $0) }) {
            return Self.plainLine(prompt: prompt)
        }
        var original = termios()
        guard tcgetattr(0, &original) == 0 else { return .endOfInput }
        let raw = Self.rawMode(from: original)
        guard withUnsafePointer(to: raw, { tcsetattr(0, TCSADRAIN, $0) }) == 0 else { return .endOfInput }
        var session = EditSession(editor: self, prompt: prompt, columns: Self.screenColumns(), raw: raw, original: original)
        let result = session.run()
        tcsetattr(0, TCSADRAIN, &original)
        ShellIO.writeAll(1, "\n")
        return result
    }

    static func rawMode(from original: termios) -> termios {
        var raw = original
        raw.c_iflag &= ~tcflag_t(BRKINT | ICRNL | INPCK | ISTRIP | IXON)
        raw.c_cflag |= tcflag_t(CS8)
        raw.c_lflag &= ~tcflag_t(ECHO | ICANON | IEXTEN | ISIG)
        withUnsafeMutableBytes(of: &raw.c_cc) { cc in
            cc[Int(VMIN)] = 1
            cc[Int(VTIME)] = 0
        }
        return raw
    }

    static func screenColumns() -> Int {
        var size = winsize()
        guard ioctl(1, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 else { return 80 }
        return Int(size.ws_col)
    }

    static func screenRows() -> Int {
        var size = winsize()
        guard ioctl(1, UInt(TIOCGWINSZ), &size) == 0, size.ws_row > 0 else { return 24 }
        return Int(size.ws_row)
    }

    static func readByte() -> UInt8? {
        var b: UInt8 = 0
        while true {
            let n = read(0, &b, 1)
            if n == 1 { return b }
            if n < 0 && errno == EINTR { continue }
            return nil
        }
    }

    /// One line as the terminal's own line discipline delivers it, trailing CR/LF removed.
    static func plainLine(prompt: String?) -> Input {
        if let prompt { ShellIO.writeAll(1, prompt) }
        var bytes: [UInt8] = []
        var ended = true
        while let b = readByte() {
            if b == 10 { ended = false; break }
            bytes.append(b)
        }
        if ended && bytes.isEmpty { return .endOfInput }
        while bytes.last == 13 { bytes.removeLast() }
        return .line(String(decoding: bytes, as: UTF8.self))
    }

    /// Killed text, most recent first, for Ctrl-Y and Meta-Y.
    struct KillRing {
        static let capacity = 10
        var entries: [[Unicode.Scalar]] = []
        var index = 0

        /// Consecutive kills (`continuing`) grow one entry: forward kills append, backward ones prepend.
        mutating func kill(_ text: ArraySlice<Unicode.Scalar>, forward: Bool, continuing: Bool) {
            guard !text.isEmpty else { return }
            if continuing, !entries.isEmpty {
                if forward { entries[0] += text } else { entries[0] = Array(text) + entries[0] }
            } else {
                entries.insert(Array(text), at: 0)
                if entries.count > Self.capacity { entries.removeLast() }
                index = 0
            }
        }

        func yank() -> [Unicode.Scalar]? { entries.isEmpty ? nil : entries[index] }

        mutating func yankPop() -> [Unicode.Scalar]? {
            guard !entries.isEmpty else { return nil }
            index = (index + 1) % entries.count
            return entries[index]
        }
    }
}

/// A key read from the terminal: a character or an editing key, with its modifiers.
struct EditorKey: Equatable {
    enum Base: Equatable {
        case scalar(UInt32)
        case up, down, left, right, home, end, delete, pageUp, pageDown
        /// An escape sequence no key maps to.
        case invalid
        /// Standard input ended.
        case inputEnded
    }

    var base: Base
    var meta = false
    var control = false

    static func ctrl(_ c: Character) -> UInt32 { UInt32(c.asciiValue! & 0x1f) }
    static let backspace = EditorKey(base: .scalar(ctrl("H")))

    /// Reads one key, decoding UTF-8 and the escape sequences of common terminals.
    static func read() -> EditorKey {
        guard let first = readScalar() else { return EditorKey(base: .inputEnded) }
        return dispatch(first)
    }

    private static func dispatch(_ c: UInt32) -> EditorKey {
        if c == 0x1b { return escape() }
        if c == 0x7f { return backspace }
        return EditorKey(base: .scalar(c))
    }

    private static func escape() -> EditorKey {
        guard let c = readScalar() else { return EditorKey(base: .inputEnded) }
        switch c {
        case 0x5b: return bracket()  // [
        case 0x4f: return letterO()  // O
        case 0x1b:  // ESC ESC: Meta on what follows
            guard let next = readScalar() else { return EditorKey(base: .inputEnded) }
            var key: EditorKey
            switch next {
            case 0x5b: key = bracket()
            case 0x4f: key = letterO()
            default: key = EditorKey(base: .scalar(next))
            }
            key.meta = true
            return key
        default:
            var key = dispatch(c)
            key.meta = true
            return key
        }
    }

    private static func arrow(_ c: UInt32) -> Base? {
        switch c {
        case 0x41: return .up
        case 0x42: return .down
        case 0x43: return .right
        case 0x44: return .left
        case 0x48: return .home
        case 0x46: return .end
        default: return nil
        }
    }

    private static func bracket() -> EditorKey {
        guard let c = readScalar() else { return EditorKey(base: .inputEnded) }
        if let base = arrow(c) { return EditorKey(base: base) }
        let tilde: [UInt32: Base] = [0x33: .delete, 0x34: .end, 0x35: .pageUp, 0x36: .pageDown, 0x37: .home, 0x38: .end]
        if c == 0x31 {  // ESC [ 1 ~ (Home) or ESC [ 1 ; 3|5 <arrow> (Meta or Ctrl arrows)
            guard let next = readScalar() else { return EditorKey(base: .inputEnded) }
            if next == 0x7e { return EditorKey(base: .home) }
            guard next == 0x3b, let modifier = readScalar() else { return failure() }
            guard modifier == 0x33 || modifier == 0x35 else { return failure() }
            guard let last = readScalar() else { return EditorKey(base: .inputEnded) }
            guard let base = arrow(last), last <= 0x44 else { return failure() }
            return EditorKey(base: base, meta: modifier == 0x33, control: modifier == 0x35)
        }
        if let base = tilde[c] {
            guard let next = readScalar() else { return EditorKey(base: .inputEnded) }
            return next == 0x7e ? EditorKey(base: base) : failure()
        }
        return failure()
    }

    private static func letterO() -> EditorKey {
        guard let c = readScalar() else { return EditorKey(base: .inputEnded) }
        if let base = arrow(c) { return EditorKey(base: base) }
        if c >= 0x61 && c <= 0x64, let base = arrow(c - 0x20) { return EditorKey(base: base, control: true) }
        return failure()
    }

    private static func failure() -> EditorKey {
        EditSession.beep()
        return EditorKey(base: .invalid)
    }

    /// One Unicode scalar from standard input; bytes that never form one are skipped.
    private static func readScalar() -> UInt32? {
        var pending: [UInt8] = []
        while true {
            guard let b = LineEditor.readByte() else { return nil }
            if b < 0x80 { return UInt32(b) }
            pending.append(b)
            var decoder = UTF8()
            var iterator = pending.makeIterator()
            if case .scalarValue(let scalar) = decoder.decode(&iterator) { return scalar.value }
            if pending.count >= 4 { pending.removeAll() }
        }
    }
}

/// The state of one line being edited: what linenoise-ng keeps per call.
struct EditSession {
    let editor: LineEditor
    let columns: Int
    let raw: termios
    let original: termios
    /// The prompt with control characters other than newline removed.
    let promptText: String
    /// Columns the prompt's last row takes, rows it takes beyond the first.
    let indentation: Int
    let extraLines: Int

    var buffer: [Unicode.Scalar] = []
    var pos = 0
    /// The cursor's row below the prompt's first row.
    var cursorRow: Int
    /// History with the line being edited as its last entry.
    var lines: [String]
    var historyIndex: Int
    var recalledFromHistory = false
    /// What the last key did, for kills that join and Meta-Y that replaces a yank.
    enum Action { case other, kill, yank }
    var lastAction = Action.other
    var yankedCount = 0

    init(editor: LineEditor, prompt: String, columns: Int, raw: termios, original: termios) {
        self.editor = editor
        self.columns = columns
        self.raw = raw
        self.original = original
        var text = ""
        var count = 0, x = 0, lastLineStart = 0, extra = 0
        for scalar in prompt.unicodeScalars where scalar == "\n" || !Self.isControl(scalar.value) {
            text.unicodeScalars.append(scalar)
            count += 1
            x += 1
            if scalar == "\n" || x >= columns {
                x = 0
                extra += 1
                lastLineStart = count
            }
        }
        promptText = text
        indentation = count - lastLineStart
        extraLines = extra
        cursorRow = extra
        lines = editor.history + [""]
        historyIndex = lines.count - 1
    }

    static func isControl(_ c: UInt32) -> Bool { c < 0x20 || (c >= 0x7f && c <= 0x9f) }

    static func isWordCharacter(_ s: Unicode.Scalar) -> Bool {
        s.properties.isAlphabetic || s.properties.numericType != nil
    }

    static func beep() { ShellIO.writeAll(2, "\u{7}") }

    private func write(_ s: String) { ShellIO.writeAll(1, s) }

    /// Terminal columns `scalars` take, as linenoise-ng counts them (Markus Kuhn's wcwidth): 0 for
    /// combining marks and format characters, 2 for East Asian wide ones, 1 otherwise.
    static func width(_ scalars: ArraySlice<Unicode.Scalar>) -> Int {
        var total = 0
        for s in scalars {
            let v = s.value
            if v < 0x300 { total += 1; continue }
            switch s.properties.generalCategory {
            case .nonspacingMark, .enclosingMark, .format: continue
            default: break
            }
            if v == 0x200b || (0x1160...0x11ff).contains(v) { continue }
            let wide = (0x1100...0x115f).contains(v) || v == 0x2329 || v == 0x232a
                || (0x2e80...0xa4cf).contains(v) && v != 0x303f || (0xac00...0xd7a3).contains(v)
                || (0xf900...0xfaff).contains(v) || (0xfe10...0xfe19).contains(v) || (0xfe30...0xfe6f).contains(v)
                || (0xff00...0xff60).contains(v) || (0xffe0...0xffe6).contains(v)
                || (0x20000...0x2fffd).contains(v) || (0x30000...0x3fffd).contains(v)
            total += wide ? 2 : 1
        }
        return total
    }

    /// Where the cursor lands after `count` columns from column `x` of row 0: a full last row
    /// puts it at the start of the next.
    func screenPosition(from x: Int, columns count: Int) -> (x: Int, y: Int) {
        let end = x + count
        return (end % columns, end / columns)
    }

    /// Redraws the input after the prompt, which stays on screen.
    mutating func refresh() {
        var out = ""
        let end = screenPosition(from: indentation, columns: Self.width(buffer[...]))
        let cursor = screenPosition(from: indentation, columns: Self.width(buffer[..<pos]))
        let up = cursorRow - extraLines
        if up > 0 { out += "\u{1b}[\(up)A" }
        out += "\u{1b}[\(indentation + 1)G\u{1b}[J"
        if let (match, unbalanced) = matchingBracket() {
            appendScalars(&out, buffer[..<match])
            out += unbalanced ? "\u{1b}[1;31m" : "\u{1b}[1;34m"
            out.unicodeScalars.append(buffer[match])
            out += "\u{1b}[0m"
            appendScalars(&out, buffer[(match + 1)...])
        } else {
            appendScalars(&out, buffer[...])
        }
        // The terminal does not move to the next row by itself after filling the last column.
        if end.x == 0 && end.y > 0 { out += "\n" }
        if end.y - cursor.y > 0 { out += "\u{1b}[\(end.y - cursor.y)A" }
        out += "\u{1b}[\(cursor.x + 1)G"
        write(out)
        cursorRow = extraLines + cursor.y
    }

    private func appendScalars(_ out: inout String, _ scalars: ArraySlice<Unicode.Scalar>) {
        out.unicodeScalars.append(contentsOf: scalars)
    }

    /// The bracket matching the one under the cursor, and whether other brackets between them
    /// do not balance (shown in red instead of blue).
    func matchingBracket() -> (Int, Bool)? {
        guard pos < buffer.count else { return nil }
        let pairs: [Unicode.Scalar: (open: Unicode.Scalar, close: Unicode.Scalar, step: Int)] = [
            "(": ("(", ")", 1), "[": ("[", "]", 1), "{": ("{", "}", 1),
            ")": ("(", ")", -1), "]": ("[", "]", -1), "}": ("{", "}", -1),
        ]
        guard let pair = pairs[buffer[pos]] else { return nil }
        var depth = pair.step, other = 0
        var i = pos + pair.step
        while i >= 0 && i < buffer.count {
            let c = buffer[i]
            if c == pair.close { depth -= 1 } else if c == pair.open { depth += 1 }
            else if c == ")" || c == "]" || c == "}" { other -= 1 } else if c == "(" || c == "[" || c == "{" { other += 1 }
            if depth == 0 { return (i, other != 0) }
            i += pair.step
        }
        return nil
    }

    private mutating func writePromptAgain() {
        var out = promptText
        if indentation == 0 && extraLines > 0 { out += "\n" }
        write(out)
        cursorRow = extraLines
    }

    private func wordStart(before index: Int) -> Int {
        var i = index
        while i > 0 && !Self.isWordCharacter(buffer[i - 1]) { i -= 1 }
        while i > 0 && Self.isWordCharacter(buffer[i - 1]) { i -= 1 }
        return i
    }

    private func wordEnd(after index: Int) -> Int {
        var i = index
        while i < buffer.count && !Self.isWordCharacter(buffer[i]) { i += 1 }
        while i < buffer.count && Self.isWordCharacter(buffer[i]) { i += 1 }
        return i
    }

    /// Meta-C/L/U: changes the case of the word at or after the cursor and moves past it.
    private mutating func changeCase(capitalize: Bool, upper: Bool) {
        guard pos < buffer.count else { return }
        recalledFromHistory = false
        while pos < buffer.count && !Self.isWordCharacter(buffer[pos]) { pos += 1 }
        var first = capitalize
        while pos < buffer.count && Self.isWordCharacter(buffer[pos]) {
            let s = buffer[pos]
            let toUpper = first || (upper && !capitalize)
            if toUpper, s >= "a" && s <= "z" { buffer[pos] = Unicode.Scalar(s.value - 32)! }
            if !toUpper, s >= "A" && s <= "Z" { buffer[pos] = Unicode.Scalar(s.value + 32)! }
            first = false
            pos += 1
        }
        refresh()
    }

    private mutating func recall(_ index: Int) {
        recalledFromHistory = true
        buffer = Array(lines[index].unicodeScalars.prefix(LineEditor.maxLineLength))
        pos = buffer.count
        refresh()
    }

    /// Inserts what fits of `scalars` at the cursor; returns how many did.
    private mutating func insert(_ scalars: [Unicode.Scalar]) -> Int {
        let count = min(LineEditor.maxLineLength - buffer.count, scalars.count)
        buffer.insert(contentsOf: scalars.prefix(count), at: pos)
        pos += count
        return count
    }

    mutating func run() -> LineEditor.Input {
        write(promptText + (indentation == 0 && extraLines > 0 ? "\n" : ""))
        var pendingKey: EditorKey?
        while true {
            let key = pendingKey ?? EditorKey.read()
            pendingKey = nil
            let previousAction = lastAction
            lastAction = .other
            if key.base == .inputEnded { return buffer.isEmpty ? .endOfInput : .line(String(String.UnicodeScalarView(buffer))) }
            if key.base == .invalid { refresh(); continue }
            let plain = !key.meta && !key.control
            var c: UInt32 = 0
            if case .scalar(let v) = key.base { c = v }
            let isScalar = { (v: UInt32) in key.base == .scalar(v) }
            let isCtrl = { (ch: Character) in plain && isScalar(EditorKey.ctrl(ch)) }
            let isMeta = { (ch: Character) in
                key.meta && !key.control && (isScalar(UInt32(ch.asciiValue!)) || ch.isLowercase && isScalar(UInt32(ch.asciiValue!) - 32))
            }

            if isCtrl("I") {
                if pos == 0 { continue }  // a pasted leading tab
                recalledFromHistory = false
                pendingKey = complete()
                continue
            }

            if isCtrl("A") || (plain && key.base == .home) {
                pos = 0
                refresh()
            } else if isCtrl("B") || (plain && key.base == .left) {
                if pos > 0 { pos -= 1; refresh() }
            } else if isMeta("b") || (key.base == .left && (key.meta || key.control)) {
                if pos > 0 { pos = wordStart(before: pos); refresh() }
            } else if isCtrl("C") {
                pos = buffer.count
                refresh()
                write("^C")
                return .endOfInput
            } else if isMeta("c") {
                changeCase(capitalize: true, upper: false)
            } else if isCtrl("D") {
                if !buffer.isEmpty && pos < buffer.count {
                    recalledFromHistory = false
                    buffer.remove(at: pos)
                    refresh()
                } else if buffer.isEmpty {
                    return .endOfInput
                }
            } else if isMeta("d") {
                if pos < buffer.count {
                    recalledFromHistory = false
                    let end = wordEnd(after: pos)
                    editor.killRing.kill(buffer[pos..<end], forward: true, continuing: previousAction == .kill)
                    buffer.removeSubrange(pos..<end)
                    refresh()
                }
                lastAction = .kill
            } else if isCtrl("E") || (plain && key.base == .end) {
                pos = buffer.count
                refresh()
            } else if isCtrl("F") || (plain && key.base == .right) {
                if pos < buffer.count { pos += 1; refresh() }
            } else if isMeta("f") || (key.base == .right && (key.meta || key.control)) {
                if pos < buffer.count { pos = wordEnd(after: pos); refresh() }
            } else if isCtrl("H") {
                if pos > 0 {
                    recalledFromHistory = false
                    buffer.remove(at: pos - 1)
                    pos -= 1
                    refresh()
                }
            } else if key.meta && !key.control && isScalar(EditorKey.ctrl("H")) {
                if pos > 0 {
                    recalledFromHistory = false
                    let start = wordStart(before: pos)
                    editor.killRing.kill(buffer[start..<pos], forward: false, continuing: previousAction == .kill)
                    buffer.removeSubrange(start..<pos)
                    pos = start
                    refresh()
                }
                lastAction = .kill
            } else if isCtrl("J") || isCtrl("M") {
                pos = buffer.count
                refresh()
                editor.recallContinuation = recalledFromHistory ? historyIndex : nil
                return .line(String(String.UnicodeScalarView(buffer)))
            } else if isCtrl("K") {
                editor.killRing.kill(buffer[pos...], forward: true, continuing: previousAction == .kill)
                buffer.removeSubrange(pos...)
                refresh()
                lastAction = .kill
                recalledFromHistory = false
            } else if isCtrl("L") {
                write("\u{1b}[H\u{1b}[2J")
                writePromptAgain()
                refresh()
            } else if isMeta("l") {
                changeCase(capitalize: false, upper: false)
            } else if isCtrl("N") || isCtrl("P") || (plain && (key.base == .up || key.base == .down)) {
                if historyIndex == lines.count - 1 { lines[historyIndex] = String(String.UnicodeScalarView(buffer)) }
                guard lines.count > 1 else { continue }
                let back = isCtrl("P") || key.base == .up
                var index = historyIndex
                if let previous = editor.recallContinuation, !back { index = previous + 1 } else { index += back ? -1 : 1 }
                editor.recallContinuation = nil
                guard index >= 0 && index < lines.count else { continue }
                historyIndex = index
                recall(index)
            } else if plain && (key.base == .pageUp || key.base == .pageDown) || isMeta("<") || isMeta(">") {
                if historyIndex == lines.count - 1 { lines[historyIndex] = String(String.UnicodeScalarView(buffer)) }
                guard lines.count > 1 else { continue }
                historyIndex = key.base == .pageUp || isMeta("<") ? 0 : lines.count - 1
                editor.recallContinuation = nil
                recall(historyIndex)
            } else if isCtrl("R") || isCtrl("S") {
                pendingKey = searchHistory(backward: isCtrl("R"))
            } else if isCtrl("T") {
                if pos > 0 && buffer.count > 1 {
                    recalledFromHistory = false
                    let left = pos == buffer.count ? pos - 2 : pos - 1
                    buffer.swapAt(left, left + 1)
                    if pos != buffer.count { pos += 1 }
                    refresh()
                }
            } else if isCtrl("U") {
                if pos > 0 {
                    recalledFromHistory = false
                    editor.killRing.kill(buffer[..<pos], forward: false, continuing: previousAction == .kill)
                    buffer.removeSubrange(..<pos)
                    pos = 0
                    refresh()
                }
                lastAction = .kill
            } else if isMeta("u") {
                changeCase(capitalize: false, upper: true)
            } else if isCtrl("W") {
                if pos > 0 {
                    recalledFromHistory = false
                    var start = pos
                    while start > 0 && buffer[start - 1] == " " { start -= 1 }
                    while start > 0 && buffer[start - 1] != " " { start -= 1 }
                    editor.killRing.kill(buffer[start..<pos], forward: false, continuing: previousAction == .kill)
                    buffer.removeSubrange(start..<pos)
                    pos = start
                    refresh()
                }
                lastAction = .kill
            } else if isCtrl("Y") {
                recalledFromHistory = false
                if let text = editor.killRing.yank() {
                    yankedCount = insert(text)
                    refresh()
                    lastAction = .yank
                    if yankedCount < text.count { Self.beep() }
                } else {
                    Self.beep()
                }
            } else if isMeta("y") {
                if previousAction == .yank, let text = editor.killRing.yankPop() {
                    recalledFromHistory = false
                    buffer.removeSubrange((pos - yankedCount)..<pos)
                    pos -= yankedCount
                    yankedCount = insert(text)
                    lastAction = .yank
                    refresh()
                    if yankedCount < text.count { Self.beep() }
                } else {
                    Self.beep()
                }
            } else if isCtrl("Z") {
                tcsetattr(0, TCSADRAIN, [original])
                raise(SIGSTOP)
                tcsetattr(0, TCSADRAIN, [raw])
                writePromptAgain()
                refresh()
            } else if plain && key.base == .delete {
                if pos < buffer.count {
                    recalledFromHistory = false
                    buffer.remove(at: pos)
                    refresh()
                }
            } else {
                recalledFromHistory = false
                guard plain, case .scalar = key.base else { Self.beep(); continue }
                guard buffer.count < LineEditor.maxLineLength, !Self.isControl(c), let scalar = Unicode.Scalar(c) else {
                    Self.beep()
                    continue
                }
                buffer.insert(scalar, at: pos)
                pos += 1
                // The common case, typing at the end of a line that fits: the character alone.
                if pos == buffer.count && indentation + Self.width(buffer[...]) < columns {
                    var out = ""
                    out.unicodeScalars.append(scalar)
                    write(out)
                } else {
                    refresh()
                }
            }
        }
    }

    /// Draws `prompt` and `text` from the first column of the prompt's row, for prompts that
    /// change (the history search's): `cursorRow` is the cursor's row below that row.
    private func redrawWithPrompt(_ prompt: [Unicode.Scalar], _ text: ArraySlice<Unicode.Scalar>, cursor: Int, cursorRow: inout Int) {
        let promptEnd = screenPosition(from: 0, columns: prompt.count)
        let end = screenPosition(from: promptEnd.x, columns: Self.width(text))
        let at = screenPosition(from: promptEnd.x, columns: Self.width(text.prefix(cursor)))
        var out = cursorRow > 0 ? "\u{1b}[\(cursorRow)A" : ""
        out += "\u{1b}[1G\u{1b}[J"
        out.unicodeScalars.append(contentsOf: prompt)
        out.unicodeScalars.append(contentsOf: text)
        if end.x == 0 && promptEnd.y + end.y > 0 { out += "\n" }
        if end.y - at.y > 0 { out += "\u{1b}[\(end.y - at.y)A" }
        out += "\u{1b}[\(at.x + 1)G"
        write(out)
        cursorRow = promptEnd.y + at.y
    }

    /// Ctrl-R / Ctrl-S: incremental history search under a `(reverse-i-search)` prompt. Returns
    /// the key that ended it, for the main loop (`.invalid`, a plain refresh, after Ctrl-C or
    /// Ctrl-G, which also keep the line as it was).
    private mutating func searchHistory(backward: Bool) -> EditorKey {
        if historyIndex == lines.count - 1 { lines[historyIndex] = String(String.UnicodeScalarView(buffer)) }
        // Erase the input; the search prompt takes the prompt's last row.
        let saved = (buffer, pos)
        buffer = []
        pos = 0
        refresh()
        buffer = saved.0
        pos = saved.1

        var direction = backward ? -1 : 1
        var searchText: [Unicode.Scalar] = []
        func prompt() -> [Unicode.Scalar] {
            Array((direction > 0 ? "(i-search)`" : "(reverse-i-search)`").unicodeScalars) + searchText + Array("': ".unicodeScalars)
        }
        var foundIndex = historyIndex
        var line = Array(lines[foundIndex].unicodeScalars)
        var linePosition = pos
        var searchRow = 0
        redrawWithPrompt(prompt(), buffer[...], cursor: pos, cursorRow: &searchRow)

        var useFound = true
        var result = EditorKey(base: .invalid)
        loop: while true {
            let key = EditorKey.read()
            let plain = !key.meta && !key.control
            let isCtrl = { (ch: Character) in plain && key.base == .scalar(EditorKey.ctrl(ch)) }
            let isMeta = { (ch: Character) in
                key.meta && !key.control && (key.base == .scalar(UInt32(ch.asciiValue!)) || key.base == .scalar(UInt32(ch.asciiValue!) - 32))
            }
            var again = false
            if key.base == .inputEnded {
                result = key
                break loop
            }
            let keeps = "ABDEFJKMNPTUW".contains { isCtrl($0) }
                || (plain && [EditorKey.Base.home, .left, .end, .right, .up, .down, .delete, .pageUp, .pageDown].contains(key.base))
                || "bdfy".contains { isMeta($0) } || isMeta("<") || isMeta(">")
                || (key.meta && !key.control && key.base == .scalar(EditorKey.ctrl("H")))
                || ((key.meta || key.control) && (key.base == .left || key.base == .right))
            if keeps {
                result = key
                break loop
            } else if isCtrl("C") || isCtrl("G") || isCtrl("L") {
                useFound = false
                result = isCtrl("L") ? key : EditorKey(base: .invalid)
                break loop
            } else if isCtrl("R") || isCtrl("S") {
                if searchText.isEmpty { searchText = editor.previousSearch }
                let wanted = isCtrl("R") ? -1 : 1
                if wanted != direction { direction = wanted } else { again = true }
            } else if isCtrl("Z") {
                tcsetattr(0, TCSADRAIN, [original])
                raise(SIGSTOP)
                tcsetattr(0, TCSADRAIN, [raw])
                redrawWithPrompt(prompt(), line[...], cursor: linePosition, cursorRow: &searchRow)
                continue
            } else if isCtrl("H") {
                if searchText.isEmpty { Self.beep() } else { searchText.removeLast() }
            } else if isCtrl("Y") {
                // Nothing to yank into a search.
            } else if plain, case .scalar(let c) = key.base, !Self.isControl(c), let scalar = Unicode.Scalar(c) {
                searchText.append(scalar)
            } else {
                Self.beep()
            }

            if !searchText.isEmpty {
                var index = foundIndex
                var candidate = Array(lines[index].unicodeScalars)
                var at = linePosition + (again ? direction : 0)
                while true {
                    while direction > 0 ? at < candidate.count : at >= 0 {
                        if at + searchText.count <= candidate.count && candidate[at..<(at + searchText.count)].elementsEqual(searchText) {
                            break
                        }
                        at += direction
                    }
                    if direction > 0 ? at < candidate.count : at >= 0 {
                        foundIndex = index
                        line = candidate
                        linePosition = at
                        break
                    } else if direction > 0 ? index < lines.count - 1 : index > 0 {
                        index += direction
                        candidate = Array(lines[index].unicodeScalars)
                        at = direction > 0 ? 0 : candidate.count - searchText.count
                    } else {
                        Self.beep()
                        break
                    }
                }
            }
            line = Array(lines[foundIndex].unicodeScalars)
            redrawWithPrompt(prompt(), line[...], cursor: linePosition, cursorRow: &searchRow)
        }

        // Back to the prompt's last row, with the found line when the search kept it.
        if useFound {
            historyIndex = foundIndex
            recalledFromHistory = true
            buffer = Array(line.prefix(LineEditor.maxLineLength))
            pos = min(linePosition, buffer.count)
        }
        let lastRow = Array(promptText.unicodeScalars.suffix(indentation))
        redrawWithPrompt(lastRow, buffer[...], cursor: pos, cursorRow: &searchRow)
        cursorRow = extraLines + searchRow
        editor.previousSearch = searchText
        return result
    }

    /// TAB: extends the word before the cursor to the candidates' common prefix, or on a second
    /// TAB lists them. Returns a key read meanwhile that the main loop handles next.
    private mutating func complete() -> EditorKey? {
        let breaks = Set(" =+-/\\*?\"'`&<>;|@{([])}".unicodeScalars)
        var start = pos
        while start > 0 && !breaks.contains(buffer[start - 1]) { start -= 1 }
        let word = String(String.UnicodeScalarView(buffer[start..<pos]))
        let candidates = editor.completions(word).map { Array($0.unicodeScalars) }.filter { $0.starts(with: word.unicodeScalars) }
        guard !candidates.isEmpty else { Self.beep(); return nil }
        var common = candidates[0].count
        for candidate in candidates.dropFirst() {
            var n = 0
            while n < common && n < candidate.count && candidate[n] == candidates[0][n] { n += 1 }
            common = n
        }
        if candidates.count != 1 { Self.beep() }
        let wordLength = pos - start
        if common > wordLength {
            let addition = Array(candidates[0][wordLength..<common])
            if insert(addition) < addition.count { Self.beep() }
            refresh()
            return nil
        }
        var key = EditorKey.read()
        while key.base == .invalid { key = EditorKey.read() }
        guard key == EditorKey(base: .scalar(EditorKey.ctrl("I"))) else { return key }

        var show = true, onNewLine = false
        if candidates.count > LineEditor.completionListCutoff {
            moveToEndForListing()
            write("\nDisplay all \(candidates.count) possibilities? (y or n)")
            onNewLine = true
            var answer = EditorKey.read()
            while ![UInt32(121), 89, 110, 78, EditorKey.ctrl("C")].contains(where: { answer.base == .scalar($0) }) {
                if answer.base == .inputEnded { return answer }
                answer = EditorKey.read()
            }
            if answer.base == .scalar(110) || answer.base == .scalar(78) { show = false }
            if answer.base == .scalar(EditorKey.ctrl("C")) { show = false; write("^C") }
        }
        var stopped = false, interrupted = false
        if show {
            let longest = (candidates.map(\.count).max() ?? 0) + 2
            let perRow = max(1, columns / longest)
            if !onNewLine { moveToEndForListing() }
            let rows = (candidates.count + perRow - 1) / perRow
            var pauseRow = LineEditor.screenRows() - 1
            for row in 0..<rows {
                if row == pauseRow {
                    write("\n--More--")
                    var answer = EditorKey.read()
                    let accepted: [UInt32] = [32, 13, 10, 121, 89, 110, 78, 113, 81, EditorKey.ctrl("C")]
                    while !accepted.contains(where: { answer.base == .scalar($0) }) {
                        if answer.base == .inputEnded { return answer }
                        Self.beep()
                        answer = EditorKey.read()
                    }
                    guard case .scalar(let a) = answer.base else { break }
                    switch a {
                    case 32, 121, 89: write("\r        \r"); pauseRow += LineEditor.screenRows() - 1
                    case 13, 10: write("\r        \r"); pauseRow += 1
                    case EditorKey.ctrl("C"): write("^C"); stopped = true; interrupted = true
                    default: write("\r        \r"); stopped = true
                    }
                } else {
                    write("\n")
                }
                if stopped { break }
                var line = ""
                for column in 0..<perRow {
                    let index = column * rows + row
                    guard index < candidates.count else { continue }
                    line.unicodeScalars.append(contentsOf: candidates[index])
                    if (column + 1) * rows + row < candidates.count {
                        line += String(repeating: " ", count: longest - candidates[index].count)
                    }
                }
                write(line)
            }
        }
        if !stopped || interrupted { write("\n") }
        writePromptAgain()
        refresh()
        return nil
    }

    /// Before a listing: the cursor goes past the input so the list does not overwrite it.
    private mutating func moveToEndForListing() {
        let saved = pos
        pos = buffer.count
        refresh()
        pos = saved
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
