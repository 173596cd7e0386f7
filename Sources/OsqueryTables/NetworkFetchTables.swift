import OsqueryEngine
internal import COpenSSL
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The config's `prometheus_targets` (`{"urls": [...], "timeout": N}`), as osquery's config
/// parser reads it for the prometheus_metrics table.
struct PrometheusTargets {
    var configured = false
    var urls: [String] = []
    var timeout: UInt64 = 1

    /// The section's value (nil: the key is absent).
    init(_ value: JSONValue?) {
        guard let value else { return }
        configured = value["urls"] != nil
        urls = (value["urls"]?.array ?? []).compactMap { if case .string(let u) = $0 { u } else { nil } }
        timeout = value["timeout"]?.uint64 ?? 1
    }
}

/// osquery's tables that fetch over the network: curl, curl_certificate, prometheus_metrics.
enum NetworkFetchTables {
    static func curl(flags: Flags) -> FunctionTable {
        table("curl", [
            col("url", .text, [.index, .required, .optimized]), col("method", .text), col("user_agent", .text, .additional),
            col("response_code", .integer), col("round_trip_time", .bigint), col("bytes", .bigint), col("result", .text),
        ]) { context, schema in
            var rows = TableRows(schema: schema)
            let agents = context.equalities(for: "user_agent")
            guard agents.count <= 1 else {
                StatusLog.warning("Can only accept a single user_agent")
                return rows
            }
            if context.constraints(for: "url").contains(where: { $0.op == .like }) {
                StatusLog.warning("Using LIKE clause for url is not supported")
            }
            // A header value cannot carry a line break (header injection).
            let agent = agents.first.map { String($0.unicodeScalars.filter { $0 != "\r" && $0 != "\n" }) } ?? "osquery"
            for url in context.equalities(for: "url") {
                rows.append(.text(url))
                rows.append(.text("GET"))
                rows.append(.text(agent))
                let start = HTTPFetch.monotonic()
                do {
                    let response = try HTTPFetch.request(
                        url, headers: [("User-Agent", agent), ("Accept", "*/*")], timeout: Double(flags[.tableHttpTimeout]),
                        maxBytes: Int(clamping: flags[.tableHttpMaxBytes]), verify: .peer(bundle: flags[.tlsServerCerts]))
                    rows.append(.integer(Int64(response.status)))
                    rows.append(.integer(Int64((HTTPFetch.monotonic() - start) * 1_000_000)))
                    rows.append(.integer(Int64(response.body.count)))
                    rows.append(.text(bytes: response.body))
                } catch {
                    StatusLog.warning("Error making request: \(error)")
                    for _ in 0..<4 { rows.append(.null) }
                }
            }
            return rows
        }
    }

    /// BIO text of `write`, trailing line breaks trimmed (two at most) and inner ones as ';',
    /// as osquery prints certificate extensions.
    static func extensionText(_ cert: X509Certificate, nid: Int32) -> String {
        let text = X509Certificate.printed { osq_print_extension(cert.pointer, nid, $0) == 1 } ?? ""
        var bytes = Array(text.utf8)
        for _ in 0..<2 where bytes.last == 10 || bytes.last == 13 { bytes.removeLast() }
        return String(decoding: bytes.map { $0 == 10 ? UInt8(ascii: ";") : $0 }, as: UTF8.self)
    }

    static func nameText(_ name: OpaquePointer?, nid: Int32) -> SQLValue {
        guard let name else { return .null }
        var buffer = [CChar](repeating: 0, count: 256)
        guard X509_NAME_get_text_by_NID(name, nid, &buffer, Int32(buffer.count)) != -1 else { return .null }
        return .text(cString(buffer))
    }

