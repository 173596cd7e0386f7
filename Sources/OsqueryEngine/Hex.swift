/// Bytes as lowercase hex, as osquery writes digests (md5, sha1, sha256) and key ids.
package enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    package static func lowercase<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.underestimatedCount * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xf)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
