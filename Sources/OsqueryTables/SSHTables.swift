import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

/// A user whose files a user-based table reads.
struct HomeUser: Sendable {
    var uid: Int64
    var directory: String
}

/// Tables over users' SSH files: authorized_keys, known_hosts, ssh_configs, user_ssh_keys.
enum SSHTables {
    typealias Users = @Sendable (QueryContext) -> [HomeUser]

    static let keyTypes = [
        "ssh-rsa", "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
        "sk-ecdsa-sha2-nistp256@openssh.com", "sk-ssh-ed25519@openssh.com",
    ]

    static func authorizedKeys(flags: Flags, users: @escaping Users = { ContextUsers.fromContext($0) }) -> FunctionTable {
        table("authorized_keys", [
            col("uid", .bigint, .additional), col("algorithm", .text), col("key", .text), col("options", .text),
            col("comment", .text), col("key_file", .text), pidWithNamespace,
        ], attributes: .userBased) { context, schema in
            let readMax = flags[.readMax]
            var rows = TableRows(schema: schema)
            for user in users(context) {
                for name in [".ssh/authorized_keys", ".ssh/authorized_keys2"] {
                    let path = joinedPath(user.directory, name)
                    guard FileIO.exists(path) else { continue }
                    guard let content = BoundedFile.text(path, limit: readMax) else {
                        StatusLog.error("Cannot read \(path)")
                        break
                    }
                    for line in osquerySplit(content, "\n") where !line.hasPrefix("#") {
                        appendAuthorizedKey(line, uid: user.uid, file: path, to: &rows)
                    }
                }
            }
            return rows
        }
    }

