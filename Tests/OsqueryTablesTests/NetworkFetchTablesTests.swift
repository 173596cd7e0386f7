import Foundation
import OsqueryEngine
@testable import OsqueryTables
import ProtocolFixture
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Runs blocking work (a query that waits on a socket) on a thread of its own.
func offThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
        let thread = Thread {
            do { continuation.resume(returning: try body()) } catch { continuation.resume(throwing: error) }
        }
        thread.start()
    }
}

/// A local HTTP and HTTPS server in Python (`http.server`, `ssl`) with the answers the tests
/// need, among them ones that never come and ones that never end. Killed on deinit.
final class TestWebServer: @unchecked Sendable {
    static let script = #"""
import http.server, json, socketserver, ssl, sys, threading, time

METRICS = b"# HELP requests_total Requests.\n# TYPE requests_total counter\nrequests_total{code=\"200\"} 1027\nrequests_total{code=\"400\"} 3\n\ntemperature 21.5\nup 1 1700000000000\nbroken\n"

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def send(self, code, body, headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_PUT(self):
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        if self.path == "/latest/api/token" and self.headers.get("x-aws-ec2-metadata-token-ttl-seconds"):
            self.send(200, b"TOKEN123")
        else:
            self.send(404, b"")
    def do_GET(self):
        p = self.path
        token_ok = self.headers.get("x-aws-ec2-metadata-token") == "TOKEN123"
        if p == "/hello":
            self.send(200, b"hello world")
        elif p == "/agent":
            self.send(200, self.headers.get("User-Agent", "").encode())
        elif p == "/redirect":
            self.send(302, b"", [("Location", "/hello")])
        elif p == "/missing":
            self.send(404, b"not here")
        elif p == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in [b"first ", b"second ", b"third"]:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif p == "/metrics":
            self.send(200, METRICS)
        elif p == "/endless":
            self.send_response(200)
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"x" * 65536)
            except Exception:
                pass
        elif p == "/endless-headers":
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            try:
                while True:
                    self.wfile.write(b"X-Padding: " + b"y" * 1000 + b"\r\n")
            except Exception:
                pass
        elif p == "/bad-chunk":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"ffffffffffffffffffff\r\nxx")
        elif p == "/claims-huge":
            self.send_response(200)
            self.send_header("Content-Length", str(1 << 40))
            self.end_headers()
        elif p == "/silent":
            time.sleep(3600)
        elif p.startswith("/latest/") and token_ok:
            docs = {
                "/latest/dynamic/instance-identity/document": json.dumps({"instanceId": "i-0abc", "instanceType": "t3.micro",
                    "privateIp": "10.0.0.5", "availabilityZone": "eu-west-1a", "region": "eu-west-1", "accountId": "123456789012",
                    "architecture": "x86_64", "imageId": "ami-0123"}),
                "/latest/meta-data/iam/info": json.dumps({"InstanceProfileArn": "arn:aws:iam::123456789012:instance-profile/test"}),
                "/latest/meta-data/mac": "0a:1b:2c:3d:4e:5f",
                "/latest/meta-data/local-hostname": "ip-10-0-0-5.eu-west-1.compute.internal",
                "/latest/meta-data/public-keys/0/openssh-key": "ssh-ed25519 AAAA test\n",
                "/latest/meta-data/reservation-id": "r-0def",
                "/latest/meta-data/security-groups": "default\nweb",
                "/latest/meta-data/tags/instance": "Name\nteam",
                "/latest/meta-data/tags/instance/Name": "web-1",
                "/latest/meta-data/tags/instance/team": "infra",
            }
            if p in docs:
                self.send(200, docs[p].encode())
            else:
                self.send(404, b"")
        elif p.startswith("/metadata/instance/compute") and self.headers.get("Metadata") == "true":
            self.send(200, json.dumps({"location": "westeurope", "name": "vm1", "offer": "debian-12", "publisher": "Debian",
                "sku": "12", "version": "0.1", "osType": "Linux", "platformUpdateDomain": "0", "platformFaultDomain": "1",
                "vmId": "0f1e2d3c", "vmSize": "Standard_B1s", "subscriptionId": "sub-1", "resourceGroupName": "rg",
                "placementGroupId": "", "vmScaleSetName": "", "zone": "2", "tags": "env:prod;owner:a:b"}).encode())
        elif p == "/computeMetadata/v1/instance/?alt=json&recursive=true" and self.headers.get("Metadata-Flavor") == "Google":
            self.send(200, json.dumps({"id": "fhm123", "name": "inst", "description": "d", "hostname": "inst.ru-central1.internal",
                "zone": "projects/b1g/zones/ru-central1-a", "vendor": {"folderId": "b1gfolder", "cloudId": "b1gcloud"},
                "attributes": {"ssh-keys": "user:ssh-ed25519 AAAA", "serial-port-enable": "1"}}).encode())
        else:
            self.send(404, b"")

