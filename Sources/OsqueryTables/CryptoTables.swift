import OsqueryEngine
internal import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// One X.509 certificate read with OpenSSL, with the text forms osquery's tables print.
final class X509Certificate {
    let pointer: OpaquePointer

    /// Takes a reference of its own: the caller keeps (and frees) its pointer.
    init(retaining pointer: OpaquePointer) {
        X509_up_ref(pointer)
        self.pointer = pointer
    }

    /// The first certificate of DER bytes (an EFI signature list's entry, say), or nil.
    init?(der: [UInt8]) {
        let decoded: OpaquePointer? = der.withUnsafeBufferPointer { buf in
            var p: UnsafePointer<UInt8>? = buf.baseAddress
            return d2i_X509(nil, &p, buf.count)
        }
        guard let decoded else { return nil }
        pointer = decoded
    }

    deinit { X509_free(pointer) }

    /// Every certificate of a PEM bundle held in memory (other PEM blocks are skipped); nil
    /// when OpenSSL cannot read the bundle (osquery then skips the whole file).
    static func bundle(_ bytes: [UInt8]) -> [X509Certificate]? {
        bytes.withUnsafeBytes { raw -> [X509Certificate]? in
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(clamping: raw.count)) else { return nil }
            defer { BIO_free(bio) }
            guard let stack = PEM_X509_INFO_read_bio(bio, nil, nil, nil) else {
                ERR_clear_error()
                return nil
            }
            defer { osq_x509_info_free(stack) }
            var out: [X509Certificate] = []
            for i in 0..<osq_x509_info_count(stack) {
                if let cert = osq_x509_info_cert(stack, i) { out.append(X509Certificate(retaining: cert)) }
            }
            return out
        }
    }

    /// Bytes of a memory BIO filled by `write` ("" when it fails).
    static func printed(_ write: (OpaquePointer) -> Bool) -> String? {
        guard let bio = BIO_new(BIO_s_mem()) else { return nil }
        defer { BIO_free(bio) }
        guard write(bio) else { return nil }
        var data: UnsafeMutablePointer<CChar>?
        let n = osq_bio_mem_data(bio, &data)
        guard n >= 0, let data else { return n == 0 ? "" : nil }
        return String(decoding: UnsafeRawBufferPointer(start: data, count: n), as: UTF8.self)
    }


    /// `/C=US/O=Org/CN=Name` (X509_NAME_oneline), or `C = US, O = Org, CN = Name` (RFC 2253
    /// reversed, XN_FLAG_ONELINE): osquery's `subject` and `subject2`.
    static func name(_ name: OpaquePointer?, oneline: Bool) -> String? {
        guard let name else { return nil }
        if oneline {
            guard let text = X509_NAME_oneline(name, nil, 0) else { return nil }
            defer { osq_openssl_free(text) }
            return String(cString: text)
        }
        return printed { X509_NAME_print_ex($0, name, 0, osq_xn_flag_oneline()) != -1 }
    }

    var subject: String? { Self.name(X509_get_subject_name(pointer), oneline: true) }
    var subject2: String? { Self.name(X509_get_subject_name(pointer), oneline: false) }
    var issuer: String? { Self.name(X509_get_issuer_name(pointer), oneline: true) }
    var issuer2: String? { Self.name(X509_get_issuer_name(pointer), oneline: false) }

    /// The first value of a name's entry (`CN`, `O`, `OU`), raw bytes as text.
    static func entry(_ name: OpaquePointer?, nid: Int32) -> String? {
        guard let name else { return nil }
        let index = X509_NAME_get_index_by_NID(name, nid, -1)
        guard index >= 0, let entry = X509_NAME_get_entry(name, index), let data = X509_NAME_ENTRY_get_data(entry),
              let bytes = ASN1_STRING_get0_data(data) else { return nil }
        let count = Int(ASN1_STRING_length(data))
        guard count > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: bytes, count: count), as: UTF8.self)
    }

    var commonName: String? { Self.entry(X509_get_subject_name(pointer), nid: NID_commonName) }

    /// Seconds since the epoch of an ASN1_TIME (always UTC).
    static func epoch(_ time: UnsafePointer<ASN1_TIME>?) -> Int64? {
        guard let time else { return nil }
        var t = tm()
        guard ASN1_TIME_to_tm(time, &t) == 1 else { return nil }
        return Int64(timegm(&t))
    }

    var notBefore: Int64? { Self.epoch(X509_get0_notBefore(pointer)) }
    var notAfter: Int64? { Self.epoch(X509_get0_notAfter(pointer)) }

    /// ASN1_TIME_print's text: `Jan  1 00:00:00 2020 GMT`.
    static func timeText(_ time: UnsafePointer<ASN1_TIME>?) -> String? {
        guard let time else { return nil }
        return printed { ASN1_TIME_print($0, time) == 1 }
    }

    func digest(_ md: OpaquePointer?) -> String? {
        var buffer = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        guard X509_digest(pointer, md, &buffer, &length) == 1 else { return nil }
        return buffer.withUnsafeBytes { Hex.lowercase(UnsafeRawBufferPointer(rebasing: $0[0..<Int(length)])) }
    }

    var sha1: String? { digest(EVP_sha1()) }
    var isCA: Bool { X509_check_ca(pointer) > 0 }
    var isSelfSigned: Bool { X509_check_issued(pointer, pointer) == X509_V_OK }

    /// osquery's key usage names, in the order of their bits' values.
    static let keyUsageNames: [(UInt32, String)] = [
        (0x0001, "Encipher Only"), (0x0002, "CRL Sign"), (0x0004, "Key Cert Sign"), (0x0008, "Key Agreement"),
        (0x0010, "Data Encipherment"), (0x0020, "Key Encipherment"), (0x0040, "Non Repudiation"),
        (0x0080, "Digital Signature"), (0x8000, "Decipher Only"),
    ]

    var keyUsage: String? {
        let flags = X509_get_key_usage(pointer)
        guard flags != UInt32.max else { return nil }
        return Self.keyUsageNames.filter { flags & $0.0 != 0 }.map(\.1).joined(separator: ", ")
    }

    /// The serial as BN_bn2hex prints it (upper-case hex, no leading zero bytes).
    var serial: String? {
        guard let serial = X509_get_serialNumber(pointer), let bn = ASN1_INTEGER_to_BN(serial, nil) else { return nil }
        defer { BN_free(bn) }
        guard let text = BN_bn2hex(bn) else { return nil }
        defer { osq_openssl_free(text) }
        return String(cString: text)
    }

    static func keyID(_ id: UnsafePointer<ASN1_OCTET_STRING>?) -> String? {
        guard let id, let data = ASN1_STRING_get0_data(id) else { return nil }
        return Hex.lowercase(UnsafeRawBufferPointer(start: data, count: Int(ASN1_STRING_length(id))))
    }

    var authorityKeyID: String? { Self.keyID(X509_get0_authority_key_id(pointer)) }
    var subjectKeyID: String? { Self.keyID(X509_get0_subject_key_id(pointer)) }

    var signingAlgorithm: String? {
        let nid = X509_get_signature_nid(pointer)
        guard nid != NID_undef, let name = OBJ_nid2ln(nid) else { return nil }
        return String(cString: name)
    }

    var keyAlgorithm: String? {
        guard let pub = X509_get_X509_PUBKEY(pointer) else { return nil }
        var alg: OpaquePointer?
        guard X509_PUBKEY_get0_param(&alg, nil, nil, nil, pub) == 1, let alg else { return nil }
        let nid = OBJ_obj2nid(alg)
        guard nid != NID_undef, let name = OBJ_nid2ln(nid) else { return nil }
        return String(cString: name)
    }

    var keyStrength: String? {
        var buffer = [CChar](repeating: 0, count: 96)
        guard osq_key_strength(pointer, &buffer, Int32(buffer.count)) != nil else { return nil }
        return cString(buffer)
    }
}