    /// One authorized_keys line as osquery reads it: `[options] type key [comment]`, or a z/OS
    /// key-ring label line (options only).
    static func appendAuthorizedKey(_ line: String, uid: Int64, file: String, to rows: inout TableRows) {
        let bytes = Array(line.utf8)
        func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 }
        for type in keyTypes {
            guard let start = line.utf8.firstRange(of: type.utf8) else { continue }
            let typeStart = line.utf8.distance(from: line.utf8.startIndex, to: start.lowerBound)
            let typeEnd = typeStart + type.utf8.count
            guard typeEnd < bytes.count, isSpace(bytes[typeEnd]) else { continue }
            var options: SQLValue = .null
            if typeStart > 0 {
                var end = typeStart
                while end > 0 && isSpace(bytes[end - 1]) { end -= 1 }
                options = .text(bytes: bytes[0..<end])
            }
            guard let keyStart = bytes[typeEnd...].firstIndex(where: { !isSpace($0) }) else { return }
            var key: SQLValue = .text(bytes: bytes[keyStart...])
            var comment: SQLValue = .null
            if let keyEnd = bytes[keyStart...].firstIndex(where: isSpace) {
                key = .text(bytes: bytes[keyStart..<keyEnd])
                // The line is trimmed, so text follows the key's trailing whitespace.
                let commentStart = bytes[keyEnd...].firstIndex { !isSpace($0) } ?? bytes.count
                comment = .text(bytes: bytes[commentStart...])
            }
            rows.append(.integer(uid))
            rows.append(.text(type))
            rows.append(key)
            rows.append(options)
            rows.append(comment)
            rows.append(.text(file))
            rows.append(.integer(0))
            return
        }
        if osquerySplit(line, ",").contains(where: { $0.hasPrefix("zos-key-ring-label=") }) {
            rows.append(.integer(uid))
            rows.append(.null)
            rows.append(.null)
            rows.append(.text(line))
            rows.append(.null)
            rows.append(.text(file))
            rows.append(.integer(0))
        }
    }

    static func knownHosts(flags: Flags, users: @escaping Users = { ContextUsers.fromContext($0) }) -> FunctionTable {
        table("known_hosts", [col("uid", .bigint, [.index, .optimized]), col("key", .text), col("key_file", .text)],
              attributes: .userBased) { context, schema in
            let readMax = flags[.readMax]
            var rows = TableRows(schema: schema)
            for user in users(context) {
                let path = joinedPath(user.directory, ".ssh/known_hosts")
                guard let content = BoundedFile.text(path, limit: readMax) else { continue }
                for line in osquerySplit(content, "\n") where !line.hasPrefix("#") {
                    rows.append(.integer(user.uid))
                    rows.append(.text(line))
                    rows.append(.text(path))
                }
            }
            return rows
        }
    }

    static func sshConfigs(flags: Flags, users: @escaping Users = { ContextUsers.fromContext($0) },
                           systemFile: String = "/etc/ssh/ssh_config") -> FunctionTable {
        table("ssh_configs", [
            col("uid", .bigint, [.additional, .optimized]), col("block", .text), col("option", .text),
            col("ssh_config_file", .text),
        ], attributes: .userBased) { context, schema in
            let readMax = flags[.readMax]
            var rows = TableRows(schema: schema)
            func add(_ uid: Int64, _ path: String) {
                guard let content = BoundedFile.text(path, limit: readMax) else { return }
                // osquery lowercases whole lines, values included.
                var block = ""
                for raw in osquerySplit(content, "\n") {
                    let line = raw.lowercased()
                    if line.hasPrefix("#") { continue }
                    if line.hasPrefix("host ") || line.hasPrefix("match ") {
                        block = line
                        continue
                    }
                    rows.append(.integer(uid))
                    rows.append(.text(block))
                    rows.append(.text(line))
                    rows.append(.text(path))
                }
            }
            for user in users(context) { add(user.uid, joinedPath(user.directory, ".ssh/config")) }
            add(0, systemFile)
            return rows
        }
    }

    static func userSSHKeys(flags: Flags, users: @escaping Users = { ContextUsers.fromContext($0) }) -> FunctionTable {
        table("user_ssh_keys", [
            col("uid", .bigint, [.additional, .optimized]), col("path", .text, .index), col("encrypted", .integer),
            col("key_type", .text), col("key_group_name", .text), col("key_length", .integer),
            col("key_security_bits", .integer), pidWithNamespace,
        ], attributes: .userBased) { context, schema in
            let readMax = flags[.readMax]
            var rows = TableRows(schema: schema)
            for user in users(context) {
                // Every file of ~/.ssh is tried; those that hold no private key give no row.
                for path in BoundedFile.files(in: joinedPath(user.directory, ".ssh")) {
                    guard let content = BoundedFile.text(path, limit: readMax), let key = PrivateKeyFile.parse(content) else { continue }
                    rows.append(.integer(user.uid))
                    rows.append(.text(path))
                    rows.append(.integer(key.encrypted ? 1 : 0))
                    rows.append(.text(key.type))
                    rows.append(.text(key.groupName))
                    rows.append(.integer(Int64(key.bits)))
                    rows.append(.integer(Int64(key.securityBits)))
                    rows.append(.integer(0))
                }
            }
            return rows
        }
    }

    static func joinedPath(_ directory: String, _ name: String) -> String {
        directory.hasSuffix("/") ? directory + name : directory + "/" + name
    }
}

/// What osquery learns from a private key file through OpenSSL's PEM reader: the first PEM
/// private key block (PKCS#8, PKCS#1 RSA, SEC1 EC, DSA), or an OpenSSH-format key, whose
/// details OpenSSL cannot read (type "", lengths -1).
struct PrivateKeyFile: Equatable {
    var encrypted = false
    var type = ""
    var groupName = ""
    var bits = -1
    var securityBits = -1

    static let openSSHHeader = "-----BEGIN OPENSSH PRIVATE KEY-----"
    /// The base64 of `openssh-key-v1\0` and cipher `none`.
    static let openSSHUnencryptedPrefix = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmU"

