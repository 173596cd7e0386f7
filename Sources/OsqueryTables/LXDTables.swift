import OsqueryEngine

/// osquery's lxd_* tables: LXD's REST API on `--lxd_socket` (osquery's applications/lxd), one
/// GET per list and per object as osquery asks, each answer's `metadata` read into osquery's
/// columns. A field LXD leaves out is NULL (osquery's row lacks it), or '' where osquery
/// reads it with a default of ''; unlike osquery, an absent field never loses the whole row
/// (osquery drops every image without an `update_source`, i.e. every locally imported one).
enum LXDTables {
    static func api(_ flags: Flags, _ log: OnceLog) -> SocketAPI {
        // osquery accepts "200 OK" and "202 OK".
        SocketAPI(
            product: "LXD", socket: flags[.lxdSocket], maxObjects: flags[.lxdMaxObjects], maxObjectsFlag: "lxd_max_objects",
            okStatuses: [200, 202], flags: flags, log: log)
    }

    // MARK: reading LXD's documents

    /// The `metadata` of the answer to a GET of `uri`.
    static func metadata(_ api: SocketAPI, _ uri: String, what: String) -> JSONValue? {
        api.get(uri, what: what)?["metadata"]
    }

    /// The object URLs of a list endpoint (`metadata` is an array of paths), at most `--lxd_max_objects`.
    static func list(_ api: SocketAPI, _ uri: String, what: String) -> ArraySlice<String> {
        guard let items = metadata(api, uri, what: what)?.array else { return [] }
        return api.walked(items, what: what).map { $0.text ?? "" }[...]
    }

    /// An object's document, logged (as osquery's "Error parsing details for …") when it is not one.
    static func object(_ api: SocketAPI, _ uri: String, what: String) -> JSONValue? {
        guard let node = metadata(api, uri, what: what) else { return nil }
        guard node.members != nil else {
            api.log.info("Error parsing details for LXD \(what): not an object")
            return nil
        }
        return node
    }

    static func text(_ value: JSONValue?) -> SQLValue {
        if let s = value?.text { .text(s) } else { .null }
    }

    static func textOrEmpty(_ value: JSONValue?) -> SQLValue { .text(value?.text ?? "") }

    /// 1 or 0 as osquery reads a boolean (JSON true/false, or their text); NULL when absent.
    static func flag(_ value: JSONValue?) -> SQLValue {
        switch value {
        case .bool(let b)?: .integer(b ? 1 : 0)
        case .string(let s)? where s == "true" || s == "1": .integer(1)
        case .string(let s)? where s == "false" || s == "0": .integer(0)
        case .number(let s)? where s == "1" || s == "0": .integer(s == "1" ? 1 : 0)
        default: .null
        }
    }

    static func number(_ value: JSONValue?) -> SQLValue {
        if let i = value?.int64 { return .integer(i) }
        if let u = value?.uint64 { return .integer(Int64(clamping: u)) }
        return .null
    }