    static func curlCertificate(flags: Flags) -> FunctionTable {
        table("curl_certificate", [
            col("hostname", .text, [.required, .optimized]), col("common_name", .text), col("organization", .text),
            col("organization_unit", .text), col("serial_number", .text, .collateNocase), col("issuer_common_name", .text),
            col("issuer_organization", .text), col("issuer_organization_unit", .text), col("valid_from", .text),
            col("valid_to", .text), col("sha256_fingerprint", .text, .collateNocase), col("sha1_fingerprint", .text, .collateNocase),
            col("version", .integer), col("signature_algorithm", .text), col("signature", .text),
            col("subject_key_identifier", .text, .collateNocase), col("authority_key_identifier", .text, .collateNocase),
            col("key_usage", .text), col("extended_key_usage", .text), col("policies", .text),
            col("subject_alternative_names", .text), col("issuer_alternative_names", .text), col("info_access", .text),
            col("subject_info_access", .text), col("policy_mappings", .text), col("has_expired", .integer),
            col("basic_constraint", .text), col("name_constraints", .text), col("policy_constraints", .text),
            col("dump_certificate", .integer, [.additional, .hidden]), col("timeout", .integer, [.additional, .hidden]),
            col("pem", .text),
        ]) { context, schema in
            var rows = TableRows(schema: schema)
            let dump = context.equalities(for: "dump_certificate").contains("1") ? 1 : 0
            var timeout: Int64 = 4
            if let given = context.equalities(for: "timeout").first {
                timeout = Int64(given) ?? 4
                if timeout < 0 {
                    StatusLog.warning("Ignoring out of range timeout: \(timeout)")
                    timeout = 4
                }
            }
            // osquery's 0 is "no read timeout": here the HTTP tables' bound instead, so a
            // server that never answers cannot hold the query.
            let seconds = timeout == 0 ? Double(flags[.tableHttpTimeout]) : Double(min(timeout, Int64(flags[.tableHttpTimeout])))
            for hostname in context.equalities(for: "hostname") {
                var host = hostname, port: UInt16 = 443
                if let colon = hostname.lastIndex(of: ":"), !hostname.hasPrefix("[") || hostname[..<colon].hasSuffix("]") {
                    host = String(hostname[..<colon])
                    let portText = hostname[hostname.index(after: colon)...]
                    if !portText.isEmpty {
                        guard let p = UInt16(portText) else {
                            StatusLog.info("Cannot get certificate for \(hostname): Unable to resolve hostname")
                            continue
                        }
                        port = p
                    }
                }
                if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
                let cert: X509Certificate
                do {
                    let connection = try HTTPFetch.Connection(host: host, port: port, deadline: HTTPFetch.monotonic() + seconds)
                    var failure: (any Error)?
                    do { try connection.startTLS(serverName: host, verify: .none) } catch { failure = error }
                    guard let peer = connection.peerCertificate() else {
                        throw failure ?? HTTPFetch.Failure("No certificate")
                    }
                    cert = peer
                } catch {
                    StatusLog.info("Cannot get certificate for \(hostname): \(error)")
                    continue
                }
                let subject = X509_get_subject_name(cert.pointer), issuer = X509_get_issuer_name(cert.pointer)
                var signature = ""
                var sigData: UnsafePointer<UInt8>?
                let sigLength = Int(osq_x509_signature(cert.pointer, &sigData))
                if X509_get_signature_nid(cert.pointer) != NID_undef, let sigData, sigLength > 0 {
                    signature = (0..<sigLength).map { i in
                        Hex.lowercase(UnsafeRawBufferPointer(start: sigData + i, count: 1))
                    }.joined(separator: ":")
                }
                let nid = X509_get_signature_nid(cert.pointer)
                let algorithm = nid != NID_undef ? (OBJ_nid2sn(nid).map { String(cString: $0) } ?? "undefined") : "undefined"
                let pem = dump == 1 ? (X509Certificate.printed { PEM_write_bio_X509($0, cert.pointer) == 1 } ?? "") : nil
                let values: [SQLValue] = [
                    .text(hostname), nameText(subject, nid: NID_commonName), nameText(subject, nid: NID_organizationName),
                    nameText(subject, nid: NID_organizationalUnitName), cert.serial.map { .text($0) } ?? .null,
                    nameText(issuer, nid: NID_commonName), nameText(issuer, nid: NID_organizationName),
                    nameText(issuer, nid: NID_organizationalUnitName),
                    X509Certificate.timeText(X509_get0_notBefore(cert.pointer)).map { .text($0) } ?? .null,
                    X509Certificate.timeText(X509_get0_notAfter(cert.pointer)).map { .text($0) } ?? .null,
                    cert.digest(EVP_sha256()).map { .text($0) } ?? .null, cert.sha1.map { .text($0) } ?? .null,
                    .integer(Int64(X509_get_version(cert.pointer)) + 1), .text(algorithm), .text(signature),
                    .text(extensionText(cert, nid: NID_subject_key_identifier)),
                    .text(extensionText(cert, nid: NID_authority_key_identifier)),
                    .text(extensionText(cert, nid: NID_key_usage)), .text(extensionText(cert, nid: NID_ext_key_usage)),
                    .text(extensionText(cert, nid: NID_certificate_policies)), .text(extensionText(cert, nid: NID_subject_alt_name)),
                    .text(extensionText(cert, nid: NID_issuer_alt_name)), .text(extensionText(cert, nid: NID_info_access)),
                    .text(extensionText(cert, nid: NID_sinfo_access)), .text(extensionText(cert, nid: NID_policy_mappings)),
                    .integer(X509_cmp_current_time(X509_get0_notAfter(cert.pointer)) <= 0 ? 1 : 0),
                    .text(extensionText(cert, nid: NID_basic_constraints)), .text(extensionText(cert, nid: NID_name_constraints)),
                    .text(extensionText(cert, nid: NID_policy_constraints)), .integer(Int64(dump)), .integer(timeout),
                    pem.map { .text($0) } ?? .null,
                ]
                rows.appendRow(values)
            }
            return rows
        }
    }

