import Foundation
import OsqueryEngine
@testable import OsqueryTables
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// extended_attributes, magic and augeas against getfattr, file and augtool.
@Suite(.serialized) struct FileContentTablesTests {
    /// Attributes the test sets with `setfattr` (text, NUL-terminated text, binary, empty, and a
    /// capability with `setcap`), read back as `getfattr -d -m - -e base64` prints them.
    @Test(.enabled(if: installed("/usr/bin/setfattr", "/usr/bin/getfattr")))
    func extendedAttributesMatchGetfattr() async throws {
        let dir = TempDir()
        dir.write("tagged", "x")
        dir.write("plain", "y")
        let tagged = dir.path + "/tagged"
        for (name, value) in [("user.text", "hello"), ("user.cstring", "0x686900"), ("user.binary", "0x00ff10"), ("user.empty", "")] {
            _ = try await toolOutput("/usr/bin/setfattr", value.isEmpty ? ["-n", name, tagged] : ["-n", name, "-v", value, tagged])
        }
        let capabilities = getuid() == 0 && installed("/usr/sbin/setcap")
        if capabilities { _ = try await toolOutput("/usr/sbin/setcap", ["cap_net_raw=ep", tagged]) }
        let db = try systemTablesDatabase(FileContentTables.extendedAttributes())
        let r = try db.execute("SELECT key, value, base64, directory FROM extended_attributes WHERE path = '\(tagged)'")
        var ours: [String: String] = [:]
        for row in 0..<r.rowCount {
            let key = r[row, 0].text ?? "", value = r[row, 1].text ?? ""
            #expect(r[row, 3].text == dir.path)
            if key == "security.capability" {
                ours[key] = value
                continue
            }
            // A printable value lost its NUL: put it back to compare with getfattr's bytes.
            ours[key] = r[row, 2] == .integer(1) ? value : Base64.encode(Array(value.utf8) + [0])
        }
        var theirs: [String: String] = [:]
        let output = try await toolOutput("/usr/bin/getfattr", ["-d", "-m", "-", "-e", "base64", "--absolute-names", tagged])
        for line in output.split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let value = parts.count == 2 ? String(parts[1].dropFirst(2)) : ""
            theirs[String(parts[0])] = value
        }
        if capabilities {
            #expect(ours.removeValue(forKey: "security.capability") == "cap_net_raw=ep")
            #expect(theirs.removeValue(forKey: "security.capability") != nil)
        }
        #expect(ours == theirs)
        #expect(try rowSet(db, "SELECT key, value, base64 FROM extended_attributes WHERE path = '\(tagged)' AND key LIKE 'user.%'", ["key", "value", "base64"]) == [
            "user.binary\tAP8Q\t1", "user.cstring\thi\t0", "user.empty\t\t1", "user.text\taGVsbG8=\t1",
        ])
        // LIKE expands to files; one without attributes has no rows; `directory` alone reads nothing.
        #expect(try db.execute("SELECT DISTINCT path FROM extended_attributes WHERE path LIKE '\(dir.path)/%'").rowCount == 1)
        #expect(try db.execute("SELECT * FROM extended_attributes WHERE directory = '\(dir.path)'").rowCount == 0)
        #expect(throws: (any Error).self) { try db.execute("SELECT * FROM extended_attributes") }
    }

    /// A FIFO and a missing path: no wait, no rows, and the table keeps answering.
    @Test(.enabled(if: installed("/usr/bin/setfattr"))) func extendedAttributesNeverOpenAFifo() async throws {
        let dir = TempDir()
        #expect(mkfifo(dir.path + "/fifo", 0o600) == 0)
        dir.write("file", "z")
        _ = try await toolOutput("/usr/bin/setfattr", ["-n", "user.k", "-v", "v", dir.path + "/file"])
        let db = try systemTablesDatabase(FileContentTables.extendedAttributes())
        #expect(try db.execute("SELECT * FROM extended_attributes WHERE path = '\(dir.path)/fifo'").rowCount == 0)
        #expect(try db.execute("SELECT * FROM extended_attributes WHERE path = '\(dir.path)/missing'").rowCount == 0)
        #expect(try db.execute("SELECT * FROM extended_attributes WHERE path = '\(dir.path)/file'").rowCount == 1)
    }

    /// What `file -b`, `--mime-type` and `--mime-encoding` say of the same paths: text, gzip,
    /// an ELF binary, a directory, a FIFO (not opened), an empty and a missing file.
    @Test(.enabled(if: installed("/usr/bin/file", "/usr/bin/gzip"))) func magicMatchesFile() async throws {
        let dir = TempDir()
        dir.write("text.txt", "plain words\nin lines\n")
        dir.write("empty", "")
        dir.write("data.gz", "")
        _ = try await toolOutput("/bin/sh", ["-c", "printf 'some text to pack' | /usr/bin/gzip -n > '\(dir.path)/data.gz'"])
        #expect(mkfifo(dir.path + "/fifo", 0o600) == 0)
        // 10 GB, sparse (no blocks written): libmagic reads only its first bytes.
        let fd = open(dir.path + "/huge", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        #expect(ftruncate(fd, 10 << 30) == 0)
        close(fd)
        let paths = ["text.txt", "empty", "data.gz", "fifo", "huge", "missing"].map { dir.path + "/" + $0 } + ["/usr/bin/gzip", dir.path]
        let db = try systemTablesDatabase(FileContentTables.magic(log: OnceLog()))
        for path in paths {
            let r = try db.execute("SELECT data, mime_type, mime_encoding, magic_db_files FROM magic WHERE path = '\(path)'")
            #expect(r.rowCount == 1)
            let data = try await toolOutput("/usr/bin/file", ["-b", path]).trimmingCharacters(in: .newlines)
            let type = try await toolOutput("/usr/bin/file", ["-b", "--mime-type", path]).trimmingCharacters(in: .newlines)
            let encoding = try await toolOutput("/usr/bin/file", ["-b", "--mime-encoding", path]).trimmingCharacters(in: .newlines)
            #expect(r[0, 0].text == data, "\(path)")
            #expect(r[0, 1].text == type, "\(path)")
            #expect(r[0, 2].text == encoding, "\(path)")
            #expect(r[0, 3].text == FileContentTables.defaultMagicFiles.joined(separator: ":"))
        }
        // A database that does not load gives no rows (logged), and the table keeps answering.
        #expect(try db.execute("SELECT * FROM magic WHERE path = '\(paths[0])' AND magic_db_files = '\(dir.path)/text.txt'").rowCount == 0)
        #expect(try db.execute("SELECT * FROM magic WHERE path = '\(paths[0])' AND magic_db_files = '/usr/share/misc/magic.mgc'").rowCount == 1)
        #expect(throws: (any Error).self) { try db.execute("SELECT * FROM magic") }
    }

    /// `augtool print` of /etc/hosts with the same lenses: the same nodes and values.
    @Test(.enabled(if: installed("/usr/bin/augtool") && FileIO.exists("/etc/hosts") && FileIO.exists("/usr/share/augeas/lenses/dist")))
    func augeasMatchesAugtool() async throws {
        let flags = Flags()
        let db = try systemTablesDatabase(FileContentTables.augeas(flags: flags, log: OnceLog(), handle: .init()), flags: flags)
        let ours = try rowSet(db, "SELECT node, value FROM augeas WHERE path = '/etc/hosts'", ["node", "value"])
        let output = try await toolOutput("/usr/bin/augtool", ["-S", "-I", "/usr/share/augeas/lenses/dist", "print", "/files/etc/hosts"])
        let theirs = Set(output.split(separator: "\n").map { line -> String in
            guard let eq = line.range(of: " = ") else { return String(line) + "\t" }
            var value = line[eq.upperBound...]
            if value.hasPrefix("\"") && value.hasSuffix("\"") { value = value.dropFirst().dropLast() }
            return String(line[..<eq.lowerBound]) + "\t" + value
        })
        #expect(!theirs.isEmpty)
        #expect(ours == theirs, "only ours: \(ours.subtracting(theirs).prefix(5)); only augtool: \(theirs.subtracting(ours).prefix(5))")
        let paths = try rowSet(db, "SELECT DISTINCT path FROM augeas WHERE path = '/etc/hosts'", ["path"])
        #expect(paths == ["/etc/hosts"])
        #expect(try db.execute("SELECT * FROM augeas WHERE node LIKE '/files/etc/hosts/%'").rowCount > 0)
    }

    /// Lenses that do not exist: augeas says why once, the table answers no rows.
    @Test func augeasWithoutLensesSaysWhy() throws {
        let flags = Flags()
        try flags.set("augeas_lenses", "/nonexistent/lenses")
        let log = OnceLog()
        let db = try systemTablesDatabase(FileContentTables.augeas(flags: flags, log: log, handle: .init()), flags: flags)
        let count = try db.execute("SELECT * FROM augeas WHERE path = '/etc/hosts'").rowCount
        // Without its lenses augeas loads no file (or fails to start, and says why).
        #expect(count == 0)
    }
}
