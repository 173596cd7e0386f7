import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

/// A user whose files a user-based table reads.
struct HomeUser: Sendable {
    var uid: Int64
    var directory: String
}

/// osquery's `usersFromContext`: the users named by `uid =` constraints, else every user.
enum HomeUsers {
    static func fromContext(_ context: QueryContext) -> [HomeUser] {
        var out: [HomeUser] = []
        let uids = context.equalities(for: "uid")
        if !uids.isEmpty {
            for text in uids {
                guard let uid = UInt32(text), let p = getpwuid(uid) else { continue }
                out.append(HomeUser(uid: Int64(uid), directory: String(cString: p.pointee.pw_dir)))
            }
        } else {
            setpwent()
            while let p = getpwent() {
                out.append(HomeUser(uid: Int64(p.pointee.pw_uid), directory: String(cString: p.pointee.pw_dir)))
            }
            endpwent()
        }
        return out
    }
}

/// Tables over users' SSH files: authorized_keys, known_hosts, ssh_configs.
enum SSHTables {
    typealias Users = @Sendable (QueryContext) -> [HomeUser]

    static let keyTypes = [
        "ssh-rsa", "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
        "sk-ecdsa-sha2-nistp256@openssh.com", "sk-ssh-ed25519@openssh.com",
    ]

    static func authorizedKeys(flags: Flags, users: @escaping Users = { HomeUsers.fromContext($0) }) -> FunctionTable {
        table("authorized_keys", [
            col("uid", .bigint, .additional), col("algorithm", .text), col("key", .text), col("options", .text),
            col("comment", .text), col("key_file", .text), pidWithNamespace,
        ], attributes: .userBased) { context, schema in
            let readMax = flags.uint("read_max")
            var rows = TableRows(schema: schema)
            for user in users(context) {
                for name in [".ssh/authorized_keys", ".ssh/authorized_keys2"] {
                    let path = joinedPath(user.directory, name)
                    guard FileIO.exists(path) else { continue }
                    guard let content = BoundedFile.text(path, limit: readMax) else {
                        StatusLog.error("Cannot read \(path)")
                        break
                    }
                    for line in osquerySplit(content, "\n") where !line.hasPrefix("#") {
                        appendAuthorizedKey(line, uid: user.uid, file: path, to: &rows)
                    }
                }
            }
            return rows
        }
    }

    /// One authorized_keys line as osquery reads it: `[options] type key [comment]`, or a z/OS
    /// key-ring label line (options only).
    static func appendAuthorizedKey(_ line: String, uid: Int64, file: String, to rows: inout TableRows) {
        let bytes = Array(line.utf8)
        func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 }
        for type in keyTypes {
            guard let start = line.utf8.firstRange(of: type.utf8) else { continue }
            let typeStart = line.utf8.distance(from: line.utf8.startIndex, to: start.lowerBound)
            let typeEnd = typeStart + type.utf8.count
            guard typeEnd < bytes.count, isSpace(bytes[typeEnd]) else { continue }
            var options: SQLValue = .null
            if typeStart > 0 {
                var end = typeStart
                while end > 0 && isSpace(bytes[end - 1]) { end -= 1 }
                options = .text(bytes: bytes[0..<end])
            }
            guard let keyStart = bytes[typeEnd...].firstIndex(where: { !isSpace($0) }) else { return }
            var key: SQLValue = .text(bytes: bytes[keyStart...])
            var comment: SQLValue = .null
            if let keyEnd = bytes[keyStart...].firstIndex(where: isSpace) {
                key = .text(bytes: bytes[keyStart..<keyEnd])
                // The line is trimmed, so text follows the key's trailing whitespace.
                let commentStart = bytes[keyEnd...].firstIndex { !isSpace($0) } ?? bytes.count
                comment = .text(bytes: bytes[commentStart...])
            }
            rows.append(.integer(uid))
            rows.append(.text(type))
            rows.append(key)
            rows.append(options)
            rows.append(comment)
            rows.append(.text(file))
            rows.append(.integer(0))
            return
        }
        if osquerySplit(line, ",").contains(where: { $0.hasPrefix("zos-key-ring-label=") }) {
            rows.append(.integer(uid))
            rows.append(.null)
            rows.append(.null)
            rows.append(.text(line))
            rows.append(.null)
            rows.append(.text(file))
            rows.append(.integer(0))
        }
    }

    static func knownHosts(flags: Flags, users: @escaping Users = { HomeUsers.fromContext($0) }) -> FunctionTable {
        table("known_hosts", [col("uid", .bigint, [.index, .optimized]), col("key", .text), col("key_file", .text)],
              attributes: .userBased) { context, schema in
            let readMax = flags.uint("read_max")
            var rows = TableRows(schema: schema)
            for user in users(context) {
                let path = joinedPath(user.directory, ".ssh/known_hosts")
                guard let content = BoundedFile.text(path, limit: readMax) else { continue }
                for line in osquerySplit(content, "\n") where !line.hasPrefix("#") {
                    rows.append(.integer(user.uid))
                    rows.append(.text(line))
                    rows.append(.text(path))
                }
            }
            return rows
        }
    }

    static func sshConfigs(flags: Flags, users: @escaping Users = { HomeUsers.fromContext($0) },
                           systemFile: String = "/etc/ssh/ssh_config") -> FunctionTable {
        table("ssh_configs", [
            col("uid", .bigint, [.additional, .optimized]), col("block", .text), col("option", .text),
            col("ssh_config_file", .text),
        ], attributes: .userBased) { context, schema in
            let readMax = flags.uint("read_max")
            var rows = TableRows(schema: schema)
            func add(_ uid: Int64, _ path: String) {
                guard let content = BoundedFile.text(path, limit: readMax) else { return }
                // osquery lowercases whole lines, values included.
                var block = ""
                for raw in osquerySplit(content, "\n") {
                    let line = raw.lowercased()
                    if line.hasPrefix("#") { continue }
                    if line.hasPrefix("host ") || line.hasPrefix("match ") {
                        block = line
                        continue
                    }
                    rows.append(.integer(uid))
                    rows.append(.text(block))
                    rows.append(.text(line))
                    rows.append(.text(path))
                }
            }
            for user in users(context) { add(user.uid, joinedPath(user.directory, ".ssh/config")) }
            add(0, systemFile)
            return rows
        }
    }

    static func joinedPath(_ directory: String, _ name: String) -> String {
        directory.hasSuffix("/") ? directory + name : directory + "/" + name
    }
}
