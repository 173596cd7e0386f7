import AsyncHTTPClient
import CompressNIO
import Foundation
import NIOCore
import NIOSSL
import OsqueryEngine
import OsqueryManager

/// osquery's TLS transport (docs/wiki/deployment/remote.md): HTTPS POSTs of JSON to
/// `https://<tls_hostname><endpoint>`, TLS 1.2 or later, server roots from `--tls_server_certs`
/// (the system store when that file is missing), an optional client certificate for mutual TLS,
/// hostname verification, `--proxy_hostname`, gzip both ways. Every request is bounded: the
/// connection by `--tls_connect_timeout`, the whole exchange (a body that trickles forever
/// included) by `--tls_request_timeout`, the answer by `--tls_max_response_size`.
final class RemoteTransport: Sendable {
    let client: HTTPClient
    let hostname: String
    let requestTimeout: Duration
    let maxResponseBytes: Int
    let acceptGzip: Bool
    let sessionReuse: Bool
    let dump: Bool

    /// One answer: the HTTP status and the body (inflated when the server gzipped it).
    struct Response: Sendable {
        let status: Int
        let body: Data
    }

    init(flags: Flags) throws(DaemonError) {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        let serverCerts = flags[.tlsServerCerts]
        if !serverCerts.isEmpty, FileManager.default.isReadableFile(atPath: serverCerts) {
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(serverCerts))
            } catch {
                throw DaemonError("Cannot read TLS server certificate(s): \(serverCerts): \(error)")
            }
        } else if !serverCerts.isEmpty, serverCerts != Self.defaultServerCerts {
            StatusLog.warning("Cannot read TLS server certificate(s): \(serverCerts)")
        }
        let clientCert = flags[.tlsClientCert], clientKey = flags[.tlsClientKey]
        if !clientCert.isEmpty, !clientKey.isEmpty {
            do {
                tls.certificateChain = try NIOSSLCertificate.fromPEMFile(clientCert).map { .certificate($0) }
            } catch {
                throw DaemonError("Cannot read TLS client certificate: \(clientCert): \(error)")
            }
            do {
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: clientKey, format: .pem))
            } catch {
                throw DaemonError("Cannot read TLS client private key: \(clientKey): \(error)")
            }
        }
        if flags[.tlsAllowUnsafe] { tls.certificateVerification = .none }

        var proxy: HTTPClient.Configuration.Proxy?
        let proxyHost = flags[.proxyHostname]
        if !proxyHost.isEmpty {
            let parts = proxyHost.split(separator: ":", maxSplits: 1)
            proxy = .server(host: String(parts[0]), port: parts.count > 1 ? Int(parts[1]) ?? 3128 : 3128)
        }
        maxResponseBytes = Int(clamping: flags[.tlsMaxResponseSize])
        let connect = Int64(clamping: max(flags[.tlsConnectTimeout], 1))
        requestTimeout = .seconds(Int64(clamping: max(flags[.tlsRequestTimeout], 1)))
        var pool = HTTPClient.Configuration.ConnectionPool()
        pool.idleTimeout = .seconds(Int64(clamping: max(flags[.tlsSessionTimeout], 1)))
        var configuration = HTTPClient.Configuration(
            tlsConfiguration: tls, redirectConfiguration: .disallow,
            timeout: .init(connect: .seconds(connect), read: .seconds(Int64(clamping: max(flags[.tlsRequestTimeout], 1)))),
            connectionPool: pool, proxy: proxy,
            decompression: .enabled(limit: .size(maxResponseBytes)))
        // A failed connection fails the request at once; osquery's own attempts loop retries.
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.httpVersion = .http1Only
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        hostname = flags[.tlsHostname]
        acceptGzip = flags[.tlsAcceptGzip]
        sessionReuse = flags[.tlsSessionReuse]
        dump = flags[.tlsDump] && flags[.verbose]
    }

    static let defaultServerCerts = "/opt/osquery/share/osquery/certs/certs.pem"

    /// The URI osquery builds for an endpoint.
    func uri(_ endpoint: String) -> String { "https://" + hostname + endpoint }

    /// POSTs `body` (gzipped when `compress`); throws osquery's `Request error: …` on failure.
    func post(_ endpoint: String, body: Data, nodeKey: String, compress: Bool) async throws(DaemonError) -> Response {
        let url = uri(endpoint)
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Accept", value: "application/json")
        request.headers.add(name: "User-Agent", value: "osquery/\(OsqueryVersion.version)")
        if !nodeKey.isEmpty { request.headers.add(name: "Authorization", value: "NodeKey " + nodeKey) }
        if acceptGzip { request.headers.add(name: "Accept-Encoding", value: "gzip") }
        if !sessionReuse { request.headers.add(name: "Connection", value: "close") }
        var buffer = ByteBuffer(bytes: body)
        if compress {
            do {
                buffer = try buffer.compress(with: .gzip())
            } catch {
                throw DaemonError("Request error: cannot gzip the request body: \(error)")
            }
            request.headers.add(name: "Content-Encoding", value: "gzip")
        }
        if dump { FileHandle.standardError.write(body + Data("\n".utf8)) }
        request.body = .bytes(buffer)
        let client = self.client, limit = maxResponseBytes, timeout = requestTimeout, prepared = request
        let outcome: Result<Response, DaemonError> = await withTaskGroup(of: Result<Response, DaemonError>?.self) { group in
            group.addTask {
                do {
                    let response = try await client.execute(prepared, timeout: .seconds(timeout.components.seconds))
                    let bytes = try await response.body.collect(upTo: limit)
                    return .success(Response(status: Int(response.status.code), body: Data(bytes.readableBytesView)))
                } catch {
                    return .failure(Self.describe(error, limit: limit, seconds: timeout.components.seconds))
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return Task.isCancelled ? nil : .failure(DaemonError("Request error: timed out after \(timeout.components.seconds) s (--tls_request_timeout)"))
            }
            var first: Result<Response, DaemonError>?
            while first == nil, let next = await group.next() { first = next }
            group.cancelAll()
            return first ?? .failure(DaemonError("Request error: cancelled"))
        }
        let response = try outcome.get()
        if dump { FileHandle.standardError.write(response.body + Data("\n".utf8)) }
        return response
    }

    /// Blocks the calling thread (never a cooperative-pool thread) for `post`.
    func postBlocking(_ endpoint: String, body: Data, nodeKey: String, compress: Bool) throws(DaemonError) -> Response {
        try runBlocking { () async throws(DaemonError) -> Response in
            try await self.post(endpoint, body: body, nodeKey: nodeKey, compress: compress)
        }
    }

    /// A clear text for what went wrong, prefixed as osquery's transport does.
    static func describe(_ error: any Error, limit: Int, seconds: Int64) -> DaemonError {
        let text: String
        switch error {
        case is NIOTooManyBytesError:
            text = "the response is larger than \(limit) bytes (--tls_max_response_size)"
        case let e as NIOSSLError:
            text = "TLS handshake failed: \(e)"
        case let e as BoringSSLError:
            text = "TLS handshake failed: \(e)"
        case let e as HTTPClientError where e == .connectTimeout:
            text = "connect timed out (--tls_connect_timeout)"
        case let e as HTTPClientError where e == .readTimeout || e == .deadlineExceeded:
            text = "timed out after \(seconds) s (--tls_request_timeout)"
        default:
            let described = String(describing: error)
            text = described.contains("certificate") || described.contains("SSL") ? "TLS handshake failed: \(described)" : described
        }
        // BoringSSL's reason names what went wrong; the rest of its text is noise to an operator.
        if text.contains("CERTIFICATE_VERIFY_FAILED") {
            return DaemonError(
                "Request error: TLS handshake failed: the server's certificate is not trusted (CERTIFICATE_VERIFY_FAILED; see --tls_server_certs)")
        }
        return DaemonError("Request error: \(text)")
    }

    func shutdown() {
        try? client.syncShutdown()
    }
}
