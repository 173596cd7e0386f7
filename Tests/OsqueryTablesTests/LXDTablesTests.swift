import Foundation
import OsqueryEngine
@testable import OsqueryTables
import ProtocolFixture
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A private LXD daemon (Debian's lxd) for one test: its own LXD_DIR and socket in a scratch
/// directory. `stop()` deletes its instances and the networks the test made (a bridge lives in
/// the host's namespace), ends the daemon and unmounts what it left under the directory.
final class PrivateLXD: PrivateAPIDaemon, @unchecked Sendable {
    static let lxd = "/usr/bin/lxd", cli = "/usr/bin/lxc", dnsmasq = "/usr/sbin/dnsmasq"
    var networks: [String] = []

    init() throws {
        let dir = TempDir()
        let p = dir.path
        let environment = ["LXD_DIR": p, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
        try super.init(dir: dir, executable: Self.lxd, arguments: ["--group", "root", "--logfile", p + "/lxd.log"], environment: environment,
                       socket: p + "/unix.socket", ping: "/1.0", childEnvironment: environment.merging(["HOME": p]) { $1 })
    }

    /// The lxc CLI against this daemon; throws (with its stderr) when it fails.
    @discardableResult
    func lxc(_ arguments: [String]) throws -> String {
        try run(Self.cli, arguments)
    }

    /// `lxc … --format json` (or `lxc query`) read as JSON.
    func json(_ arguments: [String]) throws -> JSONValue { try JSONValue.parse(try lxc(arguments)) }

    override func willStop() {
        if process.isRunning, let names = try? lxc(["list", "--format", "csv", "-c", "n"]), !names.isEmpty {
            for name in names.split(separator: "\n") { _ = try? lxc(["delete", "-f", String(name)]) }
        }
        for network in networks where process.isRunning { _ = try? lxc(["network", "delete", network]) }
    }

    deinit { stop() }
}

@Suite(.serialized) struct LXDTablesTests {
    static var daemonAvailable: Bool {
        getuid() == 0 && installed(PrivateLXD.lxd, PrivateLXD.cli, PrivateLXD.dnsmasq, "/usr/bin/openssl", "/usr/bin/tar")
            && PrivateAPIDaemon.rootfsReadable
    }

    static func allTables(_ flags: Flags, log: OnceLog = .shared) throws -> Database {
        try systemTablesDatabase(
            LXDTables.certificates(flags: flags, log: log), LXDTables.cluster(flags: flags, log: log),
            LXDTables.clusterMembers(flags: flags, log: log), LXDTables.images(flags: flags, log: log),
            LXDTables.instanceConfig(flags: flags, log: log), LXDTables.instanceDevices(flags: flags, log: log),
            LXDTables.instances(flags: flags, log: log), LXDTables.networks(flags: flags, log: log),
            LXDTables.storagePools(flags: flags, log: log), flags: flags)
    }

    static func flag(_ value: JSONValue?) -> String {
        if case .bool(let b)? = value { return b ? "1" : "0" }
        return "?"
    }

    /// Every lxd_* table on a private daemon with a `dir` pool, a bridge, an image imported
    /// from a tarball of this machine's files, a running and a stopped ephemeral container, a
    /// trusted certificate and (last) clustering enabled, compared with what lxc says.
    @Test(.enabled(if: daemonAvailable, "needs root and Debian's lxd, lxd-client and dnsmasq-base"))
    func tablesMatchTheLXCCommand() async throws {
        try await onOwnThread {
            let lxd = try PrivateLXD()
            defer { lxd.stop() }
            let p = lxd.dir.path
            // A bridge name of our own (IFNAMSIZ), no addresses: no dnsmasq, no firewall rules.
            let bridge = "osqbr\(getpid() % 100_000)"
            try lxd.lxc(["storage", "create", "pool1", "dir"])
            lxd.networks.append(bridge)
            try lxd.lxc(["network", "create", bridge, "ipv4.address=none", "ipv6.address=none"])
            lxd.dir.mkdir("img")
            try lxd.copyRootfs(to: p + "/img/rootfs")
            lxd.dir.write("img/metadata.yaml", """
                architecture: x86_64
                creation_date: 1700000000
                properties:
                  architecture: x86_64
                  description: osquery test image
                  os: osqos
                  release: "1.0"

                """)
            _ = try lxd.run("/usr/bin/tar", ["-C", p + "/img", "-czf", p + "/img.tar.gz", "metadata.yaml", "rootfs"])
            try lxd.lxc(["image", "import", p + "/img.tar.gz", "--alias", "osqtest"])
            try lxd.lxc(["init", "osqtest", "c1", "-s", "pool1", "-n", bridge, "-c", "raw.lxc=lxc.init.cmd=/bin/sleep 1000", "-c", "user.team=osq"])
            lxd.dir.mkdir("share")
            try lxd.lxc(["config", "device", "add", "c1", "data", "disk", "source=" + p + "/share", "path=/data", "readonly=true"])
            try lxd.lxc(["start", "c1"])
            try lxd.lxc(["init", "osqtest", "c2", "-s", "pool1", "--ephemeral"])
            _ = try lxd.run("/usr/bin/openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                                                 "-keyout", p + "/client.key", "-out", p + "/client.crt", "-days", "30", "-subj", "/CN=osquery-test"])
            try lxd.lxc(["config", "trust", "add", p + "/client.crt", "--name", "osqcert"])

            let flags = Flags()
            try flags.set("lxd_socket", lxd.socket)
            let log = OnceLog()
            let db = try Self.allTables(flags, log: log)
            func rows(_ sql: String, _ columns: [String]) throws -> Set<String> { try rowSet(db, sql, columns) }

            // lxd_instances: `lxc list`; the image's properties as its metadata.yaml says.
            let list = try lxd.json(["list", "--format", "json"]).array ?? []
            #expect(list.count == 2)
            let instanceColumns = ["name", "status", "stateful", "ephemeral", "created_at", "base_image", "pid", "processes", "os", "description",
                                   "architecture"]
            let expectedInstances = Set(list.map { i -> String in
                [i["name"]?.text ?? "?", i["status"]?.text ?? "?", Self.flag(i["stateful"]), Self.flag(i["ephemeral"]), i["created_at"]?.text ?? "?",
                 i["config"]?["volatile.base_image"]?.text ?? "?", i["state"]?["pid"]?.text ?? "?", i["state"]?["processes"]?.text ?? "?",
                 "osqos", "osquery test image", "x86_64"].joined(separator: "\t")
            })
            #expect(try rows("SELECT * FROM lxd_instances", instanceColumns) == expectedInstances)
            #expect(try rows("SELECT name, status, ephemeral, processes FROM lxd_instances", ["name", "status", "ephemeral", "processes"])
                == ["c1\tRunning\t0\t1", "c2\tStopped\t1\t0"])
            #expect(try rows("SELECT name FROM lxd_instances WHERE name = 'c1'", ["name"]) == ["c1"])
            #expect(try db.execute("SELECT * FROM lxd_instances WHERE name = 'nope'").rowCount == 0)
            #expect(try db.execute("SELECT * FROM lxd_instances WHERE name = '../cluster'").rowCount == 0)
            #expect(log.messages.contains("Not an LXD instance name, ignoring: \"../cluster\""))

            // lxd_instance_config and lxd_instance_devices: the config and expanded devices `lxc list` shows.
            for name in ["c1", "c2"] {
                let instance = list.first { $0["name"]?.text == name }
                let config = Set((instance?["config"]?.members ?? []).map { "\(name)\t\($0.0)\t\($0.1.text ?? "")" })
                #expect(try rows("SELECT * FROM lxd_instance_config WHERE name = '\(name)'", ["name", "key", "value"]) == config)
                var devices = Set<String>()
                for (device, settings) in instance?["expanded_devices"]?.members ?? [] {
                    for (key, value) in settings.members ?? [] where key != "type" {
                        devices.insert([name, device, settings["type"]?.text ?? "", key, value.text ?? ""].joined(separator: "\t"))
                    }
                }
                #expect(try rows("SELECT * FROM lxd_instance_devices WHERE name = '\(name)'", ["name", "device", "device_type", "key", "value"])
                    == devices)
            }
            #expect(try rows("SELECT value FROM lxd_instance_config WHERE name = 'c1' AND key = 'user.team'", ["value"]) == ["osq"])
            #expect(try rows("SELECT device_type, value FROM lxd_instance_devices WHERE name = 'c1' AND device = 'data' AND key = 'path'",
                             ["device_type", "value"]) == ["disk\t/data"])
            #expect(throws: (any Error).self) { try db.execute("SELECT * FROM lxd_instance_config") }

            // lxd_images: `lxc image list`; a fingerprint prefix is reported as asked.
            let images = try lxd.json(["image", "list", "--format", "json"]).array ?? []
            let imageColumns = ["id", "architecture", "os", "release", "description", "aliases", "filename", "size", "auto_update", "cached",
                                "public", "created_at", "expires_at", "uploaded_at", "last_used_at"]
            #expect(try rows("SELECT * FROM lxd_images", imageColumns) == Set(images.map { i -> String in
                [i["fingerprint"]?.text ?? "?", i["architecture"]?.text ?? "?", i["properties"]?["os"]?.text ?? "?",
                 i["properties"]?["release"]?.text ?? "?", i["properties"]?["description"]?.text ?? "?",
                 (i["aliases"]?.array ?? []).map { $0["name"]?.text ?? "?" }.joined(separator: ","), i["filename"]?.text ?? "?",
                 i["size"]?.text ?? "?", Self.flag(i["auto_update"]), Self.flag(i["cached"]), Self.flag(i["public"]), i["created_at"]?.text ?? "?",
                 i["expires_at"]?.text ?? "?", i["uploaded_at"]?.text ?? "?", i["last_used_at"]?.text ?? "?"].joined(separator: "\t")
            }))
            let fingerprint = images.first?["fingerprint"]?.text ?? "?"
            #expect(try rows("SELECT id, aliases, os FROM lxd_images WHERE id = '\(fingerprint.prefix(12))'", ["id", "aliases", "os"])
                == ["\(fingerprint.prefix(12))\tosqtest\tosqos"])
            #expect(try rows("SELECT base_image FROM lxd_instances WHERE name = 'c1'", ["base_image"]) == [fingerprint])

            // lxd_networks: `lxc network list` (users as instance names) and the bridge's state.
            let networks = try lxd.json(["network", "list", "--format", "json"]).array ?? []
            func users(_ n: JSONValue) -> String {
                (n["used_by"]?.array ?? []).map { u -> String in
                    let s = u.text ?? ""
                    return s.hasPrefix("/1.0/instances/") ? String(s.dropFirst(15)) : s
                }.joined(separator: ",")
            }
            // Managed networks and lo only: other tests add and remove host interfaces meanwhile.
            #expect(try rows("SELECT * FROM lxd_networks WHERE managed = 1 OR name = 'lo'", ["name", "type", "managed", "ipv4_address", "ipv6_address", "used_by"])
                == Set(networks.filter { $0["managed"] == .bool(true) || $0["name"]?.text == "lo" }.map { n in
                    [n["name"]?.text ?? "?", n["type"]?.text ?? "?", Self.flag(n["managed"]), n["config"]?["ipv4.address"]?.text ?? "",
                     n["config"]?["ipv6.address"]?.text ?? "", users(n)].joined(separator: "\t")
                }))
            let state = try lxd.json(["query", "/1.0/networks/\(bridge)/state"])
            #expect(try rows("SELECT used_by, hwaddr, state, mtu, typeof(bytes_sent) AS t FROM lxd_networks WHERE name = '\(bridge)'",
                             ["used_by", "hwaddr", "state", "mtu", "t"])
                == ["c1\t\(state["hwaddr"]?.text ?? "?")\t\(state["state"]?.text ?? "?")\t\(state["mtu"]?.text ?? "?")\tinteger"])

            // lxd_storage_pools: `lxc storage list` and `lxc storage info`'s totals.
            let pools = try lxd.json(["storage", "list", "--format", "json"]).array ?? []
            #expect(try rows("SELECT * FROM lxd_storage_pools", ["name", "driver", "source", "size"]) == Set(pools.map { s in
                [s["name"]?.text ?? "?", s["driver"]?.text ?? "?", s["config"]?["source"]?.text ?? "", s["config"]?["size"]?.text ?? ""]
                    .joined(separator: "\t")
            }))
            #expect(try rows("SELECT source FROM lxd_storage_pools WHERE name = 'pool1'", ["source"]) == [p + "/storage-pools/pool1"])
            let resources = try lxd.json(["query", "/1.0/storage-pools/pool1/resources"])
            #expect(try rows("SELECT space_total, inodes_total, space_used > 0 AS used FROM lxd_storage_pools WHERE name = 'pool1'",
                             ["space_total", "inodes_total", "used"])
                == ["\(resources["space"]?["total"]?.text ?? "?")\t\(resources["inodes"]?["total"]?.text ?? "?")\t1"])

            // lxd_certificates: `lxc config trust list`.
            let certificates = try lxd.json(["config", "trust", "list", "--format", "json"]).array ?? []
            #expect(certificates.count == 1)
            #expect(try rows("SELECT * FROM lxd_certificates", ["name", "type", "fingerprint", "certificate"]) == Set(certificates.map { c in
                [c["name"]?.text ?? "?", c["type"]?.text ?? "?", c["fingerprint"]?.text ?? "?", c["certificate"]?.text ?? "?"].joined(separator: "\t")
            }))
            #expect(try rows("SELECT name FROM lxd_certificates", ["name"]) == ["osqcert"])

            // lxd_cluster(_members): not clustered, then clustered on a loopback port of our own.
            #expect(try rows("SELECT server_name, enabled FROM lxd_cluster", ["server_name", "enabled"]) == ["\t0"])
            #expect(try db.execute("SELECT * FROM lxd_cluster_members").rowCount == 0)
            #expect(log.messages.contains { $0.hasPrefix("Error getting LXD cluster members: Invalid LXD API response for /1.0/cluster/members: HTTP status") })
            let reserved = loopbackSocket(listening: false)
            close(reserved.fd)
            try lxd.lxc(["config", "set", "core.https_address", "127.0.0.1:\(reserved.port)"])
            try lxd.lxc(["cluster", "enable", "node1"])
            let members = try lxd.json(["cluster", "list", "--format", "json"]).array ?? []
            #expect(try rows("SELECT * FROM lxd_cluster_members", ["server_name", "url", "database", "status", "message"]) == Set(members.map { m in
                [m["server_name"]?.text ?? "?", m["url"]?.text ?? "?", Self.flag(m["database"]), m["status"]?.text ?? "?", m["message"]?.text ?? "?"]
                    .joined(separator: "\t")
            }))
            #expect(try rows("SELECT server_name, url FROM lxd_cluster_members", ["server_name", "url"]) == ["node1\thttps://127.0.0.1:\(reserved.port)"])
            let cluster = try lxd.json(["query", "/1.0/cluster"])
            let last = cluster["member_config"]?.array?.last
            #expect(try rows("SELECT * FROM lxd_cluster", ["server_name", "enabled", "member_config_entity", "member_config_name",
                                                           "member_config_key", "member_config_value", "member_config_description"])
                == [["node1", "1", last?["entity"]?.text ?? "", last?["name"]?.text ?? "", last?["key"]?.text ?? "", last?["value"]?.text ?? "",
                     last?["description"]?.text ?? ""].joined(separator: "\t")])
        }
    }

    /// A stand-in LXD serving documented answers and hostile ones: a socket that is missing or
    /// never answers, an endless body, an instance that hangs after the list (one timeout, the
    /// rest not asked), more images than --lxd_max_objects, a listed path that cannot be sent,
    /// a document that is not an object, an error status, 202 Accepted, a list that is not one,
    /// a name that would climb the API's paths. No rows or fewer, reasons logged, and the
    /// tables keep answering.
    @Test(.enabled(if: StandInAPI.available)) func standInAndHostileServers() async throws {
        try await onOwnThread {
            let api = try StandInAPI("lxd", socketFlag: "lxd_socket", tables: { try Self.allTables($0, log: $1) })
            defer { api.stop() }
            #expect(api.firstLine == "ready")
            let (flags, log, db) = (api.flags, api.log, api.db)
            try api.expectNoRows("SELECT * FROM lxd_instances", at: ["missing", "hang.sock", "endless.sock"], saying: [
                "Error getting LXD instances: Error connecting to LXD sock: \(api.dir.path)/missing: No such file or directory",
                "Error getting LXD instances: Error calling LXD API: timed out",
                "Error getting LXD instances: Error calling LXD API: response larger than 65536 bytes",
            ])

            try api.use("lxd.sock")
            // h0 (its state answered 202), then `slow` times out and h2 is not asked.
            #expect(try rowSet(db, "SELECT * FROM lxd_instances", ["name", "status", "base_image", "pid", "processes", "os", "architecture"])
                == ["h0\tRunning\t\(String(repeating: "ab", count: 32))\t4242\t7\tDebian\tamd64"])
            #expect(log.messages.contains("Error getting LXD instance /1.0/containers/slow: Error calling LXD API: timed out"))
            // A name is sent only when it is one; the list walk stops at --lxd_max_objects.
            for name in ["../cluster", "a/b", ""] {
                #expect(try db.execute("SELECT * FROM lxd_instance_config WHERE name = '\(name)'").rowCount == 0)
            }
            #expect(try db.execute("SELECT * FROM lxd_instance_devices WHERE name = 'nope'").rowCount == 0)
            try flags.set("lxd_max_objects", "2")
            #expect(try rowSet(db, "SELECT id, aliases, public, os FROM lxd_images", ["id", "aliases", "public", "os"])
                == [String(format: "%064x\ta,b\t1\t", 0), String(format: "%064x\ta,b\t1\t", 1)])
            #expect(log.messages.contains("Walking the first 2 of 5 LXD images (--lxd_max_objects)"))
            try flags.set("lxd_max_objects", "10000")
            // A listed path with a space, a document that is not an object, a state answered 404.
            #expect(try rowSet(db, "SELECT * FROM lxd_networks", ["name", "managed", "ipv4_address", "ipv6_address", "used_by", "mtu"])
                == ["n1\t1\t10.0.0.1/24\t\th0,h2,/1.0/profiles/default\t"])
            #expect(log.messages.contains("Error getting LXD network /1.0/networks/bad name: Invalid request target: \"/1.0/networks/bad name\""))
            #expect(log.messages.contains("Error parsing details for LXD network /1.0/networks/list: not an object"))
            #expect(log.messages.contains(
                "Error getting LXD network state /1.0/networks/n1: Invalid LXD API response for /1.0/networks/n1/state: HTTP status 404 (Network not found)"))
            #expect(try db.execute("SELECT * FROM lxd_certificates").rowCount == 0)
            // osquery's one cluster row: the last member_config entry.
            #expect(try rowSet(db, "SELECT * FROM lxd_cluster", ["server_name", "enabled", "member_config_entity", "member_config_value"])
                == ["s\t1\te2\tv2"])
            let requests = api.requests("lxd")
            #expect(requests.allSatisfy { !$0.contains("..") && !$0.contains("a/b") && $0 != "/1.0/containers/" && !$0.hasPrefix("/1.0/containers/h2") })
            #expect(requests.filter { $0.hasPrefix("/1.0/images/") }.count == 2)
            #expect(requests.contains("/1.0/containers/nope"))

            // Still serving: the same tables answer a good server after all of it.
            #expect(try db.execute("SELECT * FROM lxd_images").rowCount == 5)
        }
    }
}