class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

plain = Server(("127.0.0.1", 0), Handler)
secure = Server(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
secure.socket = context.wrap_socket(secure.socket, server_side=True)
for s in (plain, secure):
    threading.Thread(target=s.serve_forever, daemon=True).start()
print(plain.server_address[1], secure.server_address[1], flush=True)
sys.stdin.read()
"""#

    let process = Process()
    let input = Pipe()
    let httpPort: Int
    let httpsPort: Int

    init(directory: TempDir) throws {
        directory.write("server.py", Self.script)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", directory.path + "/server.py", directory.path + "/leaf.pem", directory.path + "/leaf.key"]
        let output = Pipe()
        process.standardOutput = output
        process.standardInput = input
        process.standardError = FileHandle.nullDevice
        try process.run()
        // The ports line, read byte by byte up to its newline (the server keeps running).
        var line = [UInt8]()
        while line.count < 64, let byte = try output.fileHandleForReading.read(upToCount: 1)?.first, byte != 10 { line.append(byte) }
        let ports = String(decoding: line, as: UTF8.self).split(separator: " ").compactMap { Int($0) }
        guard ports.count == 2 else { throw CocoaError(.fileReadCorruptFile) }
        (httpPort, httpsPort) = (ports[0], ports[1])
    }

    deinit {
        // Closing its stdin ends the server; SIGKILL while it still runs.
        try? input.fileHandleForWriting.close()
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}

/// A socket bound to a free loopback port, listening or not.
func loopbackSocket(listening: Bool) -> (fd: Int32, port: Int) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    if listening { listen(fd, 16) }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
    return (fd, Int(UInt16(bigEndian: address.sin_port)))
}

/// A listening socket that accepts nothing and never answers (the kernel completes the
/// handshake into its backlog): a request to it can only end at its deadline.
final class SilentListener: Sendable {
    let fd: Int32
    let port: Int
    init() { (fd, port) = loopbackSocket(listening: true) }
    deinit { close(fd) }
}

/// A loopback port with nothing listening: bound, never listened on, so connecting is
/// refused and no other test can take it meanwhile.
final class ClosedPort: Sendable {
    let fd: Int32
    let port: Int
    init() { (fd, port) = loopbackSocket(listening: false) }
    deinit { close(fd) }
}

@Suite(.serialized) struct NetworkFetchTablesTests {
    static func flags(_ settings: [String: String] = [:]) throws -> Flags {
        let flags = Flags()
        for (k, v) in settings { try flags.set(k, v) }
        return flags
    }

    /// curl over HTTP and HTTPS (verified against the test's CA) compared with what the
    /// server sent; redirects followed, chunked bodies decoded, a 404 kept as a row.
    @Test(.enabled(if: installed("/usr/bin/openssl", "/usr/bin/env"))) func curlFetchesFromALocalServer() async throws {
        try await onOwnThread {
            let dir = TempDir()
            try await makeTestCertificates(dir)
            let server = try TestWebServer(directory: dir)
            let flags = try Self.flags(["tls_server_certs": dir.path + "/ca.pem"])
            let http = "http://127.0.0.1:\(server.httpPort)", https = "https://localhost:\(server.httpsPort)"
            let rows = try await offThread { () -> Set<String> in
                let db = try systemTablesDatabase(NetworkFetchTables.curl(flags: flags), flags: flags)
                var out = try rowSet(db, """
                    SELECT * FROM curl WHERE url IN ('\(http)/hello', '\(https)/hello', '\(http)/redirect', '\(http)/missing', '\(http)/chunked')
                    """, ["url", "method", "user_agent", "response_code", "bytes", "result"])
                out.formUnion(try rowSet(db, "SELECT * FROM curl WHERE url = '\(http)/agent' AND user_agent = 'probe/1'", ["url", "result"]))
                // A line break in the URL cannot add a header to the request: it is not sent.
                out.formUnion(try rowSet(db, "SELECT * FROM curl WHERE url = '\(http)/agent' || char(13, 10) || 'X-Injected: 1'", ["response_code", "bytes"]))
                return out
            }
            #expect(rows == [
                "\(http)/hello\tGET\tosquery\t200\t11\thello world", "\(https)/hello\tGET\tosquery\t200\t11\thello world",
                "\(http)/redirect\tGET\tosquery\t200\t11\thello world", "\(http)/missing\tGET\tosquery\t404\t8\tnot here",
                "\(http)/chunked\tGET\tosquery\t200\t18\tfirst second third", "\(http)/agent\tprobe/1", "\t",
            ])
        }
    }

    /// A server that never answers, one that never stops sending, one that claims a huge body,
    /// a certificate the client does not trust, a closed port: each request ends (at the
    /// deadline or the byte limit) with a row of NULLs, and the table keeps serving.
    @Test(.enabled(if: installed("/usr/bin/openssl", "/usr/bin/env"))) func curlBoundsHostileServers() async throws {
        try await onOwnThread {
            let dir = TempDir()
            try await makeTestCertificates(dir)
            let server = try TestWebServer(directory: dir)
            let silent = SilentListener(), closed = ClosedPort()
            let flags = try Self.flags(["table_http_timeout": "1", "table_http_max_bytes": "1048576", "tls_server_certs": dir.path + "/leaf.key"])
            let http = "http://127.0.0.1:\(server.httpPort)"
            let urls = ["\(http)/silent", "\(http)/endless", "\(http)/endless-headers", "\(http)/bad-chunk", "\(http)/claims-huge", "https://localhost:\(server.httpsPort)/hello",
                        "http://127.0.0.1:\(silent.port)/", "http://127.0.0.1:\(closed.port)/", "ftp://example.org/"]
            let (failed, after) = try await offThread { () -> (Set<String>, Set<String>) in
                let db = try systemTablesDatabase(NetworkFetchTables.curl(flags: flags), flags: flags)
                let list = urls.map { "'\($0)'" }.joined(separator: ", ")
                let failed = try rowSet(db, "SELECT url, response_code, bytes, result FROM curl WHERE url IN (\(list))", ["url", "response_code", "bytes", "result"])
                let after = try rowSet(db, "SELECT url, result FROM curl WHERE url = '\(http)/hello'", ["url", "result"])
                return (failed, after)
            }
            #expect(failed == Set(urls.map { $0 + "\t\t\t" }))
            #expect(after == ["\(http)/hello\thello world"])
        }
    }

    @Test func curlNeedsAURL() throws {
        let db = try systemTablesDatabase(NetworkFetchTables.curl(flags: Flags()))
        #expect(throws: (any Error).self) { try db.execute("SELECT * FROM curl") }
        #expect(try db.execute("SELECT * FROM curl WHERE url = 'http://x' AND user_agent = 'a' AND user_agent = 'b'").rowCount == 0)
    }

    /// The certificate the local HTTPS server presents, compared with `openssl x509` on the
    /// same file; extensions as OpenSSL prints them; the PEM only when asked.
    @Test(.enabled(if: installed("/usr/bin/openssl", "/usr/bin/env"))) func curlCertificateMatchesOpenssl() async throws {
        try await onOwnThread {
            let dir = TempDir()
            try await makeTestCertificates(dir)
            let server = try TestWebServer(directory: dir)
            let flags = Flags()
            let host = "localhost:\(server.httpsPort)"
            let columns = ["common_name", "organization", "organization_unit", "serial_number", "issuer_common_name", "issuer_organization",
                           "valid_from", "valid_to", "sha256_fingerprint", "sha1_fingerprint", "version", "signature_algorithm",
                           "subject_alternative_names", "key_usage", "extended_key_usage", "has_expired", "pem"]
            let (rows, dumped) = try await offThread { () -> (Set<String>, Set<String>) in
                let db = try systemTablesDatabase(NetworkFetchTables.curlCertificate(flags: flags), flags: flags)
                return (try rowSet(db, "SELECT * FROM curl_certificate WHERE hostname = '\(host)'", columns),
                        try rowSet(db, "SELECT pem FROM curl_certificate WHERE hostname = '\(host)' AND dump_certificate = 1", ["pem"]))
            }
            let leaf = dir.path + "/leaf.pem"
            let text = try await openssl(["x509", "-in", leaf, "-noout", "-serial", "-startdate", "-enddate", "-fingerprint", "-sha256"])
            var fields: [String: String] = [:]
            for line in text.split(separator: "\n") {
                guard let eq = line.firstIndex(of: "=") else { continue }
                fields[String(line[..<eq])] = String(line[line.index(after: eq)...])
            }
            let sha256 = (fields["sha256 Fingerprint"] ?? "").replacingOccurrences(of: ":", with: "").lowercased()
            let sha1 = try await openssl(["x509", "-in", leaf, "-noout", "-fingerprint", "-sha1"]).split(separator: "=").last.map {
                $0.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: ":", with: "").lowercased()
            } ?? ""
            #expect(rows == [[
                "localhost", "Osquery Test", "Tables", fields["serial"] ?? "", "Osquery Test CA", "Osquery Test", fields["notBefore"] ?? "",
                fields["notAfter"] ?? "", sha256, sha1, "3", "RSA-SHA256", "DNS:localhost, IP Address:127.0.0.1", "Digital Signature",
                "TLS Web Server Authentication", "0", "",
            ].joined(separator: "\t")])
            #expect(dumped == [readText(leaf)])
        }
    }

    /// A port that never answers the handshake, a closed port and an unresolvable name: no
    /// rows, and the query ends (at the timeout column's bound for the silent one).
    @Test func curlCertificateEndsOnSilentPeers() async throws {
        try await onOwnThread {
            let silent = SilentListener(), closed = ClosedPort()
            let flags = Flags()
            let count = try await offThread { () -> Int in
                let db = try systemTablesDatabase(NetworkFetchTables.curlCertificate(flags: flags), flags: flags)
                return try db.execute("""
                    SELECT * FROM curl_certificate WHERE hostname IN ('127.0.0.1:\(silent.port)', '127.0.0.1:\(closed.port)', 'no-such-host.invalid:443')
                    AND timeout = 1
                    """).rowCount
            }
            #expect(count == 0)
        }
    }

    /// prometheus_metrics from the config's targets: the exposition text's metric lines,
    /// comments and malformed lines skipped; a target that fails gives no rows.
    @Test(.enabled(if: installed("/usr/bin/openssl", "/usr/bin/env"))) func prometheusMetricsScrapeTargets() async throws {
        try await onOwnThread {
            let dir = TempDir()
            try await makeTestCertificates(dir)
            let server = try TestWebServer(directory: dir)
            let closed = ClosedPort()
            let registry = PluginRegistry()
            let url = "http://127.0.0.1:\(server.httpPort)/metrics"
            registry.setConfigSection("prometheus_targets", try JSONValue.parse(#"{"urls": ["\#(url)", "http://127.0.0.1:\#(closed.port)/metrics", "http://127.0.0.1:\#(server.httpPort)/endless"], "timeout": 2}"#))
            let flags = try Self.flags(["table_http_max_bytes": "1048576"])
            let rows = try await offThread { () -> Set<String> in
                let db = try systemTablesDatabase(NetworkFetchTables.prometheusMetrics(flags: flags, registry: registry), flags: flags)
                return try rowSet(db, "SELECT target_name, metric_name, metric_value, timestamp_ms > 1600000000000 AS recent FROM prometheus_metrics",
                                  ["target_name", "metric_name", "metric_value", "recent"])
            }
            #expect(rows == [
                "\(url)\trequests_total{code=\"200\"}\t1027.0\t1", "\(url)\trequests_total{code=\"400\"}\t3.0\t1",
                "\(url)\ttemperature\t21.5\t1", "\(url)\tup\t1.0\t1",
            ])
            // No prometheus_targets in the config: no rows.
            let db = try systemTablesDatabase(NetworkFetchTables.prometheusMetrics(flags: flags, registry: PluginRegistry()), flags: flags)
            #expect(try db.execute("SELECT * FROM prometheus_metrics").rowCount == 0)
            #expect(NetworkFetchTables.parseExposition(Array("# c\nname 1\n\nx\n".utf8)).map { $0.name + "=" + $0.value } == ["name=1"])
        }
    }

    /// The cloud tables against a loopback stand-in for the metadata address: EC2 (IMDSv2
    /// token), Azure (with its agent's log present) and Yandex Cloud give osquery's columns.
    @Test(.enabled(if: installed("/usr/bin/openssl", "/usr/bin/env"))) func cloudTablesReadAMetadataService() async throws {
        try await onOwnThread {
            let dir = TempDir()
            try await makeTestCertificates(dir)
            let server = try TestWebServer(directory: dir)
            dir.write("waagent.log", "")
            let address = "127.0.0.1:\(server.httpPort)"
            let flags = try Self.flags(["cloud_metadata_address": address])
            let agent = dir.path + "/waagent.log"
            let result = try await offThread { () -> [String: Set<String>] in
                let registry = PluginRegistry()
                for t in [CloudTables.ec2InstanceMetadata(flags: flags, log: OnceLog()), CloudTables.ec2InstanceTags(flags: flags, log: OnceLog()),
                          CloudTables.azureInstanceMetadata(flags: flags, agentLog: agent, log: OnceLog()),
                          CloudTables.azureInstanceTags(flags: flags, agentLog: agent, log: OnceLog()),
                          CloudTables.ycloudInstanceMetadata(flags: flags, log: OnceLog())] { registry.addTable(t) }
                let db = try Database(registry: registry, flags: flags)
                return [
                    "ec2": try rowSet(db, "SELECT * FROM ec2_instance_metadata", [
                        "instance_id", "instance_type", "architecture", "region", "availability_zone", "local_hostname", "local_ipv4", "mac",
                        "security_groups", "iam_arn", "ami_id", "reservation_id", "account_id", "ssh_public_key"]),
                    "ec2tags": try rowSet(db, "SELECT * FROM ec2_instance_tags", ["instance_id", "key", "value"]),
                    "azure": try rowSet(db, "SELECT * FROM azure_instance_metadata", ["vm_id", "location", "name", "os_type", "vm_size", "zone"]),
                    "azuretags": try rowSet(db, "SELECT * FROM azure_instance_tags", ["vm_id", "key", "value"]),
                    "ycloud": try rowSet(db, "SELECT * FROM ycloud_instance_metadata", [
                        "instance_id", "folder_id", "cloud_id", "name", "hostname", "zone", "ssh_public_key", "serial_port_enabled", "metadata_endpoint"]),
                ]
            }
            #expect(result["ec2"] == ["i-0abc\tt3.micro\tx86_64\teu-west-1\teu-west-1a\tip-10-0-0-5.eu-west-1.compute.internal\t10.0.0.5\t0a:1b:2c:3d:4e:5f\tdefaultweb\tarn:aws:iam::123456789012:instance-profile/test\tami-0123\tr-0def\t123456789012\tssh-ed25519 AAAA test"])
            #expect(result["ec2tags"] == ["i-0abc\tName\tweb-1", "i-0abc\tteam\tinfra"])
            #expect(result["azure"] == ["0f1e2d3c\twesteurope\tvm1\tLinux\tStandard_B1s\t2"])
            #expect(result["azuretags"] == ["0f1e2d3c\tenv\tprod", "0f1e2d3c\towner\ta:b"])
            #expect(result["ycloud"] == ["fhm123\tb1gfolder\tb1gcloud\tinst\tinst.ru-central1.internal\tru-central1-a\tuser:ssh-ed25519 AAAA\t1\thttp://\(address)"])
        }
    }

    /// Off a cloud: an address where nothing listens and one that never answers. Every cloud
    /// table answers no rows, says why once, and the queries end.
    @Test func cloudTablesOffACloudSayWhyOnce() async throws {
        try await onOwnThread {
            let closed = ClosedPort(), silent = SilentListener()
            let dir = TempDir()
            dir.write("waagent.log", "")
            // Refused at once (asked twice: said once), or never answered (asked once: ends at the timeout).
            for (address, rounds) in [("127.0.0.1:\(closed.port)", 2), ("127.0.0.1:\(silent.port)", 1)] {
                let flags = try Self.flags(["cloud_metadata_address": address, "cloud_metadata_timeout": "1"])
                let log = OnceLog()
                let agent = dir.path + "/waagent.log"
                let counts = try await offThread { () -> [Int] in
                    let registry = PluginRegistry()
                    for t in [CloudTables.ec2InstanceMetadata(flags: flags, log: log), CloudTables.ec2InstanceTags(flags: flags, log: log),
                              CloudTables.azureInstanceMetadata(flags: flags, agentLog: agent, log: log),
                              CloudTables.azureInstanceTags(flags: flags, agentLog: agent, log: log),
                              CloudTables.ycloudInstanceMetadata(flags: flags, log: log)] { registry.addTable(t) }
                    let db = try Database(registry: registry, flags: flags)
                    var counts: [Int] = []
                    for _ in 0..<rounds {
                        for t in ["ec2_instance_metadata", "ec2_instance_tags", "azure_instance_metadata", "azure_instance_tags", "ycloud_instance_metadata"] {
                            counts.append(try db.execute("SELECT * FROM \(t)").rowCount)
                        }
                    }
                    return counts
                }
                #expect(counts.allSatisfy { $0 == 0 }, "\(address)")
                #expect(log.messages.count == 5, "\(log.messages)")
            }
            // Not an Azure VM (no agent log): no request at all.
            let log = OnceLog()
            let db = try systemTablesDatabase(CloudTables.azureInstanceMetadata(flags: Flags(), agentLog: dir.path + "/none", log: log))
            #expect(try db.execute("SELECT * FROM azure_instance_metadata").rowCount == 0)
            #expect(log.messages.count == 1)
        }
    }
}
