import OsqueryEngine
internal import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// A small HTTP/1.1 client for the tables that fetch (curl, curl_certificate,
/// prometheus_metrics, the cloud metadata tables): one request per connection, every step
/// bounded by one deadline (connect, TLS handshake, each read and write) and the response by a
/// byte limit, so a server that never answers or never stops cannot hold a query.
enum HTTPFetch {
    struct Failure: Error, CustomStringConvertible {
        let description: String
        /// The endpoint could not be reached at all (no route, refused, connect timed out).
        var unreachable = false
        init(_ description: String, unreachable: Bool = false) {
            self.description = description
            self.unreachable = unreachable
        }
    }

    struct Response {
        var status: Int
        var headers: [(String, String)]
        var body: [UInt8]
        func header(_ name: String) -> String? {
            headers.first { $0.0.lowercased() == name.lowercased() }?.1
        }
    }

    struct URL {
        var tls: Bool
        var host: String
        var port: UInt16
        var target: String

        /// `http[s]://host[:port][/path?query]`; nil for anything else, and for any space or
        /// control character (a line break would end the request line and inject headers).
        init?(_ text: String) {
            guard text.utf8.allSatisfy({ $0 > 0x20 && $0 != 0x7f }) else { return nil }
            var rest = Substring(text)
            if rest.lowercased().hasPrefix("https://") {
                tls = true
                rest = rest.dropFirst(8)
            } else if rest.lowercased().hasPrefix("http://") {
                tls = false
                rest = rest.dropFirst(7)
            } else {
                return nil
            }
            let end = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
            var authority = rest[..<end]
            var path = String(rest[end...])
            if let hash = path.firstIndex(of: "#") { path = String(path[..<hash]) }
            target = path.isEmpty ? "/" : (path.hasPrefix("?") ? "/" + path : path)
            if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
            var portText: Substring?
            if authority.hasPrefix("[") {
                guard let close = authority.firstIndex(of: "]") else { return nil }
                host = String(authority[authority.index(after: authority.startIndex)..<close])
                let after = authority[authority.index(after: close)...]
                if after.hasPrefix(":") { portText = after.dropFirst() }
            } else if let colon = authority.lastIndex(of: ":") {
                host = String(authority[..<colon])
                portText = authority[authority.index(after: colon)...]
            } else {
                host = String(authority)
            }
            guard !host.isEmpty else { return nil }
            if let portText, !portText.isEmpty {
                guard let p = UInt16(portText) else { return nil }
                port = p
            } else {
                port = tls ? 443 : 80
            }
        }

        var hostHeader: String {
            let h = host.contains(":") ? "[" + host + "]" : host
            return port == (tls ? 443 : 80) ? h : h + ":" + String(port)
        }
    }

    static func monotonic() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// How peers' certificates are checked on a TLS connection.
    enum Verify {
        /// Not at all (curl_certificate reads whatever a server presents).
        case none
        /// Against a bundle file when it is readable, else the system's store; the name too.
        case peer(bundle: String)
    }

    /// A TCP connection (TLS on top when asked), non-blocking, every wait bounded by `deadline`.
    final class Connection {
        let fd: Int32
        let deadline: Double
        var ssl: OpaquePointer?
        var context: OpaquePointer?

        /// Resolves `host` (IPv4 preferred, as osquery), connects before the deadline.
        init(host: String, port: UInt16, deadline: Double) throws {
            self.deadline = deadline
            self.fd = try Self.connect(host: host, port: port, deadline: deadline)
        }

        /// A stream connection to the Unix domain socket at `path` (the Docker Engine API's).
        init(unixPath path: String, deadline: Double) throws {
            self.deadline = deadline
            self.fd = try Self.connect(unixPath: path)
        }