    static func parse(_ content: String) -> PrivateKeyFile? {
        if let pem = firstPEMKey(content) {
            var key = PrivateKeyFile()
            if pem.label == "ENCRYPTED PRIVATE KEY" || pem.headers.contains(where: { $0.hasPrefix("Proc-Type:") && $0.contains("ENCRYPTED") }) {
                key.encrypted = true
                return key
            }
            if let der = Base64.decode(pem.body), let parsed = describe(label: pem.label, der: der) { return parsed }
        }
        if content.hasPrefix(openSSHHeader) {
            var key = PrivateKeyFile()
            let body = content.utf8.dropFirst(openSSHHeader.utf8.count + 1).prefix(openSSHUnencryptedPrefix.utf8.count)
            key.encrypted = !body.elementsEqual(openSSHUnencryptedPrefix.utf8)
            return key
        }
        return nil
    }

    /// The first `-----BEGIN <label>-----` block whose label names a private key.
    static func firstPEMKey(_ content: String) -> (label: String, headers: [String], body: String)? {
        let labels = ["PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "DSA PRIVATE KEY"]
        var label: String?
        var headers: [String] = []
        var body = ""
        for raw in content.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = String(raw).trimmingASCIIWhitespace()
            if let current = label {
                if line == "-----END \(current)-----" { return (current, headers, body) }
                if line.contains(":") { headers.append(line) } else { body += line }
            } else if line.hasPrefix("-----BEGIN "), line.hasSuffix("-----") {
                let name = String(line.dropFirst(11).dropLast(5))
                if labels.contains(name) { label = name }
            }
        }
        return nil
    }

    static let rsaEncryption: [UInt8] = [0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01]
    static let ecPublicKey: [UInt8] = [0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01]
    static let dsaAlgorithm: [UInt8] = [0x2A, 0x86, 0x48, 0xCE, 0x38, 0x04, 0x01]
    static let ed25519: [UInt8] = [0x2B, 0x65, 0x70]
    static let ed448: [UInt8] = [0x2B, 0x65, 0x71]
    /// Named curves: OpenSSL's name, order bits.
    static let curves: [([UInt8], String, Int)] = [
        ([0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07], "prime256v1", 256),
        ([0x2B, 0x81, 0x04, 0x00, 0x22], "secp384r1", 384),
        ([0x2B, 0x81, 0x04, 0x00, 0x23], "secp521r1", 521),
        ([0x2B, 0x81, 0x04, 0x00, 0x0A], "secp256k1", 256),
    ]

    static func describe(label: String, der: [UInt8]) -> PrivateKeyFile? {
        var reader = DER(der)
        guard var outer = reader.sequence() else { return nil }
        switch label {
        case "RSA PRIVATE KEY":
            return rsa(&outer)
        case "EC PRIVATE KEY":
            return ec(&outer, curve: nil)
        case "DSA PRIVATE KEY":
            return dsa(&outer)
        default:
            // PKCS#8: version, AlgorithmIdentifier { oid, parameters }, OCTET STRING key.
            guard outer.integer() != nil, var algorithm = outer.sequence(), let oid = algorithm.element(tag: 0x06),
                  let octets = outer.element(tag: 0x04) else { return nil }
            var inner = DER(octets)
            if oid.elementsEqual(rsaEncryption) {
                guard var sequence = inner.sequence() else { return nil }
                return rsa(&sequence)
            }
            if oid.elementsEqual(ecPublicKey) {
                guard var sequence = inner.sequence() else { return nil }
                return ec(&sequence, curve: algorithm.element(tag: 0x06).map(Array.init))
            }
            if oid.elementsEqual(dsaAlgorithm) {
                guard var parameters = algorithm.sequence(), let p = parameters.integer(), let q = parameters.integer() else { return nil }
                return dsaKey(p: p, q: q)
            }
            // EVP_PKEY_ED25519/ED448: no osquery type name, no group name.
            if oid.elementsEqual(ed25519) { return PrivateKeyFile(type: "", groupName: "", bits: 256, securityBits: 128) }
            if oid.elementsEqual(ed448) { return PrivateKeyFile(type: "", groupName: "", bits: 456, securityBits: 224) }
            return nil
        }
    }

    /// RSAPrivateKey: version, modulus, ...
    static func rsa(_ sequence: inout DER) -> PrivateKeyFile? {
        guard sequence.integer() != nil, let modulus = sequence.integer() else { return nil }
        let bits = DER.bitCount(modulus)
        return PrivateKeyFile(type: "rsa", groupName: "", bits: bits, securityBits: ifcSecurityBits(bits))
    }