    /// Reads the targets from `registry`'s `prometheus_targets` config section at each query.
    static func prometheusMetrics(flags: Flags, registry: PluginRegistry) -> FunctionTable {
        table("prometheus_metrics", [
            col("target_name", .text), col("metric_name", .text), col("metric_value", .double), col("timestamp_ms", .bigint),
        ]) { _, schema in
            var rows = TableRows(schema: schema)
            let config = PrometheusTargets(registry.configSection("prometheus_targets"))
            guard config.configured else { return rows }
            // osquery scrapes its targets in the order of their URLs.
            for url in Set(config.urls).sorted() {
                let body: [UInt8]
                var stamp: Int64 = 0
                do {
                    let timeout = Double(min(config.timeout, flags[.tableHttpTimeout]))
                    body = try HTTPFetch.request(url, timeout: timeout, maxBytes: Int(clamping: flags[.tableHttpMaxBytes])).body
                    var ts = timespec()
                    clock_gettime(CLOCK_REALTIME, &ts)
                    stamp = Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
                } catch {
                    StatusLog.error("Failed on scrape of target \(url): \(error)")
                    body = []
                }
                for line in parseExposition(body) {
                    rows.append(.text(url))
                    rows.append(.text(line.name))
                    rows.append(Double(line.value).map { .double($0) } ?? .text(line.value))
                    rows.append(.integer(stamp))
                }
            }
            return rows
        }
    }

    /// The metric lines of Prometheus text exposition as osquery reads them: every line not
    /// empty and not starting with '#', split on spaces; the first field is the name (labels
    /// included), the second the value.
    static func parseExposition(_ body: [UInt8]) -> [(name: String, value: String)] {
        var out: [(String, String)] = []
        for line in body.split(separator: 10, omittingEmptySubsequences: true) where line.first != UInt8(ascii: "#") {
            let fields = osquerySplit(String(decoding: line, as: UTF8.self), " ")
            if fields.count > 1 { out.append((fields[0], fields[1])) }
        }
        return out
    }
}