        /// A Unix socket connect does not wait (a full backlog fails at once), so it needs no deadline.
        static func connect(unixPath path: String) throws -> Int32 {
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            let capacity = MemoryLayout.size(ofValue: address.sun_path)
            guard !bytes.isEmpty, bytes.count < capacity, !bytes.contains(0) else {
                throw Failure("Invalid socket path: \(path)", unreachable: true)
            }
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                raw.copyBytes(from: bytes)
                raw[bytes.count] = 0
            }
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else { throw Failure("Unable to create socket", unreachable: true) }
            let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1)
            let result = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, length) } }
            if result != 0 {
                // A full backlog (EAGAIN) is a server that does not accept: as unreachable as a missing one.
                let reason = String(cString: strerror(errno))
                close(fd)
                throw Failure("\(path): \(reason)", unreachable: true)
            }
            return fd
        }

        static func connect(host: String, port: UInt16, deadline: Double) throws -> Int32 {
            var hints = addrinfo()
            hints.ai_family = AF_UNSPEC
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG
            var list: UnsafeMutablePointer<addrinfo>?
            guard getaddrinfo(host, String(port), &hints, &list) == 0, let list else {
                throw Failure("Unable to resolve hostname", unreachable: true)
            }
            defer { freeaddrinfo(list) }
            var chosen = list
            var cursor: UnsafeMutablePointer<addrinfo>? = list
            while let c = cursor {
                if c.pointee.ai_family == AF_INET { chosen = c; break }
                cursor = c.pointee.ai_next
            }
            let fd = socket(chosen.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else { throw Failure("Unable to create socket", unreachable: true) }
            if Glibc.connect(fd, chosen.pointee.ai_addr, chosen.pointee.ai_addrlen) != 0 {
                guard errno == EINPROGRESS else {
                    let reason = String(cString: strerror(errno))
                    close(fd)
                    throw Failure("Failed to establish TCP connection: \(reason)", unreachable: true)
                }
                do {
                    try wait(fd: fd, for: Int16(POLLOUT), deadline: deadline)
                } catch {
                    close(fd)
                    throw Failure("Failed to establish TCP connection: timed out", unreachable: true)
                }
                var error: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
                if error != 0 {
                    close(fd)
                    throw Failure("Failed to establish TCP connection: \(String(cString: strerror(error)))", unreachable: true)
                }
            }
            return fd
        }

        /// Waits until `fd` is ready for `events`, or throws at the deadline.
        static func wait(fd: Int32, for events: Int16, deadline: Double) throws {
            while true {
                let left = deadline - HTTPFetch.monotonic()
                guard left > 0 else { throw Failure("timed out") }
                var p = pollfd(fd: fd, events: events, revents: 0)
                let n = poll(&p, 1, Int32(min(left * 1000 + 1, 3_600_000)))
                if n > 0 { return }
                if n < 0 && errno != EINTR { throw Failure("poll failed: \(String(cString: strerror(errno)))") }
            }
        }

        deinit {
            if let ssl { SSL_free(ssl) }
            if let context { SSL_CTX_free(context) }
            close(fd)
        }

        func wait(for events: Int16) throws {
            try Self.wait(fd: fd, for: events, deadline: deadline)
        }

        /// Runs an OpenSSL call until it stops asking to wait.
        func sslCall(_ body: (OpaquePointer) -> Int32) throws -> Int32 {
            guard let ssl else { throw Failure("no TLS session") }
            while true {
                let r = body(ssl)
                if r > 0 { return r }
                switch SSL_get_error(ssl, r) {
                case SSL_ERROR_WANT_READ: try wait(for: Int16(POLLIN))
                case SSL_ERROR_WANT_WRITE: try wait(for: Int16(POLLOUT))
                case SSL_ERROR_ZERO_RETURN: return 0
                default:
                    var buffer = [CChar](repeating: 0, count: 256)
                    ERR_error_string_n(ERR_get_error(), &buffer, buffer.count)
                    ERR_clear_error()
                    throw Failure(cString(buffer))
                }
            }
        }

        /// The TLS handshake; with `.none` it completes whatever the peer's certificate.
        func startTLS(serverName: String, verify: Verify) throws {
            guard let ctx = SSL_CTX_new(TLS_client_method()) else { throw Failure("Failed to create OpenSSL CTX object") }
            context = ctx
            if case .peer = verify { osq_ssl_ctx_setup(ctx, 1) } else { osq_ssl_ctx_setup(ctx, 0) }
            switch verify {
            case .none:
                SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nil)
            case .peer(let bundle):
                SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
                if bundle.isEmpty || access(bundle, R_OK) != 0 || SSL_CTX_load_verify_locations(ctx, bundle, nil) != 1 {
                    ERR_clear_error()
                    SSL_CTX_set_default_verify_paths(ctx)
                }
            }
            guard let ssl = SSL_new(ctx) else { throw Failure("Failed to create OpenSSL object") }
            self.ssl = ssl
            SSL_set_fd(ssl, fd)
            // SNI is for names, not addresses.
            var probe = in6_addr()
            if inet_pton(AF_INET, serverName, &probe) != 1 && inet_pton(AF_INET6, serverName, &probe) != 1 {
                _ = osq_ssl_set_sni(ssl, serverName)
            }
            if case .peer = verify { SSL_set1_host(ssl, serverName) }
            _ = try sslCall { SSL_connect($0) }
        }

        func write(_ bytes: [UInt8]) throws {
            var sent = 0
            while sent < bytes.count {
                let n: Int
                if ssl != nil {
                    n = Int(try bytes.withUnsafeBytes { raw in
                        try sslCall { SSL_write($0, raw.baseAddress! + sent, Int32(clamping: raw.count - sent)) }
                    })
                    if n == 0 { throw Failure("connection closed while sending") }
                } else {
                    n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
                    if n < 0 {
                        if errno == EAGAIN || errno == EINTR { try wait(for: Int16(POLLOUT)); continue }
                        throw Failure("send failed: \(String(cString: strerror(errno)))")
                    }
                }
                sent += n
            }
        }

        /// Up to `count` bytes appended to `buffer`; 0 at the end of the stream.
        func read(into buffer: inout [UInt8], count: Int) throws -> Int {
            let start = buffer.count
            buffer.append(contentsOf: repeatElement(0, count: count))
            var n = 0
            if ssl != nil {
                let r = try buffer.withUnsafeMutableBytes { raw in
                    try sslCall { SSL_read($0, raw.baseAddress! + start, Int32(count)) }
                }
                n = Int(r)
            } else {
                while true {
                    let r = buffer.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress! + start, count, 0) }
                    if r < 0 {
                        if errno == EAGAIN || errno == EINTR { try wait(for: Int16(POLLIN)); continue }
                        buffer.removeSubrange(start...)
                        throw Failure("recv failed: \(String(cString: strerror(errno)))")
                    }
                    n = r
                    break
                }
            }
            buffer.removeSubrange((start + n)...)
            return n
        }

        /// The peer's certificate once the handshake is done.
        func peerCertificate() -> X509Certificate? {
            guard let ssl, let cert = SSL_get1_peer_certificate(ssl) else { return nil }
            defer { X509_free(cert) }
            return X509Certificate(retaining: cert)
        }
    }

    /// One request; redirects (3xx with a Location) are followed up to `redirects` times.
    static func request(
        _ urlText: String, method: String = "GET", headers: [(String, String)] = [], body: [UInt8] = [],
        timeout: Double, maxBytes: Int, verify: Verify = .peer(bundle: ""), redirects: Int = 5
    ) throws -> Response {
        let deadline = monotonic() + max(timeout, 0.001)
        var current = urlText
        var hops = 0
        while true {
            guard let url = URL(current) else { throw Failure("Invalid URL: \(current)") }
            let response = try once(url, method: method, headers: headers, body: body, deadline: deadline, maxBytes: maxBytes, verify: verify)
            if (301...308).contains(response.status), response.status != 304, let location = response.header("Location"), hops < redirects {
                hops += 1
                if location.hasPrefix("/") {
                    current = (url.tls ? "https://" : "http://") + url.hostHeader + location
                } else {
                    current = location
                }
                continue
            }
            return response
        }
    }

    static func once(
        _ url: URL, method: String, headers: [(String, String)], body: [UInt8], deadline: Double, maxBytes: Int, verify: Verify
    ) throws -> Response {
        let connection = try Connection(host: url.host, port: url.port, deadline: deadline)
        if url.tls { try connection.startTLS(serverName: url.host, verify: verify) }
        return try exchange(
            connection, method: method, target: url.target, hostHeader: url.hostHeader, headers: headers, body: body, maxBytes: maxBytes)
    }

    /// One request over the Unix domain socket at `socketPath` (no redirects: a local API).
    /// `target` is the request target (`/path?query`); the same deadline and byte limit as TCP.
    static func request(
        unixSocket socketPath: String, target: String, method: String = "GET", headers: [(String, String)] = [],
        timeout: Double, maxBytes: Int
    ) throws -> Response {
        guard target.hasPrefix("/"), target.utf8.allSatisfy({ $0 > 0x20 && $0 != 0x7f }) else { throw Failure("Invalid request target: \(target)") }
        let deadline = monotonic() + max(timeout, 0.001)
        let connection = try Connection(unixPath: socketPath, deadline: deadline)
        return try exchange(connection, method: method, target: target, hostHeader: "localhost", headers: headers, body: [], maxBytes: maxBytes)
    }

    /// Sends the request on an open connection and reads the response (chunked, sized, or to the end).
    static func exchange(
        _ connection: Connection, method: String, target: String, hostHeader: String, headers: [(String, String)], body: [UInt8],
        maxBytes: Int
    ) throws -> Response {
        var head = "\(method) \(target) HTTP/1.1\r\nHost: \(hostHeader)\r\n"
        for (name, value) in headers { head += name + ": " + value + "\r\n" }
        if !body.isEmpty || method == "PUT" || method == "POST" { head += "Content-Length: \(body.count)\r\n" }
        head += "Connection: close\r\n\r\n"
        try connection.write(Array(head.utf8) + body)

        // Status line and headers: at most 64 KiB.
        var buffer: [UInt8] = []
        var headerEnd: Int?
        while headerEnd == nil {
            guard buffer.count < 65536 else { throw Failure("response headers larger than 64 KiB") }
            let searchFrom = max(0, buffer.count - 3)
            if try connection.read(into: &buffer, count: 16384) == 0 { throw Failure("connection closed before the response headers") }
            if buffer.count >= 4 {
                for i in searchFrom...(buffer.count - 4)
                where buffer[i] == 13 && buffer[i + 1] == 10 && buffer[i + 2] == 13 && buffer[i + 3] == 10 {
                    headerEnd = i
                    break
                }
            }
        }
        let lines = String(decoding: buffer[..<headerEnd!], as: UTF8.self).split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusFields = lines.first?.split(separator: " ") ?? []
        guard statusFields.count >= 2, statusFields[0].hasPrefix("HTTP/"), let status = Int(statusFields[1]) else {
            throw Failure("malformed status line")
        }
        var response = Response(status: status, headers: [], body: [])
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            response.headers.append((String(line[..<colon]), String(line[line.index(after: colon)...]).trimmingASCIIWhitespace()))
        }
        var raw = Array(buffer[(headerEnd! + 4)...])
        func tooLarge() -> Failure { Failure("response larger than \(maxBytes) bytes") }
        if method == "HEAD" || status == 204 || status == 304 || (100..<200).contains(status) { return response }
        if response.header("Transfer-Encoding")?.lowercased().contains("chunked") == true {
            var body: [UInt8] = []
            var position = 0
            func need(_ count: Int) throws {
                while raw.count - position < count {
                    guard raw.count - position + body.count <= maxBytes + 65536 else { throw tooLarge() }
                    if try connection.read(into: &raw, count: 65536) == 0 { throw Failure("connection closed inside a chunk") }
                }
            }
            func line() throws -> String {
                while true {
                    if let i = raw[position...].firstIndex(of: 10) {
                        let text = String(decoding: raw[position..<i], as: UTF8.self)
                        position = i + 1
                        return text.trimmingASCIIWhitespace()
                    }
                    guard raw.count - position < 4096 else { throw Failure("malformed chunk size line") }
                    if try connection.read(into: &raw, count: 4096) == 0 { throw Failure("connection closed inside a chunk") }
                }
            }
            while true {
                let sizeText = try line()
                guard let size = Int(sizeText.prefix { $0 != ";" }, radix: 16), size >= 0 else { throw Failure("malformed chunk size") }
                if size == 0 { break }
                guard body.count + size <= maxBytes else { throw tooLarge() }
                try need(size + 2)
                body += raw[position..<(position + size)]
                position += size + 2
                // Keep memory bounded by the body, not by what was consumed.
                if position > 65536 { raw.removeSubrange(..<position); position = 0 }
            }
            response.body = body
            return response
        }
        if let lengthText = response.header("Content-Length"), let length = Int(lengthText), length >= 0 {
            guard length <= maxBytes else { throw tooLarge() }
            while raw.count < length {
                if try connection.read(into: &raw, count: min(65536, length - raw.count)) == 0 { break }
            }
            response.body = Array(raw.prefix(length))
            return response
        }
        while true {
            guard raw.count <= maxBytes else { throw tooLarge() }
            if try connection.read(into: &raw, count: 65536) == 0 { break }
        }
        response.body = raw
        return response
    }
}
