import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

/// osquery's docker_* tables: the Docker Engine API over its Unix socket, with osquery's
/// requests (its filters from `=` constraints, `all=1` only with one), fields and rows.
enum DockerTables {
    // MARK: JSON access, as osquery's property-tree reads

    /// The value at a dotted path.
    static func at(_ value: JSONValue?, _ path: String) -> JSONValue? {
        var current = value
        for key in path.split(separator: ".") { current = current?[String(key)] }
        return current
    }

    /// Text of a scalar ('' when absent or not a scalar).
    static func text(_ value: JSONValue?, _ path: String) -> String { at(value, path)?.text ?? "" }

    /// An integer's text ("0" when absent or not a number).
    static func number(_ value: JSONValue?, _ path: String) -> String {
        guard let v = at(value, path) else { return "0" }
        if let i = v.int64 { return String(i) }
        if let u = v.uint64 { return String(u) }
        return "0"
    }

    /// "1" for true, "0" otherwise.
    static func flag(_ value: JSONValue?, _ path: String) -> String {
        switch at(value, path) {
        case .bool(true)?: "1"
        case .string(let s)? where s == "true" || s == "1": "1"
        case .number(let s)? where s == "1": "1"
        default: "0"
        }
    }

    /// The string elements of an array (or of an object's values), null and absent as none.
    static func strings(_ value: JSONValue?, _ path: String) -> [String] {
        switch at(value, path) {
        case .array(let items)?: items.map { $0.text ?? "" }
        case .object(let members)?: members.map { $0.1.text ?? "" }
        default: []
        }
    }

    static func stripSHA(_ s: String) -> String { s.hasPrefix("sha256:") ? String(s.dropFirst(7)) : s }

