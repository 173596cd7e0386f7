import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

enum UserTables {
    static func users() -> FunctionTable {
        table("users", [
            col("uid", .bigint, .index), col("gid", .bigint), col("uid_signed", .bigint), col("gid_signed", .bigint),
            col("username", .text, .additional), col("description", .text), col("directory", .text), col("shell", .text),
            col("uuid", .text, [.index, .collateNocase]), col("type", .text, .hidden), col("is_hidden", .integer, .hidden),
            pidWithNamespace, col("include_remote", .integer, [.additional, .hidden]),
        ]) { context, schema in
            var rows = TableRows(schema: schema)
            func add(_ p: passwd) {
                let uid = p.pw_uid, gid = p.pw_gid
                rows.appendRow([
                    .integer(Int64(uid)), .integer(Int64(gid)), .integer(Int64(Int32(bitPattern: uid))),
                    .integer(Int64(Int32(bitPattern: gid))), .text(String(cString: p.pw_name)),
                    .text(p.pw_gecos.map { String(cString: $0) } ?? ""), .text(String(cString: p.pw_dir)),
                    .text(String(cString: p.pw_shell)), "", .null, .null, .null, .null,
                ])
            }
            let uids = context.equalities(for: "uid").compactMap { UInt32($0) }
            let names = context.equalities(for: "username")
            if !uids.isEmpty {
                for uid in uids { if let p = getpwuid(uid) { add(p.pointee) } }
            } else if !names.isEmpty {
                for name in names { if let p = getpwnam(name) { add(p.pointee) } }
            } else {
                setpwent()
                while let p = getpwent() { add(p.pointee) }
                endpwent()
            }
            return rows
        }
    }

    static func groups() -> FunctionTable {
        table("groups", [
            col("gid", .bigint, .index), col("gid_signed", .bigint), col("groupname", .text), col("group_sid", .text, [.index, .hidden]),
            col("comment", .text, .hidden), col("is_hidden", .integer, .hidden), pidWithNamespace,
        ]) { context, schema in
            var rows = TableRows(schema: schema)
            func add(_ g: group) {
                rows.appendRow([.integer(Int64(g.gr_gid)), .integer(Int64(Int32(bitPattern: g.gr_gid))), .text(String(cString: g.gr_name)), .null, .null, .null, .null])
            }
            let gids = context.equalities(for: "gid").compactMap { UInt32($0) }
            if !gids.isEmpty {
                for gid in gids { if let g = getgrgid(gid) { add(g.pointee) } }
            } else {
                setgrent()
                while let g = getgrent() { add(g.pointee) }
                endgrent()
            }
            return rows
        }
    }

    static func userGroups() -> FunctionTable {
        table("user_groups", [col("uid", .bigint, [.index, .optimized]), col("gid", .bigint, .index)]) { context, schema in
            var users: [(String, UInt32, UInt32)] = []
            let uids = context.equalities(for: "uid").compactMap { UInt32($0) }
            if !uids.isEmpty {
                for uid in uids { if let p = getpwuid(uid) { users.append((String(cString: p.pointee.pw_name), uid, p.pointee.pw_gid)) } }
            } else {
                setpwent()
                while let p = getpwent() { users.append((String(cString: p.pointee.pw_name), p.pointee.pw_uid, p.pointee.pw_gid)) }
                endpwent()
            }
            var rows = TableRows(schema: schema)
            for (name, uid, gid) in users {
                var count: Int32 = 64
                var groups = [gid_t](repeating: 0, count: Int(count))
                if getgrouplist(name, gid, &groups, &count) < 0 {
                    groups = [gid_t](repeating: 0, count: Int(count))
                    _ = getgrouplist(name, gid, &groups, &count)
                }
                for g in groups.prefix(Int(max(0, count))) {
                    rows.appendRow([.integer(Int64(uid)), .integer(Int64(g))])
                }
            }
            return rows
        }
    }
}