    /// ECPrivateKey: version, privateKey, [0] parameters (the curve), [1] publicKey.
    static func ec(_ sequence: inout DER, curve: [UInt8]?) -> PrivateKeyFile? {
        guard sequence.integer() != nil, sequence.element(tag: 0x04) != nil else { return nil }
        var oid = curve
        if oid == nil, let parameters = sequence.element(tag: 0xA0) {
            var inner = DER(parameters)
            oid = inner.element(tag: 0x06).map(Array.init)
        }
        guard let oid, let known = curves.first(where: { $0.0 == oid }) else { return nil }
        return PrivateKeyFile(type: "ec", groupName: known.1, bits: known.2, securityBits: known.2 / 2)
    }

    /// DSAPrivateKey: version, p, q, g, y, x.
    static func dsa(_ sequence: inout DER) -> PrivateKeyFile? {
        guard sequence.integer() != nil, let p = sequence.integer(), let q = sequence.integer() else { return nil }
        return dsaKey(p: p, q: q)
    }

    static func dsaKey(p: ArraySlice<UInt8>, q: ArraySlice<UInt8>) -> PrivateKeyFile {
        let l = DER.bitCount(p), n = DER.bitCount(q)
        // OpenSSL's BN_security_bits(L, N).
        let byL = l >= 15360 ? 256 : l >= 7680 ? 192 : l >= 3072 ? 128 : l >= 2048 ? 112 : l >= 1024 ? 80 : 0
        return PrivateKeyFile(type: "dsa", groupName: "", bits: l, securityBits: min(byL, n / 2))
    }

    /// OpenSSL 3's security strength of an RSA modulus of `n` bits (SP 800-56B's estimate,
    /// with the sizes the standards list taken exactly).
    static func ifcSecurityBits(_ n: Int) -> Int {
        switch n {
        case 2048: return 112
        case 3072: return 128
        case 4096: return 152
        case 6144: return 176
        case 7680: return 192
        case 8192: return 200
        case 15360: return 256
        default: break
        }
        if n >= 687737 { return 1200 }
        if n < 8 { return 0 }
        let cap = n <= 7680 ? 192 : n <= 15360 ? 256 : 1200
        let x = Double(n) * 0.6931471805599453
        let estimate = (1.923 * cbrt(x * log(x) * log(x)) - 4.690) / 0.6931471805599453
        let rounded = (Int(estimate) + 4) & ~7
        return min(rounded, cap)
    }
}

/// A minimal DER reader: definite lengths, the elements a private key holds.
struct DER {
    var bytes: ArraySlice<UInt8>

    init<C: Collection>(_ bytes: C) where C.Element == UInt8 { self.bytes = ArraySlice(bytes) }

    /// The next element's content when its tag is `tag`.
    mutating func element(tag: UInt8) -> ArraySlice<UInt8>? {
        guard bytes.count >= 2, bytes.first == tag else { return nil }
        var i = bytes.startIndex + 1
        var length = Int(bytes[i])
        i += 1
        if length & 0x80 != 0 {
            let count = length & 0x7F
            guard count >= 1, count <= 4, bytes.endIndex - i >= count else { return nil }
            length = 0
            for _ in 0..<count {
                length = length << 8 | Int(bytes[i])
                i += 1
            }
        }
        guard bytes.endIndex - i >= length else { return nil }
        let content = bytes[i..<(i + length)]
        bytes = bytes[(i + length)...]
        return content
    }

    mutating func sequence() -> DER? { element(tag: 0x30).map { DER($0) } }
    mutating func integer() -> ArraySlice<UInt8>? { element(tag: 0x02) }

    /// Significant bits of a non-negative big-endian integer.
    static func bitCount(_ value: ArraySlice<UInt8>) -> Int {
        guard let first = value.firstIndex(where: { $0 != 0 }) else { return 0 }
        return (value.endIndex - first - 1) * 8 + (8 - value[first].leadingZeroBitCount)
    }
}
