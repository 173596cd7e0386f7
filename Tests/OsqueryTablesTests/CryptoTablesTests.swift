import Foundation
import OsqueryEngine
@testable import OsqueryTables
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A database holding only the given tables.
func systemTablesDatabase(_ tables: FunctionTable..., flags: Flags = Flags()) throws -> Database {
    let registry = PluginRegistry()
    for t in tables { registry.addTable(t) }
    StatusLog.setSink { _, _ in }
    return try Database(registry: registry, flags: flags)
}

/// Runs `openssl` with the arguments and fails the test when it does not exit 0.
func openssl(_ arguments: [String]) async throws -> String {
    try await toolOutput("/usr/bin/openssl", arguments)
}

/// A CA and a leaf it signed, made by `openssl` in a scratch directory: `ca.pem` (RSA 2048,
/// self-signed CA) and `leaf.pem` (EC P-256, for `localhost`), with their keys.
func makeTestCertificates(_ dir: TempDir) async throws {
    let p = dir.path
    _ = try await openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p + "/ca.key", "-out", p + "/ca.pem",
                           "-days", "30", "-subj", "/C=US/O=Osquery Test/CN=Osquery Test CA",
                           "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    _ = try await openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", p + "/leaf.key",
                           "-out", p + "/leaf.csr", "-subj", "/C=US/O=Osquery Test/OU=Tables/CN=localhost"])
    dir.write("leaf.ext", "subjectAltName=DNS:localhost,IP:127.0.0.1\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n")
    _ = try await openssl(["x509", "-req", "-in", p + "/leaf.csr", "-CA", p + "/ca.pem", "-CAkey", p + "/ca.key", "-CAcreateserial",
                           "-out", p + "/leaf.pem", "-days", "10", "-extfile", p + "/leaf.ext"])
}

/// The PEM certificate blocks of a bundle, each as its own text.
func pemBlocks(_ text: String) -> [String] {
    let begin = "-----BEGIN CERTIFICATE-----", end = "-----END CERTIFICATE-----"
    var out: [String] = []
    var rest = Substring(text)
    while let b = rest.range(of: begin), let e = rest[b.upperBound...].range(of: end) {
        out.append(String(rest[b.lowerBound..<e.upperBound]) + "\n")
        rest = rest[e.upperBound...]
    }
    return out
}

/// `Dec  5 15:00:00 2026 GMT` as seconds since the epoch.
func opensslDate(_ text: String) -> Int64? {
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    let f = text.split(separator: " ")
    guard f.count == 5, f[4] == "GMT", let month = months.firstIndex(of: String(f[0])), let day = Int32(f[1]), let year = Int32(f[3]) else { return nil }
    let clock = f[2].split(separator: ":").compactMap { Int32($0) }
    guard clock.count == 3 else { return nil }
    var t = tm()
    t.tm_year = year - 1900
    t.tm_mon = Int32(month)
    t.tm_mday = day
    (t.tm_hour, t.tm_min, t.tm_sec) = (clock[0], clock[1], clock[2])
    return Int64(timegm(&t))
}