/// osquery's certificate tables on Linux: `certificates` (PEM bundles).
enum CryptoTables {
    /// Where the distributions keep their CA bundle, as osquery looks for them.
    static let defaultBundles = [
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/certs/ca-certificates.crt",
        "/var/lib/ca-certificates/ca-bundle.pem",
    ]

    static func certificates(flags: Flags, bundles: [String] = defaultBundles) -> FunctionTable {
        table("certificates", [
            col("common_name", .text), col("subject", .text), col("subject2", .text), col("issuer", .text),
            col("issuer2", .text), col("ca", .integer), col("self_signed", .integer), col("not_valid_before", .text),
            col("not_valid_after", .text), col("signing_algorithm", .text), col("key_algorithm", .text),
            col("key_strength", .text), col("key_usage", .text), col("subject_key_id", .text, .collateNocase),
            col("authority_key_id", .text, .collateNocase), col("sha1", .text, .collateNocase),
            col("path", .text, [.additional, .optimized]), col("serial", .text, .collateNocase),
            col("sid", .text, .hidden), col("store_location", .text, .hidden), col("store", .text, .hidden),
            col("username", .text, .hidden), col("store_id", .text, .hidden),
        ], attributes: .cacheable) { context, schema in
            var rows = TableRows(schema: schema)
            let asked = context.equalities(for: "path")
            let paths = asked.isEmpty ? bundles.filter { FileIO.exists($0) } : asked
            for path in paths {
                // Read bounded (a FIFO or a huge file is refused), then parsed from memory.
                guard let bytes = BoundedFile.read(path, limit: flags[.readMax]) else {
                    StatusLog.error("Failed to open the following file: \"\(path)\"")
                    continue
                }
                guard let certs = X509Certificate.bundle(bytes) else {
                    StatusLog.error("Failed to read from the certificate file")
                    continue
                }
                for cert in certs {
                    let values: [SQLValue] = [
                        .text(cert.commonName ?? ""), .text(cert.subject ?? ""), .text(cert.subject2 ?? ""),
                        .text(cert.issuer ?? ""), .text(cert.issuer2 ?? ""), .integer(cert.isCA ? 1 : 0),
                        .integer(cert.isSelfSigned ? 1 : 0), .text(String(cert.notBefore ?? 0)),
                        .text(String(cert.notAfter ?? 0)), .text(cert.signingAlgorithm ?? ""),
                        .text(cert.keyAlgorithm ?? ""), .text(cert.keyStrength ?? ""), .text(cert.keyUsage ?? ""),
                        .text(cert.subjectKeyID ?? ""), .text(cert.authorityKeyID ?? ""), .text(cert.sha1 ?? ""),
                        .text(path), .text(cert.serial ?? ""), .null, .null, .null, .null, .null,
                    ]
                    rows.appendRow(values)
                }
            }
            return rows
        }
    }
}
