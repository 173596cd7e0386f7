import Foundation
import OsqueryEngine
@testable import OsqueryTables
import ProtocolFixture
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A private Docker engine (Debian's docker.io) for one test: its own data and exec roots and
/// socket in a scratch directory, no iptables and no default bridge. `stop()` removes its
/// containers and networks and ends dockerd, then containerd if it outlived it.
final class PrivateDockerEngine: PrivateAPIDaemon, @unchecked Sendable {
    static let dockerd = "/usr/sbin/dockerd", cli = "/usr/bin/docker"
    private var containerd: Int32?

    init() throws {
        let dir = TempDir()
        let p = dir.path
        try super.init(dir: dir, executable: Self.dockerd,
                       arguments: ["--data-root", p + "/root", "--exec-root", p + "/exec", "--pidfile", p + "/pid", "-H", "unix://" + p + "/d.sock",
                                   "--storage-driver", "vfs", "--iptables=false", "--ip6tables=false", "--bridge=none"],
                       socket: p + "/d.sock", ping: "/_ping",
                       childEnvironment: ["DOCKER_HOST": "unix://" + p + "/d.sock", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": p])
    }

    /// The docker CLI against this engine; throws (with its stderr) when it fails.
    @discardableResult
    func docker(_ arguments: [String]) throws -> String {
        try run(Self.cli, arguments)
    }

    /// A shell command line with DOCKER_HOST set to this engine.
    @discardableResult
    func shell(_ command: String) throws -> String {
        try run("/bin/sh", ["-c", command])
    }

    /// Containers removed (their shims and proxies end with them).
    override func willStop() {
        if process.isRunning, let ids = try? docker(["ps", "-aq"]), !ids.isEmpty {
            _ = try? docker(["rm", "-f"] + ids.split(separator: "\n").map(String.init))
        }
        // A user-defined network's bridge lives in the host's namespace and outlives dockerd.
        if process.isRunning { _ = try? docker(["network", "prune", "-f"]) }
        containerd = Int32(readText(dir.path + "/exec/containerd/containerd.pid").trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// containerd is dockerd's child: only signal it while it still runs as containerd.
    override func didStop() {
        if let containerd, containerd > 0, readText("/proc/\(containerd)/cmdline").contains(dir.path) {
            kill(containerd, SIGKILL)
            for _ in 0..<100 where FileIO.exists("/proc/\(containerd)") && !readText("/proc/\(containerd)/stat").contains(") Z") { usleep(50_000) }
        }
    }

    deinit { stop() }
}

@Suite(.serialized) struct DockerTablesTests {
    static var engineAvailable: Bool {
        getuid() == 0 && installed(PrivateDockerEngine.dockerd, PrivateDockerEngine.cli) && PrivateAPIDaemon.rootfsReadable
    }

    static func allTables(_ flags: Flags, log: OnceLog = .shared) throws -> Database {
        try systemTablesDatabase(
            DockerTables.version(flags: flags, log: log), DockerTables.info(flags: flags, log: log), DockerTables.images(flags: flags, log: log),
            DockerTables.imageLabels(flags: flags, log: log), DockerTables.imageHistory(flags: flags, log: log),
            DockerTables.imageLayers(flags: flags, log: log), DockerTables.volumes(flags: flags, log: log),
            DockerTables.volumeLabels(flags: flags, log: log), DockerTables.networks(flags: flags, log: log),
            DockerTables.networkLabels(flags: flags, log: log), DockerTables.containers(flags: flags, log: log),
            DockerTables.containerLabels(flags: flags, log: log), DockerTables.containerEnvs(flags: flags, log: log),
            DockerTables.containerMounts(flags: flags, log: log), DockerTables.containerNetworks(flags: flags, log: log),
            DockerTables.containerPorts(flags: flags, log: log), DockerTables.containerProcesses(flags: flags, log: log),
            DockerTables.containerStats(flags: flags, log: log), DockerTables.containerFsChanges(flags: flags, log: log),
            flags: flags)
    }

    /// An ISO 8601 time as docker prints it (fractional seconds or not) in Unix seconds.
    static func seconds(_ iso: String) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        // Foundation reads at most milliseconds: the fraction is cut to three digits.
        var text = iso
        if let dot = iso.firstIndex(of: "."), let end = iso[dot...].firstIndex(where: { $0 == "Z" || $0 == "+" || $0 == "-" }) {
            text = String(iso[..<dot]) + String(iso[dot..<end].prefix(4)) + String(iso[end...])
        }
        guard let date = formatter.date(from: text) else { return "?" + iso }
        return String(Int64(date.timeIntervalSince1970.rounded(.down)))
    }

    static func json(_ text: String) throws -> JSONValue { try JSONValue.parse(text) }

    /// Every docker_* table on a private engine with an imported image, a labelled volume and
    /// network, a running container (env, volume, network, published port, a copied file) and a
    /// created one, each compared with what the docker CLI says about the same objects.
    @Test(.enabled(if: engineAvailable, "needs root and Debian's docker.io (dockerd, docker)"))
    func tablesMatchTheDockerCLI() async throws {
        try await onOwnThread {
            let engine = try PrivateDockerEngine()
            defer { engine.stop() }
            let p = engine.dir.path
            try engine.copyRootfs(to: p + "/rootfs")
            try engine.shell("tar -C '\(p)/rootfs' -c . | docker import -c 'LABEL team=osq' - osqtest:1")
            try engine.docker(["volume", "create", "--label", "a=b", "vol1"])
            try engine.docker(["network", "create", "--label", "n=1", "net1"])
            let reserved = loopbackSocket(listening: false)
            close(reserved.fd)
            let port = reserved.port
            let c1 = try engine.docker(["run", "-d", "--name", "c1", "--label", "x=y", "-e", "FOO=bar", "-v", "vol1:/data", "--network", "net1",
                                        "-p", "127.0.0.1:\(port):80", "osqtest:1", "/bin/sleep", "1000"])
            let c2 = try engine.docker(["create", "--name", "c2", "osqtest:1", "/bin/sleep", "5"])
            engine.dir.write("hello", "hi\n")
            try engine.docker(["cp", p + "/hello", "c1:/hello"])

            let flags = Flags()
            try flags.set("docker_socket", engine.socket)
            let db = try Self.allTables(flags)
            func rows(_ sql: String, _ columns: [String]) throws -> Set<String> { try rowSet(db, sql, columns) }

            // docker_version, docker_info: `docker version` / `docker info`.
            let server = try Self.json(try engine.docker(["version", "--format", "{{json .Server}}"]))
            #expect(try rows("SELECT * FROM docker_version", ["version", "api_version", "min_api_version", "git_commit", "go_version", "os", "arch",
                                                              "kernel_version", "build_time"])
                == [["Version", "ApiVersion", "MinAPIVersion", "GitCommit", "GoVersion", "Os", "Arch", "KernelVersion", "BuildTime"]
                    .map { server[$0]?.text ?? "?" }.joined(separator: "\t")])
            let info = try Self.json(try engine.docker(["info", "--format", "{{json .}}"]))
            let infoColumns = ["id": "ID", "containers": "Containers", "containers_running": "ContainersRunning",
                               "containers_paused": "ContainersPaused", "containers_stopped": "ContainersStopped", "images": "Images",
                               "storage_driver": "Driver", "logging_driver": "LoggingDriver", "cgroup_driver": "CgroupDriver",
                               "kernel_version": "KernelVersion", "os": "OperatingSystem", "os_type": "OSType", "architecture": "Architecture",
                               "cpus": "NCPU", "memory": "MemTotal", "name": "Name", "server_version": "ServerVersion", "root_dir": "DockerRootDir",
                               "memory_limit": "MemoryLimit", "ipv4_forwarding": "IPv4Forwarding", "oom_kill_disable": "OomKillDisable"]
            let infoKeys = infoColumns.keys.sorted()
            #expect(try rows("SELECT * FROM docker_info", infoKeys) == [infoKeys.map { key -> String in
                let v = info[infoColumns[key]!]
                if case .bool(let b)? = v { return b ? "1" : "0" }
                return v?.text ?? "?"
            }.joined(separator: "\t")])
            #expect(info["Containers"]?.text == "2" && info["ContainersRunning"]?.text == "1" && info["DockerRootDir"]?.text == p + "/root")

            // Images: `docker image ls`, `docker image inspect`, `docker history`.
            let image = try Self.json(try engine.docker(["image", "inspect", "osqtest:1"])).array?.first
            let imageID = String((image?["Id"]?.text ?? "").dropFirst(7))
            #expect(try engine.docker(["image", "ls", "-q", "--no-trunc"]) == "sha256:" + imageID)
            #expect(try rows("SELECT * FROM docker_images", ["id", "created", "size_bytes", "tags"])
                == ["\(imageID)\t\(Self.seconds(image?["Created"]?.text ?? ""))\t\(image?["Size"]?.text ?? "")\tosqtest:1"])
            #expect(try rows("SELECT * FROM docker_image_labels", ["id", "key", "value"]) == ["\(imageID)\tteam\tosq"])
            // The engine matches ids by prefix; osquery reports the prefix asked for.
            let short = String(imageID.prefix(12))
            #expect(try rows("SELECT * FROM docker_image_labels WHERE id = '\(short)'", ["id", "key"]) == ["\(short)\tteam"])
            let history = try engine.docker(["history", "--no-trunc", "--format", "{{.ID}}|{{.CreatedBy}}|{{.Comment}}", "osqtest:1"])
            #expect(try rows("SELECT * FROM docker_image_history", ["id", "created_by", "comment", "size", "tags"])
                == Set(history.split(separator: "\n").map { line in
                    let f = line.split(separator: "|", omittingEmptySubsequences: false)
                    return "\(imageID)\t\(f[1])\t\(f[2])\t\(image?["Size"]?.text ?? "")\tosqtest:1"
                }))
            let layers = (image?["RootFS"]?["Layers"]?.array ?? []).enumerated().map { "\(imageID)\t\($1.text!.dropFirst(7))\t\($0 + 1)" }
            #expect(!layers.isEmpty)
            #expect(try rows("SELECT * FROM docker_image_layers", ["id", "layer_id", "layer_order"]) == Set(layers))
            #expect(try rows("SELECT * FROM docker_image_layers WHERE id = '\(imageID)'", ["id", "layer_id", "layer_order"]) == Set(layers))

            // Volumes and networks: `docker volume inspect`, `docker network ls/inspect`.
            let volume = try engine.docker(["volume", "inspect", "vol1", "--format", "{{.Name}}\t{{.Driver}}\t{{.Mountpoint}}"]) + "\t"
            #expect(try rows("SELECT * FROM docker_volumes", ["name", "driver", "mount_point", "type"]) == [volume])
            #expect(try rows("SELECT * FROM docker_volumes WHERE name = 'vol1'", ["name"]) == ["vol1"])
            #expect(try rows("SELECT * FROM docker_volume_labels", ["name", "key", "value"]) == ["vol1\ta\tb"])
            let networks = try engine.docker(["network", "ls", "--no-trunc", "--format", "{{.ID}}\t{{.Name}}\t{{.Driver}}"])
            #expect(try rows("SELECT * FROM docker_networks", ["id", "name", "driver"]) == Set(networks.split(separator: "\n").map(String.init)))
            let net1 = try Self.json(try engine.docker(["network", "inspect", "net1"])).array?.first
            let net1ID = net1?["Id"]?.text ?? ""
            let ipam = net1?["IPAM"]?["Config"]?.array?.first
            #expect(try rows("SELECT * FROM docker_networks WHERE id = '\(net1ID)'", ["id", "name", "created", "enable_ipv6", "subnet", "gateway"])
                == ["\(net1ID)\tnet1\t\(Self.seconds(net1?["Created"]?.text ?? ""))\t0\t\(ipam?["Subnet"]?.text ?? "?")\t\(ipam?["Gateway"]?.text ?? "?")"])
            #expect(try rows("SELECT * FROM docker_network_labels", ["id", "key", "value"]) == ["\(net1ID)\tn\t1"])

            // Containers: `docker ps` (running ones without an id, as osquery asks), `docker inspect`.
            #expect(try rows("SELECT id FROM docker_containers", ["id"]) == Set(try engine.docker(["ps", "-q", "--no-trunc"]).split(separator: "\n").map(String.init)))
            let inspect = try Self.json(try engine.docker(["inspect", "c1", "c2"])).array ?? []
            let expectedContainers = Set(inspect.map { c -> String in
                let state = c["State"]
                let running = state?["Status"]?.text == "running"
                return [c["Id"]?.text ?? "", c["Name"]?.text ?? "", c["Config"]?["Image"]?.text ?? "", String((c["Image"]?.text ?? "").dropFirst(7)),
                        ([c["Path"]?.text ?? ""] + (c["Args"]?.array ?? []).map { $0.text ?? "" }).joined(separator: " "), state?["Status"]?.text ?? "",
                        state?["Pid"]?.text ?? "", c["Path"]?.text ?? "", state?["StartedAt"]?.text ?? "",
                        running ? "" : state?["FinishedAt"]?.text ?? "", (c["Config"]?["Env"]?.array ?? []).map { $0.text ?? "" }.joined(separator: ", "),
                        "0", "0"].joined(separator: "\t")
            })
            #expect(try rows("SELECT * FROM docker_containers WHERE id IN ('\(c1)', '\(c2)')", [
                "id", "name", "image", "image_id", "command", "state", "pid", "path", "started_at", "finished_at", "env_variables", "privileged",
                "readonly_rootfs",
            ]) == expectedContainers)
            // The namespaces are those of the container's process, as /proc shows them.
            let pid = inspect.first { $0["Id"]?.text == c1 }?["State"]?["Pid"]?.text ?? ""
            func namespace(_ kind: String, of process: String = pid) -> String {
                var buffer = [CChar](repeating: 0, count: 256)
                let n = readlink("/proc/\(process)/ns/\(kind)", &buffer, 255)
                let link = n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
                return String(link.drop { $0 != "[" }.dropFirst().dropLast())
            }
            let kinds = ["cgroup", "ipc", "mnt", "net", "pid", "user", "uts"]
            #expect(try rows("SELECT * FROM docker_containers WHERE id = '\(c1)'", kinds.map { $0 + "_namespace" })
                == [kinds.map { namespace($0) }.joined(separator: "\t")])
            #expect(namespace("pid") != "" && namespace("pid") != namespace("pid", of: "self"))
            #expect(try rows("SELECT id, name FROM docker_containers WHERE id = '\(c1.prefix(12))'", ["id", "name"]) == ["\(c1.prefix(12))\t/c1"])

            let c1Inspect = inspect.first { $0["Id"]?.text == c1 }
            #expect(try rows("SELECT * FROM docker_container_labels WHERE id = '\(c1)'", ["id", "key", "value"])
                == Set((c1Inspect?["Config"]?["Labels"]?.members ?? []).map { "\(c1)\t\($0.0)\t\($0.1.text ?? "")" }))
            #expect(try rows("SELECT * FROM docker_container_labels WHERE id = '\(c2)'", ["key", "value"]) == ["team\tosq"])
            #expect(try rows("SELECT * FROM docker_container_envs WHERE id = '\(c1)'", ["id", "key", "value"])
                == Set((c1Inspect?["Config"]?["Env"]?.array ?? []).map { e -> String in
                    let text = e.text ?? ""
                    let eq = text.firstIndex(of: "=")!
                    return "\(c1)\t\(text[..<eq])\t\(text[text.index(after: eq)...])"
                }))
            #expect(try rows("SELECT * FROM docker_container_mounts", ["id", "type", "name", "source", "destination", "driver", "mode", "rw", "propagation"])
                == Set((c1Inspect?["Mounts"]?.array ?? []).map { m -> String in
                    ([c1] + ["Type", "Name", "Source", "Destination", "Driver", "Mode"].map { m[$0]?.text ?? "" }
                        + [m["RW"] == .bool(true) ? "1" : "0", m["Propagation"]?.text ?? ""]).joined(separator: "\t")
                }))
            #expect(try rows("SELECT * FROM docker_container_networks", ["id", "name", "network_id", "endpoint_id", "gateway", "ip_address",
                                                                        "ip_prefix_len", "mac_address"])
                == Set((c1Inspect?["NetworkSettings"]?["Networks"]?.members ?? []).map { name, n -> String in
                    ([c1, name] + ["NetworkID", "EndpointID", "Gateway", "IPAddress", "IPPrefixLen", "MacAddress"].map { n[$0]?.text ?? "" })
                        .joined(separator: "\t")
                }))
            // `docker port c1`: "80/tcp -> 127.0.0.1:PORT".
            let published = try engine.docker(["port", "c1"]).split(separator: "\n").map { line -> String in
                let parts = line.split(separator: " ")
                let (inner, outer) = (parts[0].split(separator: "/"), parts[2].split(separator: ":"))
                return "\(c1)\t\(inner[1])\t\(inner[0])\t\(outer[0])\t\(outer[1])"
            }
            #expect(published == ["\(c1)\ttcp\t80\t127.0.0.1\t\(port)"])
            #expect(try rows("SELECT * FROM docker_container_ports", ["id", "type", "port", "host_ip", "host_port"]) == Set(published))

            // One container's processes, stats and changes: `docker top`, `docker stats`, `docker diff`.
            let top = try engine.docker(["top", "c1", "-o", "pid,uid,ppid,comm"]).split(separator: "\n").dropFirst().map {
                $0.split(separator: " ").joined(separator: "\t")
            }
            #expect(top.count == 1)
            #expect(try rows("SELECT * FROM docker_container_processes WHERE id = '\(c1)'", ["pid", "uid", "parent", "name"]) == Set(top))
            #expect(try rows("SELECT * FROM docker_container_processes WHERE id = '\(c1)' AND pid = \(pid)", ["id", "name", "cmdline", "state"])
                == ["\(c1)\tsleep\t/bin/sleep 1000\tS"])
            let stats = try engine.docker(["stats", "--no-stream", "--no-trunc", "--format", "{{.ID}}\t/{{.Name}}\t{{.PIDs}}", "c1"])
            #expect(try rows("SELECT * FROM docker_container_stats WHERE id = '\(c1)'", ["id", "name", "pids"]) == [stats])
            #expect(try rows("SELECT * FROM docker_container_stats WHERE id = '\(c1)'", ["online_cpus", "memory_limit"])
                .allSatisfy { $0 != "0\t0" && !$0.hasPrefix("\t") })
            let diff = try engine.docker(["diff", "c1"]).split(separator: "\n").map { $0.split(separator: " ", maxSplits: 1).joined(separator: "\t") }
            #expect(Set(diff).isSuperset(of: ["A\t/data", "A\t/hello"]))
            #expect(try rows("SELECT * FROM docker_container_fs_changes WHERE id = '\(c1)'", ["change_type", "path"]) == Set(diff))

            // id is required where osquery requires it.
            for table in ["docker_container_processes", "docker_container_stats", "docker_container_fs_changes"] {
                #expect(throws: (any Error).self) { try db.execute("SELECT * FROM \(table)") }
            }
            engine.stop()
        }
    }

    /// --docker_socket at a regular file, a missing path, a too long path, and engines that hang,
    /// answer garbage, never end their body or send broken JSON: no rows, the reason logged,
    /// each request ended by the timeout or the byte limit. An engine that lists containers and
    /// then hangs costs one timeout, not one per container. The tables keep answering.
    @Test(.enabled(if: StandInAPI.available)) func hostileEnginesGiveNoRows() async throws {
        try await onOwnThread {
            let api = try StandInAPI("docker", socketFlag: "docker_socket", tables: { try Self.allTables($0, log: $1) })
            defer { api.stop() }
            #expect(api.firstLine == "ready")
            let (flags, log, db, dir) = (api.flags, api.log, api.db, api.dir)
            dir.write("plain", "not a socket\n")
            try api.expectNoRows("SELECT * FROM docker_version", at: [
                "plain", "missing", String(repeating: "x", count: 120), "hang.sock", "garbage.sock", "endless.sock", "badjson.sock",
            ], saying: [
                "Error getting docker version: Error connecting to docker sock: \(dir.path)/plain: Connection refused",
                "Error getting docker version: Error connecting to docker sock: \(dir.path)/missing: No such file or directory",
                "Error getting docker version: Error calling docker API: timed out",
                "Error getting docker version: Error calling docker API: malformed status line",
                "Error getting docker version: Error calling docker API: response larger than 65536 bytes",
            ])
            let said = log.messages
            #expect(said.contains { $0.hasPrefix("Error getting docker version: Error reading docker API response for /version:") })
            #expect(said.contains { $0.hasPrefix("Error getting docker version: Error connecting to docker sock: Invalid socket path") })

            // Three containers listed, the first inspect times out, the others are not asked.
            try api.use("listhang.sock")
            #expect(try rowSet(db, "SELECT id, name, pid FROM docker_containers", ["name", "pid"]) == ["/h0\t", "/h1\t", "/h2\t"])
            #expect(log.messages.filter { $0.contains("timed out") }.count == 2)

            // A scan walks at most --docker_max_objects containers; osquery's filter strings.
            try api.use("many.sock")
            try flags.set("docker_max_objects", "2")
            #expect(try rowSet(db, "SELECT name FROM docker_containers", ["name"]) == ["/m0", "/m1"])
            #expect(log.messages.contains("Walking the first 2 of 5 docker containers (--docker_max_objects)"))
            #expect(try db.execute("SELECT key, value FROM docker_container_envs").rows == [["A", "1"], ["BARE", "BARE"], ["A", "1"], ["BARE", "BARE"]])
            #expect(try db.execute("SELECT * FROM docker_container_labels WHERE id = 'abc' OR id = 'xyz!'").rowCount == 0)
            let requests = api.requests("many")
            #expect(requests.filter { $0.hasPrefix("/containers/json") } == [
                "/containers/json", "/containers/json", "/containers/json?all=1&filters=%7B%22id%22%3A%7B%22abc%22%3Atrue%7D%7D",
                "/containers/json?all=1&filters=%7B%22id%22%3A%7B%7D%7D",
            ])
            #expect(requests.filter { !$0.hasPrefix("/containers/json") } == [
                "/containers/\(String(repeating: "0", count: 62))10/json?stream=false", "/containers/\(String(repeating: "0", count: 62))11/json?stream=false",
                "/containers/\(String(repeating: "0", count: 62))10/json?stream=false", "/containers/\(String(repeating: "0", count: 62))11/json?stream=false",
            ])

            try api.use("good.sock")
            #expect(try rowSet(db, "SELECT version, api_version FROM docker_version", ["version", "api_version"]) == ["99.0\t1.99"])
        }
    }
}