    /// LXD's instance names (letters, digits and '-'): anything else is not sent as a path.
    static func instanceName(_ name: String, _ log: OnceLog) -> Bool {
        let ok = !name.isEmpty && name.utf8.count <= 63
            && name.utf8.allSatisfy { ($0 | 0x20 >= 97 && $0 | 0x20 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 45 }
        if !ok { log.info("Not an LXD instance name, ignoring: \(name.debugDescription)") }
        return ok
    }

    /// The `=` values of `column`, once each, in order.
    static func equalities(_ context: QueryContext, _ column: String) -> [String] {
        var seen = Set<String>()
        return context.equalities(for: column).filter { seen.insert($0).inserted }
    }

    // MARK: instances

    static func instances(flags: Flags, log: OnceLog = .shared) -> FunctionTable {
        table("lxd_instances", [
            col("name", .text, .index), col("status", .text), col("stateful", .integer), col("ephemeral", .integer),
            col("created_at", .text), col("base_image", .text), col("architecture", .text), col("os", .text),
            col("description", .text), col("pid", .integer), col("processes", .integer),
        ]) { context, schema in
            var rows = TableRows(schema: schema)
            let api = api(flags, log)
            // /containers, not /instances, as osquery (LXD before 3.19 has only the former).
            let urls: [String] = context.hasConstraint("name", op: .equals)
                ? equalities(context, "name").filter { instanceName($0, log) }.map { "/1.0/containers/" + $0 }
                : Array(list(api, "/1.0/containers", what: "instances"))
            for url in urls {
                guard let node = object(api, url, what: "instance \(url)") else { continue }
                let properties = metadata(api, url + "/metadata", what: "instance metadata \(url)")?["properties"]
                let state = metadata(api, url + "/state", what: "instance state \(url)")
                rows.appendRow([
                    text(node["name"]), text(node["status"]), flag(node["stateful"]), flag(node["ephemeral"]), text(node["created_at"]),
                    text(node["config"]?["volatile.base_image"]), text(properties?["architecture"]), text(properties?["os"]),
                    text(properties?["description"]), number(state?["pid"]), number(state?["processes"]),
                ])
            }
            return rows
        }
    }

    static func instanceConfig(flags: Flags, log: OnceLog = .shared) -> FunctionTable {
        table("lxd_instance_config", [col("name", .text, [.index, .required]), col("key", .text), col("value", .text)]) { context, schema in
            var rows = TableRows(schema: schema)
            let api = api(flags, log)
            for name in equalities(context, "name") where instanceName(name, log) {
                let url = "/1.0/containers/" + name
                guard let node = object(api, url, what: "instance \(url)") else { continue }
                for (key, value) in node["config"]?.members ?? [] {
                    rows.appendRow([.text(name), .text(key), .text(value.text ?? "")])
                }
            }
            return rows
        }
    }

    static func instanceDevices(flags: Flags, log: OnceLog = .shared) -> FunctionTable {
        table("lxd_instance_devices", [
            col("name", .text, [.index, .required]), col("device", .text), col("device_type", .text), col("key", .text), col("value", .text),
        ]) { context, schema in
            var rows = TableRows(schema: schema)
            let api = api(flags, log)
            for name in equalities(context, "name") where instanceName(name, log) {
                let url = "/1.0/containers/" + name
                guard let node = object(api, url, what: "instance \(url)") else { continue }
                // The devices in effect: the instance's own and its profiles'.
                for (device, settings) in node["expanded_devices"]?.members ?? [] {
                    let type = SQLValue.text(settings["type"]?.text ?? "")
                    for (key, value) in settings.members ?? [] where key != "type" {
                        rows.appendRow([.text(name), .text(device), type, .text(key), .text(value.text ?? "")])
                    }
                }
            }
            return rows
        }
    }

    // MARK: images

    static func images(flags: Flags, log: OnceLog = .shared) -> FunctionTable {
        table("lxd_images", [
            col("id", .text, [.index, .collateNocase]), col("architecture", .text), col("os", .text), col("release", .text),
            col("description", .text), col("aliases", .text), col("filename", .text), col("size", .bigint), col("auto_update", .integer),
            col("cached", .integer), col("public", .integer), col("created_at", .text), col("expires_at", .text), col("uploaded_at", .text),
            col("last_used_at", .text), col("update_source_server", .text), col("update_source_protocol", .text),
            col("update_source_certificate", .text), col("update_source_alias", .text),
        ]) { context, schema in
            var rows = TableRows(schema: schema)
            let api = api(flags, log)
            // (URL, the id to report): LXD takes a fingerprint prefix, which osquery reports as given.
            let targets: [(String, String?)] = context.hasConstraint("id", op: .equals)
                ? equalities(context, "id").filter(DockerTables.acceptable).map { ("/1.0/images/" + $0, $0) }
                : list(api, "/1.0/images", what: "images").map { ($0, nil) }
            for (url, id) in targets {
                guard let node = object(api, url, what: "image \(url)") else { continue }
                let properties = node["properties"], source = node["update_source"]
                let aliases = (node["aliases"]?.array ?? []).map { $0["name"]?.text ?? "" }.joined(separator: ",")
                rows.appendRow([
                    id.map { .text($0) } ?? text(node["fingerprint"]), text(node["architecture"]), text(properties?["os"]),
                    text(properties?["release"]), text(properties?["description"]), .text(aliases), text(node["filename"]),
                    number(node["size"]), flag(node["auto_update"]), flag(node["cached"]), flag(node["public"]), text(node["created_at"]),
                    text(node["expires_at"]), text(node["uploaded_at"]), text(node["last_used_at"]), text(source?["server"]),
                    text(source?["protocol"]), text(source?["certificate"]), text(source?["alias"]),
                ])
            }
            return rows
        }
    }

    // MARK: server

    static func certificates(flags: Flags, log: OnceLog = .shared) -> FunctionTable {
        table("lxd_certificates", [
            col("name", .text), col("type", .text), col("fingerprint", .text, .collateNocase), col("certificate", .text),
        ]) { _, schema in
            var rows = TableRows(schema: schema)
            let api = api(flags, log)
            for url in list(api, "/1.0/certificates", what: "certificates") {
                guard let node = object(api, url, what: "certificate \(url)") else { continue }
                rows.appendRow([textOrEmpty(node["name"]), textOrEmpty(node["type"]), textOrEmpty(node["fingerprint"]), textOrEmpty(node["certificate"])])
            }
            return rows
        }
    }

    static func networks(flags: Flags, log: OnceLog = .shared) -> FunctionTable {
        table("lxd_networks", [
            col("name", .text), col("type", .text), col("managed", .integer), col("ipv4_address", .text), col("ipv6_address", .text),
            col("used_by", .text), col("bytes_received", .bigint), col("bytes_sent", .bigint), col("packets_received", .bigint),
            col("packets_sent", .bigint), col("hwaddr", .text), col("state", .text), col("mtu", .integer),
        ]) { _, schema in
            var rows = TableRows(schema: schema)
            let api = api(flags, log)
            for url in list(api, "/1.0/networks", what: "networks") {
                guard let node = object(api, url, what: "network \(url)") else { continue }
                // Users as instance names where they are instances.
                let users = (node["used_by"]?.array ?? []).map { user -> String in
                    let u = user.text ?? ""
                    for prefix in ["/1.0/containers/", "/1.0/instances/"] where u.hasPrefix(prefix) { return String(u.dropFirst(prefix.count)) }
                    return u
                }
                let state = metadata(api, url + "/state", what: "network state \(url)")
                let counters = state?["counters"]
                rows.appendRow([
                    text(node["name"]), text(node["type"]), flag(node["managed"]), textOrEmpty(node["config"]?["ipv4.address"]),
                    textOrEmpty(node["config"]?["ipv6.address"]), .text(users.joined(separator: ",")), number(counters?["bytes_received"]),
                    number(counters?["bytes_sent"]), number(counters?["packets_received"]), number(counters?["packets_sent"]),
                    text(state?["hwaddr"]), text(state?["state"]), number(state?["mtu"]),
                ])
            }
            return rows
        }
    }

    static func storagePools(flags: Flags, log: OnceLog = .shared) -> FunctionTable {
        table("lxd_storage_pools", [
            col("name", .text), col("driver", .text), col("source", .text), col("size", .text), col("space_used", .bigint),
            col("space_total", .bigint), col("inodes_used", .bigint), col("inodes_total", .bigint),
        ]) { _, schema in
            var rows = TableRows(schema: schema)
            let api = api(flags, log)
            for url in list(api, "/1.0/storage-pools", what: "storage pools") {
                guard let node = object(api, url, what: "storage pool \(url)") else { continue }
                let resources = metadata(api, url + "/resources", what: "storage pool resources \(url)")
                rows.appendRow([
                    text(node["name"]), text(node["driver"]), textOrEmpty(node["config"]?["source"]), textOrEmpty(node["config"]?["size"]),
                    number(resources?["space"]?["used"]), number(resources?["space"]?["total"]), number(resources?["inodes"]?["used"]),
                    number(resources?["inodes"]?["total"]),
                ])
            }
            return rows
        }
    }

    // MARK: cluster

    /// One row for this server. Its member_config columns are the last entry of LXD's
    /// `member_config`, as osquery (which writes each entry over the one before).
    static func cluster(flags: Flags, log: OnceLog = .shared) -> FunctionTable {
        table("lxd_cluster", [
            col("server_name", .text), col("enabled", .integer), col("member_config_entity", .text), col("member_config_name", .text),
            col("member_config_key", .text), col("member_config_value", .text), col("member_config_description", .text),
        ]) { _, schema in
            var rows = TableRows(schema: schema)
            guard let node = object(api(flags, log), "/1.0/cluster", what: "cluster") else { return rows }
            let last = node["member_config"]?.array?.last
            rows.appendRow([
                text(node["server_name"]), flag(node["enabled"]), text(last?["entity"]), text(last?["name"]), text(last?["key"]),
                last.map { textOrEmpty($0["value"]) } ?? .null, text(last?["description"]),
            ])
            return rows
        }
    }

    static func clusterMembers(flags: Flags, log: OnceLog = .shared) -> FunctionTable {
        table("lxd_cluster_members", [
            col("server_name", .text), col("url", .text), col("database", .integer), col("status", .text), col("message", .text),
        ]) { _, schema in
            var rows = TableRows(schema: schema)
            let api = api(flags, log)
            for url in list(api, "/1.0/cluster/members", what: "cluster members") {
                guard let node = object(api, url, what: "cluster member \(url)") else { continue }
                rows.appendRow([text(node["server_name"]), text(node["url"]), flag(node["database"]), text(node["status"]), text(node["message"])])
            }
            return rows
        }
    }
}