    /// osquery's check of a constraint value sent to the engine: a SHA-256 hash or a prefix of one.
    static func acceptable(_ value: String) -> Bool {
        if value.utf8.count > 64 {
            StatusLog.info("Constraint value is too long. Ignoring: \(value)")
            return false
        }
        if !value.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 | 0x20 >= 97 && $0 | 0x20 <= 102) }) {
            StatusLog.info("Constraint value is not SHA-256 hash. Ignoring: \(value)")
            return false
        }
        return true
    }

    /// osquery's query string for `=` constraints on `key`: `?[all=1&]filters={"key":{"v":true,…}}`
    /// (URL-encoded), and the values sent; no query without such a constraint.
    static func filterQuery(_ context: QueryContext, _ key: String, all: Bool) -> (query: String, values: [String]) {
        guard context.hasConstraint(key, op: .equals) else { return ("", []) }
        let values = context.equalities(for: key).filter(acceptable)
        let items = values.map { "%22" + $0 + "%22%3Atrue" }.joined(separator: "%2C")
        return ("?" + (all ? "all=1&" : "") + "filters=%7B%22" + key + "%22%3A%7B" + items + "%7D%7D", values)
    }

    /// An object's key as osquery reports it: the engine matches ids by prefix, so a constraint
    /// value that prefixes the key is reported instead (and SQLite's own `=` keeps the row).
    static func key(_ node: JSONValue, _ field: String, _ prefixes: [String]) -> String {
        let value = stripSHA(text(node, field))
        return prefixes.first { value.hasPrefix($0) } ?? value
    }

    /// `YYYY-MM-DDTHH:MM:SS…` (UTC) as Unix seconds; 0 when it does not parse.
    static func unixTime(_ iso: String) -> Int64 {
        let u = Array(iso.utf8)
        guard u.count >= 19, u[4] == 45, u[7] == 45, u[10] == 84, u[13] == 58, u[16] == 58 else {
            if !iso.isEmpty { StatusLog.info("Failed to parse date: \(iso)") }
            return 0
        }
        func field(_ range: Range<Int>) -> Int? {
            var v = 0
            for i in range {
                guard u[i] >= 48 && u[i] <= 57 else { return nil }
                v = v * 10 + Int(u[i] - 48)
            }
            return v
        }
        guard let year = field(0..<4), let month = field(5..<7), let day = field(8..<10), let hour = field(11..<13),
              let minute = field(14..<16), let second = field(17..<19) else { return 0 }
        var tm = Glibc.tm()
        tm.tm_year = Int32(year - 1900)
        tm.tm_mon = Int32(month - 1)
        tm.tm_mday = Int32(day)
        tm.tm_hour = Int32(hour)
        tm.tm_min = Int32(minute)
        tm.tm_sec = Int32(second)
        return Int64(timegm(&tm))
    }

    /// The leading digits after the first '.' of a timestamp, as osquery compares fractions.
    static func fraction(_ iso: String) -> Int64? {
        guard let dot = iso.firstIndex(of: ".") else { return nil }
        let digits = iso[iso.index(after: dot)...].prefix { $0.isASCII && $0.isNumber }
        return digits.isEmpty ? nil : Int64(digits.prefix(18))
    }

    static func rows(_ schema: TableSchema, _ body: (inout TableRows) -> Void) -> TableRows {
        var rows = TableRows(schema: schema)
        body(&rows)
        return rows
    }

    // MARK: engine

    static func version(flags: Flags, log: OnceLog = .shared) -> FunctionTable {
        table("docker_version", [
            col("version", .text, .collateVersion), col("api_version", .text, .collateVersion), col("min_api_version", .text, .collateVersion),
            col("git_commit", .text), col("go_version", .text, .collateVersion), col("os", .text), col("arch", .text),
            col("kernel_version", .text, .collateVersion), col("build_time", .text),
        ], attributes: .cacheable) { _, schema in
            rows(schema) { rows in
                guard let v = SocketAPI.docker(flags: flags, log: log).get("/version", what: "version") else { return }
                rows.appendRow(["Version", "ApiVersion", "MinAPIVersion", "GitCommit", "GoVersion", "Os", "Arch", "KernelVersion", "BuildTime"]
                    .map { .text(text(v, $0)) })
            }
        }
    }

    static func info(flags: Flags, log: OnceLog = .shared) -> FunctionTable {
        table("docker_info", [
            col("id", .text, .collateNocase), col("containers", .integer), col("containers_running", .integer),
            col("containers_paused", .integer), col("containers_stopped", .integer), col("images", .integer),
            col("storage_driver", .text), col("memory_limit", .integer), col("swap_limit", .integer), col("kernel_memory", .integer),
            col("cpu_cfs_period", .integer), col("cpu_cfs_quota", .integer), col("cpu_shares", .integer), col("cpu_set", .integer),
            col("ipv4_forwarding", .integer), col("bridge_nf_iptables", .integer), col("bridge_nf_ip6tables", .integer),
            col("oom_kill_disable", .integer), col("logging_driver", .text), col("cgroup_driver", .text),
            col("kernel_version", .text, .collateVersion), col("os", .text), col("os_type", .text), col("architecture", .text),
            col("cpus", .integer), col("memory", .bigint), col("http_proxy", .text), col("https_proxy", .text), col("no_proxy", .text),
            col("name", .text), col("server_version", .text, .collateVersion), col("root_dir", .text),
        ], attributes: .cacheable) { _, schema in
            rows(schema) { rows in
                guard let v = SocketAPI.docker(flags: flags, log: log).get("/info", what: "info") else { return }
                // Column: (kind, field); t text, n number, b boolean.
                let fields: [(Character, String)] = [
                    ("t", "ID"), ("n", "Containers"), ("n", "ContainersRunning"), ("n", "ContainersPaused"), ("n", "ContainersStopped"),
                    ("n", "Images"), ("t", "Driver"), ("b", "MemoryLimit"), ("b", "SwapLimit"), ("b", "KernelMemory"),
                    ("b", "CpuCfsPeriod"), ("b", "CpuCfsQuota"), ("b", "CPUShares"), ("b", "CPUSet"), ("b", "IPv4Forwarding"),
                    ("b", "BridgeNfIptables"), ("b", "BridgeNfIp6tables"), ("b", "OomKillDisable"), ("t", "LoggingDriver"),
                    ("t", "CgroupDriver"), ("t", "KernelVersion"), ("t", "OperatingSystem"), ("t", "OSType"), ("t", "Architecture"),
                    ("n", "NCPU"), ("n", "MemTotal"), ("t", "HttpProxy"), ("t", "HttpsProxy"), ("t", "NoProxy"), ("t", "Name"),
                    ("t", "ServerVersion"), ("t", "DockerRootDir"),
                ]
                var row: [String: String] = [:]
                for (column, (kind, field)) in zip(schema.columns, fields) {
                    row[column.name] = kind == "t" ? text(v, field) : kind == "n" ? number(v, field) : flag(v, field)
                }
                rows.appendRow(strings: row, schema: schema)
            }
        }
    }

    // MARK: labels

    /// Rows of (key column, label key, value) for the objects of a list, as osquery's getLabels.
    static func labels(
        _ context: QueryContext, _ schema: TableSchema, flags: Flags, log: OnceLog, what: String, column: String, field: String, url: String,
        path: String?, filter: Bool, all: Bool
    ) -> TableRows {
        rows(schema) { rows in
            let (query, values) = filterQuery(context, column, all: all)
            guard let tree = SocketAPI.docker(flags: flags, log: log).get(filter ? url + query : url, what: what) else { return }
            let list = (path.map { tree[$0] } ?? tree)?.array ?? []
            for node in list {
                let name = key(node, field, values)
                for (label, value) in node["Labels"]?.members ?? [] {
                    rows.append(.text(name))
                    rows.append(.text(label))
                    rows.append(.text(value.text ?? ""))
                }
            }
        }
    }

    // MARK: images

    static func images(flags: Flags, log: OnceLog = .shared) -> FunctionTable {
        table("docker_images", [
            col("id", .text, .collateNocase), col("created", .bigint), col("size_bytes", .bigint), col("tags", .text),
        ]) { _, schema in
            rows(schema) { rows in
                guard let list = SocketAPI.docker(flags: flags, log: log).get("/images/json", what: "images")?.array else { return }
                for node in list {
                    rows.appendRow(strings: [
                        "id": stripSHA(text(node, "Id")), "created": number(node, "Created"), "size_bytes": number(node, "Size"),
                        "tags": strings(node, "RepoTags").joined(separator: ","),
                    ], schema: schema)
                }
            }
        }
    }

    static func imageLabels(flags: Flags, log: OnceLog = .shared) -> FunctionTable {
        table("docker_image_labels", [col("id", .text, [.index, .collateNocase]), col("key", .text), col("value", .text)]) { context, schema in
            labels(context, schema, flags: flags, log: log, what: "image", column: "id", field: "Id", url: "/images/json", path: nil, filter: false, all: false)
        }
    }

    /// The ids an image table walks: the acceptable `=` values, else every image.
    static func imageIDs(_ context: QueryContext, _ api: SocketAPI) -> [String] {
        if context.hasConstraint("id", op: .equals) { return context.equalities(for: "id").filter(acceptable) }
        guard let list = api.get("/images/json", what: "images")?.array else { return [] }
        return api.walked(list, what: "images").map { stripSHA(text($0, "Id")) }
    }

    static func imageHistory(flags: Flags, log: OnceLog = .shared) -> FunctionTable {
        table("docker_image_history", [
            col("id", .text, [.index, .collateNocase]), col("created", .bigint), col("size", .bigint), col("created_by", .text),
            col("tags", .text), col("comment", .text),
        ]) { context, schema in
            rows(schema) { rows in
                let api = SocketAPI.docker(flags: flags, log: log)
                for id in imageIDs(context, api) {
                    guard let entries = api.get("/images/" + id + "/history", what: "images history")?.array else { continue }
                    for node in entries {
                        rows.appendRow(strings: [
                            "id": id, "created": number(node, "Created"), "size": number(node, "Size"), "created_by": text(node, "CreatedBy"),
                            "tags": strings(node, "Tags").joined(separator: ","), "comment": text(node, "Comment"),
                        ], schema: schema)
                    }
                }
            }
        }
    }

    static func imageLayers(flags: Flags, log: OnceLog = .shared) -> FunctionTable {
        table("docker_image_layers", [
            col("id", .text, [.index, .collateNocase]), col("layer_id", .text, .collateNocase), col("layer_order", .integer),
        ]) { context, schema in
            rows(schema) { rows in
                let api = SocketAPI.docker(flags: flags, log: log)
                for id in imageIDs(context, api) {
                    guard let image = api.get("/images/" + id + "/json", what: "images layers") else { continue }
                    for (order, layer) in strings(image, "RootFS.Layers").enumerated() {
                        rows.append(.text(id))
                        rows.append(.text(stripSHA(layer)))
                        rows.append(.integer(Int64(order + 1)))
                    }
                }
            }
        }
    }

    // MARK: volumes and networks

    static func volumes(flags: Flags, log: OnceLog = .shared) -> FunctionTable {
        table("docker_volumes", [
            col("name", .text, .index), col("driver", .text), col("mount_point", .text), col("type", .text),
        ]) { context, schema in
            rows(schema) { rows in
                let (query, values) = filterQuery(context, "name", all: false)
                guard let tree = SocketAPI.docker(flags: flags, log: log).get("/volumes" + query, what: "volumes") else { return }
                for node in tree["Volumes"]?.array ?? [] {
                    rows.append(.text(key(node, "Name", values)))
                    rows.append(.text(text(node, "Driver")))
                    rows.append(.text(text(node, "Mountpoint")))
                    rows.append(.text(text(node, "Options.type")))
                }
            }
        }
    }

    static func volumeLabels(flags: Flags, log: OnceLog = .shared) -> FunctionTable {
        table("docker_volume_labels", [col("name", .text, .index), col("key", .text, .index), col("value", .text)]) { context, schema in
            labels(context, schema, flags: flags, log: log, what: "volume", column: "name", field: "Name", url: "/volumes", path: "Volumes", filter: true, all: false)
        }
    }

    static func networks(flags: Flags, log: OnceLog = .shared) -> FunctionTable {
        table("docker_networks", [
            col("id", .text, [.index, .collateNocase]), col("name", .text), col("driver", .text), col("created", .bigint),
            col("enable_ipv6", .integer), col("subnet", .text), col("gateway", .text),
        ]) { context, schema in
            rows(schema) { rows in
                let (query, values) = filterQuery(context, "id", all: false)
                guard let list = SocketAPI.docker(flags: flags, log: log).get("/networks" + query, what: "networks")?.array else { return }
                for node in list {
                    let ipam = at(node, "IPAM.Config")?.array?.first
                    rows.appendRow(strings: [
                        "id": key(node, "Id", values), "name": text(node, "Name"), "driver": text(node, "Driver"),
                        "created": String(unixTime(text(node, "Created"))), "enable_ipv6": flag(node, "EnableIPv6"),
                        "subnet": ipam.map { text($0, "Subnet") } ?? "", "gateway": ipam.map { text($0, "Gateway") } ?? "",
                    ], schema: schema)
                }
            }
        }
    }

    static func networkLabels(flags: Flags, log: OnceLog = .shared) -> FunctionTable {
        table("docker_network_labels", [col("id", .text, [.index, .collateNocase]), col("key", .text), col("value", .text)]) { context, schema in
            labels(context, schema, flags: flags, log: log, what: "network", column: "id", field: "Id", url: "/networks", path: nil, filter: true, all: false)
        }
    }

    // MARK: containers

    /// The containers a scan covers: `/containers/json`, filtered by the `=` ids (with `all=1`
    /// then; without an id constraint the engine lists running containers only, as in osquery).
    static func containers(_ context: QueryContext, _ api: SocketAPI) -> (list: [JSONValue], ids: [String]) {
        let (query, ids) = filterQuery(context, "id", all: true)
        return (api.get("/containers/json" + query, what: "containers")?.array ?? [], ids)
    }

    static func containers(flags: Flags, log: OnceLog = .shared) -> FunctionTable {
        table("docker_containers", [
            col("id", .text, [.index, .collateNocase]), col("name", .text, .index), col("image", .text),
            col("image_id", .text, .collateNocase), col("command", .text), col("created", .bigint), col("state", .text),
            col("status", .text), col("pid", .bigint), col("path", .text), col("config_entrypoint", .text), col("started_at", .text),
            col("finished_at", .text), col("privileged", .integer), col("security_options", .text), col("env_variables", .text),
            col("readonly_rootfs", .integer), col("cgroup_namespace", .text), col("ipc_namespace", .text), col("mnt_namespace", .text),
            col("net_namespace", .text), col("pid_namespace", .text), col("user_namespace", .text), col("uts_namespace", .text),
        ]) { context, schema in
            rows(schema) { rows in
                let api = SocketAPI.docker(flags: flags, log: log)
                let (list, ids) = containers(context, api)
                for node in api.walked(list, what: "containers") {
                    var row: [String: String] = [
                        "id": key(node, "Id", ids), "name": strings(node, "Names").first ?? "", "image_id": stripSHA(text(node, "ImageID")),
                        "image": text(node, "Image"), "command": text(node, "Command"), "created": number(node, "Created"),
                        "state": text(node, "State"), "status": text(node, "Status"),
                    ]
                    let id = row["id"]!
                    if let details = api.get("/containers/" + id + "/json?stream=false", what: "container " + id) {
                        let pid = at(details, "State.Pid")?.int64 ?? -1
                        row["pid"] = String(pid)
                        row["started_at"] = text(details, "State.StartedAt")
                        row["finished_at"] = row["state"] != "running" ? text(details, "State.FinishedAt") : ""
                        row["privileged"] = flag(details, "HostConfig.Privileged")
                        row["readonly_rootfs"] = flag(details, "HostConfig.ReadonlyRootfs")
                        row["path"] = text(details, "Path")
                        row["config_entrypoint"] = strings(details, "Config.Entrypoint").joined(separator: ", ")
                        row["security_options"] = strings(details, "HostConfig.SecurityOpt").joined(separator: ", ")
                        row["env_variables"] = strings(details, "Config.Env").joined(separator: ", ")
                        // The namespaces of the container's init process, as process_namespaces reads them.
                        if pid > 0 {
                            for kind in KernelStateTables.namespaceKinds {
                                var st = stat()
                                if stat("/proc/\(pid)/ns/" + kind, &st) == 0 { row[kind + "_namespace"] = String(st.st_ino) }
                            }
                        }
                    }
                    rows.appendRow(strings: row, schema: schema)
                }
            }
        }
    }

    static func containerLabels(flags: Flags, log: OnceLog = .shared) -> FunctionTable {
        table("docker_container_labels", [
            col("id", .text, [.index, .collateNocase]), col("key", .text, .index), col("value", .text),
        ]) { context, schema in
            labels(context, schema, flags: flags, log: log, what: "container", column: "id", field: "Id", url: "/containers/json", path: nil, filter: true, all: true)
        }
    }

    static func containerEnvs(flags: Flags, log: OnceLog = .shared) -> FunctionTable {
        table("docker_container_envs", [col("id", .text, [.index, .collateNocase]), col("key", .text), col("value", .text)]) { context, schema in
            rows(schema) { rows in
                let api = SocketAPI.docker(flags: flags, log: log)
                let (list, ids) = containers(context, api)
                for node in api.walked(list, what: "containers") {
                    let id = key(node, "Id", ids)
                    guard let details = api.get("/containers/" + id + "/json?stream=false", what: "container " + id) else { continue }
                    for variable in strings(details, "Config.Env") {
                        rows.append(.text(id))
                        // No '=': osquery's key and value are both the whole text.
                        if let eq = variable.firstIndex(of: "=") {
                            rows.append(.text(String(variable[..<eq])))
                            rows.append(.text(String(variable[variable.index(after: eq)...])))
                        } else {
                            rows.append(.text(variable))
                            rows.append(.text(variable))
                        }
                    }
                }
            }
        }
    }

    static func containerMounts(flags: Flags, log: OnceLog = .shared) -> FunctionTable {
        table("docker_container_mounts", [
            col("id", .text, [.index, .collateNocase]), col("type", .text), col("name", .text, .index), col("source", .text),
            col("destination", .text), col("driver", .text), col("mode", .text), col("rw", .integer), col("propagation", .text),
        ]) { context, schema in
            rows(schema) { rows in
                let (list, ids) = containers(context, SocketAPI.docker(flags: flags, log: log))
                for node in list {
                    let id = key(node, "Id", ids)
                    for mount in node["Mounts"]?.array ?? [] {
                        rows.append(.text(id))
                        for field in ["Type", "Name", "Source", "Destination", "Driver", "Mode"] { rows.append(.text(text(mount, field))) }
                        rows.append(.integer(flag(mount, "RW") == "1" ? 1 : 0))
                        rows.append(.text(text(mount, "Propagation")))
                    }
                }
            }
        }
    }

    static func containerNetworks(flags: Flags, log: OnceLog = .shared) -> FunctionTable {
        table("docker_container_networks", [
            col("id", .text, [.index, .collateNocase]), col("name", .text, .index), col("network_id", .text, .collateNocase),
            col("endpoint_id", .text, .collateNocase), col("gateway", .text), col("ip_address", .text), col("ip_prefix_len", .integer),
            col("ipv6_gateway", .text), col("ipv6_address", .text), col("ipv6_prefix_len", .integer), col("mac_address", .text, .collateNocase),
        ]) { context, schema in
            rows(schema) { rows in
                let (list, ids) = containers(context, SocketAPI.docker(flags: flags, log: log))
                for node in list {
                    let id = key(node, "Id", ids)
                    for (name, network) in at(node, "NetworkSettings.Networks")?.members ?? [] {
                        rows.appendRow(strings: [
                            "id": id, "name": name, "network_id": text(network, "NetworkID"), "endpoint_id": text(network, "EndpointID"),
                            "gateway": text(network, "Gateway"), "ip_address": text(network, "IPAddress"),
                            "ip_prefix_len": number(network, "IPPrefixLen"), "ipv6_gateway": text(network, "IPv6Gateway"),
                            "ipv6_address": text(network, "GlobalIPv6Address"), "ipv6_prefix_len": number(network, "GlobalIPv6PrefixLen"),
                            "mac_address": text(network, "MacAddress"),
                        ], schema: schema)
                    }
                }
            }
        }
    }

    static func containerPorts(flags: Flags, log: OnceLog = .shared) -> FunctionTable {
        table("docker_container_ports", [
            col("id", .text, [.additional, .collateNocase]), col("type", .text), col("port", .integer), col("host_ip", .text),
            col("host_port", .integer),
        ]) { context, schema in
            rows(schema) { rows in
                let (list, ids) = containers(context, SocketAPI.docker(flags: flags, log: log))
                for node in list {
                    let id = key(node, "Id", ids)
                    for port in node["Ports"]?.array ?? [] {
                        rows.appendRow(strings: [
                            "id": id, "type": text(port, "Type"), "port": number(port, "PrivatePort"), "host_ip": text(port, "IP"),
                            "host_port": number(port, "PublicPort"),
                        ], schema: schema)
                    }
                }
            }
        }
    }

    // MARK: one container's processes, stats and file changes

    /// `ps` fields osquery asks `/top` for, in column order.
    static let psFields = "pid,state,uid,gid,euid,egid,suid,sgid,rss,vsz,etime,ppid,pgrp,nlwp,nice,user,time,pcpu,pmem,comm,cmd"
    static let psColumns = ["pid", "state", "uid", "gid", "euid", "egid", "suid", "sgid", "resident_size", "total_size", "start_time",
                            "parent", "pgroup", "threads", "nice", "user", "time", "cpu", "mem", "name", "cmdline"]

    static func containerProcesses(flags: Flags, log: OnceLog = .shared) -> FunctionTable {
        table("docker_container_processes", [
            col("id", .text, [.index, .required, .collateNocase]), col("pid", .bigint, .index), col("name", .text), col("cmdline", .text),
            col("state", .text), col("uid", .bigint), col("gid", .bigint), col("euid", .bigint), col("egid", .bigint), col("suid", .bigint),
            col("sgid", .bigint), col("wired_size", .bigint), col("resident_size", .bigint), col("total_size", .bigint),
            col("start_time", .bigint), col("parent", .bigint), col("pgroup", .bigint), col("threads", .integer), col("nice", .integer),
            col("user", .text), col("time", .text), col("cpu", .double), col("mem", .double),
        ]) { context, schema in
            rows(schema) { rows in
                let api = SocketAPI.docker(flags: flags, log: log)
                for id in context.equalities(for: "id") where acceptable(id) {
                    let uri = "/containers/" + id + "/top?ps_args=axwwo%20" + psFields
                    guard let top = api.get(uri, what: "container " + id) else { continue }
                    for process in top["Processes"]?.array ?? [] {
                        let values = process.array?.map { $0.text ?? "" } ?? []
                        guard values.count == psColumns.count else {
                            StatusLog.info("Error getting docker container processes \(id): unexpected row length (expected 21): \(values.count)")
                            continue
                        }
                        var row = ["id": id]
                        for (column, value) in zip(psColumns, values) { row[column] = value }
                        // ps reports KiB; osquery appends three zeros.
                        row["resident_size"] = values[8] + "000"
                        row["total_size"] = values[9] + "000"
                        rows.appendRow(strings: row, schema: schema)
                    }
                }
            }
        }
    }

    static func containerStats(flags: Flags, log: OnceLog = .shared) -> FunctionTable {
        table("docker_container_stats", [
            col("id", .text, [.index, .required, .collateNocase]), col("name", .text, .index), col("pids", .integer), col("read", .bigint),
            col("preread", .bigint), col("interval", .bigint), col("disk_read", .bigint), col("disk_write", .bigint),
            col("num_procs", .integer), col("cpu_total_usage", .bigint), col("cpu_kernelmode_usage", .bigint),
            col("cpu_usermode_usage", .bigint), col("system_cpu_usage", .bigint), col("online_cpus", .integer),
            col("pre_cpu_total_usage", .bigint), col("pre_cpu_kernelmode_usage", .bigint), col("pre_cpu_usermode_usage", .bigint),
            col("pre_system_cpu_usage", .bigint), col("pre_online_cpus", .integer), col("memory_usage", .bigint),
            col("memory_cached", .bigint), col("memory_inactive_file", .bigint), col("memory_total_inactive_file", .bigint),
            col("memory_max_usage", .bigint), col("memory_limit", .bigint), col("network_rx_bytes", .bigint), col("network_tx_bytes", .bigint),
        ]) { context, schema in
            rows(schema) { rows in
                let api = SocketAPI.docker(flags: flags, log: log)
                for id in context.equalities(for: "id") where acceptable(id) {
                    guard let stats = api.get("/containers/" + id + "/stats?stream=false", what: "container " + id) else { continue }
                    let read = text(stats, "read"), preread = text(stats, "preread")
                    let readTime = unixTime(read), prereadTime = unixTime(preread)
                    var nanos: Int64 = 0
                    if !read.isEmpty && !preread.isEmpty {
                        if let a = fraction(read), let b = fraction(preread) { nanos = a - b } else {
                            StatusLog.info("Failed to parse dates: \(read) and \(preread)")
                        }
                    }
                    func bytes(_ op: String) -> String {
                        let entries = at(stats, "blkio_stats.io_service_bytes_recursive")?.array ?? []
                        let total = entries.filter { text($0, "op").lowercased() == op }.reduce(UInt64(0)) { $0 &+ (at($1, "value")?.uint64 ?? 0) }
                        return String(Int64(bitPattern: total))
                    }
                    func network(_ field: String) -> String {
                        let total = (stats["networks"]?.members ?? []).reduce(UInt64(0)) { $0 &+ (at($1.1, field)?.uint64 ?? 0) }
                        return String(Int64(bitPattern: total))
                    }
                    var row: [String: String] = [
                        "id": id, "name": text(stats, "name"), "pids": number(stats, "pids_stats.current"), "read": String(readTime),
                        "preread": String(prereadTime), "interval": String((readTime &- prereadTime) &* 1_000_000_000 &+ nanos),
                        "disk_read": bytes("read"), "disk_write": bytes("write"), "num_procs": number(stats, "num_procs"),
                        "network_rx_bytes": network("rx_bytes"), "network_tx_bytes": network("tx_bytes"),
                    ]
                    for (column, path) in [
                        ("cpu_total_usage", "cpu_stats.cpu_usage.total_usage"), ("cpu_kernelmode_usage", "cpu_stats.cpu_usage.usage_in_kernelmode"),
                        ("cpu_usermode_usage", "cpu_stats.cpu_usage.usage_in_usermode"), ("system_cpu_usage", "cpu_stats.system_cpu_usage"),
                        ("online_cpus", "cpu_stats.online_cpus"), ("pre_cpu_total_usage", "precpu_stats.cpu_usage.total_usage"),
                        ("pre_cpu_kernelmode_usage", "precpu_stats.cpu_usage.usage_in_kernelmode"),
                        ("pre_cpu_usermode_usage", "precpu_stats.cpu_usage.usage_in_usermode"),
                        ("pre_system_cpu_usage", "precpu_stats.system_cpu_usage"), ("pre_online_cpus", "precpu_stats.online_cpus"),
                        ("memory_usage", "memory_stats.usage"), ("memory_cached", "memory_stats.stats.cache"),
                        ("memory_inactive_file", "memory_stats.stats.inactive_file"),
                        ("memory_total_inactive_file", "memory_stats.stats.total_inactive_file"),
                        ("memory_max_usage", "memory_stats.max_usage"), ("memory_limit", "memory_stats.limit"),
                    ] {
                        row[column] = number(stats, path)
                    }
                    rows.appendRow(strings: row, schema: schema)
                }
            }
        }
    }

    static func containerFsChanges(flags: Flags, log: OnceLog = .shared) -> FunctionTable {
        table("docker_container_fs_changes", [
            col("id", .text, [.index, .required, .collateNocase]), col("path", .text), col("change_type", .text),
        ]) { context, schema in
            rows(schema) { rows in
                let api = SocketAPI.docker(flags: flags, log: log)
                for id in context.equalities(for: "id") where acceptable(id) {
                    guard let changes = api.get("/containers/" + id + "/changes", what: "container fs changes " + id)?.array else { continue }
                    for change in changes {
                        let type: String
                        switch at(change, "Kind")?.int64 {
                        case 0?: type = "C"
                        case 1?: type = "A"
                        case 2?: type = "D"
                        default: continue
                        }
                        rows.append(.text(id))
                        rows.append(.text(text(change, "Path")))
                        rows.append(.text(type))
                    }
                }
            }
        }
    }
}