/// What `openssl x509` says of each certificate of a bundle: the same columns as the table's
/// subject2, issuer2, serial, not_valid_before, not_valid_after and sha1, tab-joined.
func opensslRows(_ bundle: String, scratch: TempDir) async throws -> Set<String> {
    var out = Set<String>()
    for (i, block) in pemBlocks(readText(bundle)).enumerated() {
        let name = "one-\(i).pem"
        scratch.write(name, block)
        let text = try await openssl(["x509", "-in", scratch.path + "/" + name, "-noout", "-nameopt", "oneline", "-subject", "-issuer",
                                      "-serial", "-dates", "-fingerprint", "-sha1"])
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            fields[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        let sha1 = (fields["sha1 Fingerprint"] ?? fields["SHA1 Fingerprint"] ?? "").replacingOccurrences(of: ":", with: "").lowercased()
        // BN_bn2hex (osquery's serial) writes a zero serial as "0", openssl x509 as "00".
        let serial = fields["serial"] == "00" ? "0" : fields["serial"] ?? ""
        out.insert([
            fields["subject"] ?? "", fields["issuer"] ?? "", serial,
            opensslDate(fields["notBefore"] ?? "").map(String.init) ?? "", opensslDate(fields["notAfter"] ?? "").map(String.init) ?? "",
            sha1,
        ].joined(separator: "\t"))
    }
    return out
}

@Suite(.serialized) struct CryptoTablesTests {
    static let compared = ["subject2", "issuer2", "serial", "not_valid_before", "not_valid_after", "sha1"]

    /// A bundle the test makes (a CA, a leaf it signed and a private key, which is skipped):
    /// every certificate's names, serial, dates and fingerprint as `openssl x509` prints them.
    @Test(.enabled(if: installed("/usr/bin/openssl"))) func certificatesMatchOpensslOnABundle() async throws {
        let dir = TempDir()
        try await makeTestCertificates(dir)
        dir.write("bundle.pem", readText(dir.path + "/ca.pem") + readText(dir.path + "/leaf.key") + readText(dir.path + "/leaf.pem"))
        let bundle = dir.path + "/bundle.pem"
        let db = try systemTablesDatabase(CryptoTables.certificates(flags: Flags(), bundles: []))
        let sql = "SELECT * FROM certificates WHERE path = '\(bundle)'"
        let ours = try rowSet(db, sql, Self.compared)
        let theirs = try await opensslRows(bundle, scratch: dir)
        #expect(ours.count == 2)
        #expect(ours == theirs, "only ours: \(ours.subtracting(theirs)); only openssl: \(theirs.subtracting(ours))")
        #expect(try rowSet(db, sql, ["common_name", "subject", "issuer", "ca", "self_signed", "key_algorithm", "key_strength", "key_usage", "path"]) == [
            "Osquery Test CA\t/C=US/O=Osquery Test/CN=Osquery Test CA\t/C=US/O=Osquery Test/CN=Osquery Test CA\t1\t1\trsaEncryption\t2048\tCRL Sign, Key Cert Sign\t\(bundle)",
            "localhost\t/C=US/O=Osquery Test/OU=Tables/CN=localhost\t/C=US/O=Osquery Test/CN=Osquery Test CA\t0\t0\tid-ecPublicKey\tprime256v1\tDigital Signature\t\(bundle)",
        ])
        // The leaf's authority key id is the CA's subject key id, as openssl computed it.
        let ids = try db.execute("SELECT subject_key_id, authority_key_id, signing_algorithm FROM certificates WHERE path = '\(bundle)' ORDER BY ca DESC")
        #expect(ids[1, 1].text == ids[0, 0].text && ids[0, 0].text?.count == 40)
        #expect(ids[0, 2].text == "sha256WithRSAEncryption")
    }

    /// Without a path, the distribution's CA bundle osquery looks for: the same certificates as
    /// `openssl x509` reads from it.
    @Test(.enabled(if: installed("/usr/bin/openssl") && FileIO.exists("/etc/ssl/certs/ca-certificates.crt")))
    func certificatesReadTheSystemBundle() async throws {
        let dir = TempDir()
        let db = try systemTablesDatabase(CryptoTables.certificates(flags: Flags()))
        let ours = try rowSet(db, "SELECT * FROM certificates", Self.compared)
        let theirs = try await opensslRows("/etc/ssl/certs/ca-certificates.crt", scratch: dir)
        #expect(!theirs.isEmpty)
        #expect(ours == theirs, "\(ours.count) vs \(theirs.count); only ours: \(ours.subtracting(theirs).sorted().prefix(3)); only openssl: \(theirs.subtracting(ours).sorted().prefix(3))")
    }

    /// A FIFO, a file over read_max, garbage and a missing path give no rows (a FIFO is not
    /// waited on), and the table keeps answering for a good bundle afterwards.
    @Test(.enabled(if: installed("/usr/bin/openssl"))) func certificatesRefuseHostileFiles() async throws {
        let dir = TempDir()
        try await makeTestCertificates(dir)
        #expect(mkfifo(dir.path + "/fifo.pem", 0o600) == 0)
        dir.write("garbage.pem", "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
        dir.write("big.pem", String(repeating: readText(dir.path + "/ca.pem"), count: 8))
        let flags = Flags()
        try flags.set("read_max", "4096")
        let db = try systemTablesDatabase(CryptoTables.certificates(flags: flags, bundles: []), flags: flags)
        for name in ["fifo.pem", "garbage.pem", "big.pem", "missing.pem"] {
            #expect(try db.execute("SELECT * FROM certificates WHERE path = '\(dir.path)/\(name)'").rowCount == 0, "\(name)")
        }
        #expect(try db.execute("SELECT * FROM certificates WHERE path = '\(dir.path)/ca.pem'").rowCount == 1)
        // 10 GB, sparse: refused by its size under the default read_max, nothing read.
        let fd = open(dir.path + "/huge.pem", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        #expect(ftruncate(fd, 10 << 30) == 0)
        close(fd)
        let defaults = try systemTablesDatabase(CryptoTables.certificates(flags: Flags(), bundles: []))
        #expect(try defaults.execute("SELECT * FROM certificates WHERE path = '\(dir.path)/huge.pem'").rowCount == 0)
        #expect(try defaults.execute("SELECT * FROM certificates WHERE path = '\(dir.path)/ca.pem'").rowCount == 1)
    }
}
