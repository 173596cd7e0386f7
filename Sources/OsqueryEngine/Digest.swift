import Glibc

/// MD5, SHA-1 and SHA-256 of a byte string, for the SQL functions `md5()`, `sha1()` and
/// `sha256()`. Written here rather than taken from swift-crypto so that the engine, and the SDK's
/// testing kit that runs it, do not build BoringSSL (issue 22: it was most of an extension
/// author's first test build). The core's tables and FIM, which hash files, keep swift-crypto.
package enum Digest {
    package static func md5(_ bytes: [UInt8]) -> [UInt8] {
        var h: (UInt32, UInt32, UInt32, UInt32) = (0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476)
        forEachBlock(bytes, bigEndianLength: false) { w in
            var (a, b, c, d) = h
            for i in 0..<64 {
                var f: UInt32
                let g: Int
                switch i {
                case 0..<16: f = (b & c) | (~b & d); g = i
                case 16..<32: f = (d & b) | (~d & c); g = (5 &* i &+ 1) & 15
                case 32..<48: f = b ^ c ^ d; g = (3 &* i &+ 5) & 15
                default: f = c ^ (b | ~d); g = (7 &* i) & 15
                }
                f = f &+ a &+ md5K[i] &+ UInt32(littleEndian: w[g])
                a = d
                d = c
                c = b
                b = b &+ rotl(f, md5Shift[(i >> 4) << 2 | i & 3])
            }
            h = (h.0 &+ a, h.1 &+ b, h.2 &+ c, h.3 &+ d)
        }
        return [h.0, h.1, h.2, h.3].flatMap(littleEndianBytes)
    }

    package static func sha1(_ bytes: [UInt8]) -> [UInt8] {
        var h: [UInt32] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476, 0xc3d2_e1f0]
        var w = [UInt32](repeating: 0, count: 80)
        forEachBlock(bytes, bigEndianLength: true) { block in
            for i in 0..<16 { w[i] = UInt32(bigEndian: block[i]) }
            for i in 16..<80 { w[i] = rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1) }
            var (a, b, c, d, e) = (h[0], h[1], h[2], h[3], h[4])
            for i in 0..<80 {
                let f: UInt32, k: UInt32
                switch i {
                case 0..<20: f = (b & c) | (~b & d); k = 0x5a82_7999
                case 20..<40: f = b ^ c ^ d; k = 0x6ed9_eba1
                case 40..<60: f = (b & c) | (b & d) | (c & d); k = 0x8f1b_bcdc
                default: f = b ^ c ^ d; k = 0xca62_c1d6
                }
                let t = rotl(a, 5) &+ f &+ e &+ k &+ w[i]
                e = d
                d = c
                c = rotl(b, 30)
                b = a
                a = t
            }
            h[0] = h[0] &+ a
            h[1] = h[1] &+ b
            h[2] = h[2] &+ c
            h[3] = h[3] &+ d
            h[4] = h[4] &+ e
        }
        return h.flatMap(bigEndianBytes)
    }

    package static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        var h: [UInt32] = [
            0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19,
        ]
        var w = [UInt32](repeating: 0, count: 64)
        forEachBlock(bytes, bigEndianLength: true) { block in
            for i in 0..<16 { w[i] = UInt32(bigEndian: block[i]) }
            for i in 16..<64 {
                let s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
                let s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
                w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
            }
            var (a, b, c, d, e, f, g, hh) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7])
            for i in 0..<64 {
                let s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
                let ch = (e & f) ^ (~e & g)
                let t1 = hh &+ s1 &+ ch &+ sha256K[i] &+ w[i]
                let s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
                let maj = (a & b) ^ (a & c) ^ (b & c)
                let t2 = s0 &+ maj
                hh = g
                g = f
                f = e
                e = d &+ t1
                d = c
                c = b
                b = a
                a = t1 &+ t2
            }
            for (i, v) in [a, b, c, d, e, f, g, hh].enumerated() { h[i] = h[i] &+ v }
        }
        return h.flatMap(bigEndianBytes)
    }

    /// Pads the message as all three do (0x80, zeros, the bit length in the last 8 bytes) and
    /// hands each 64-byte block to `body` as 16 words in memory order.
    private static func forEachBlock(_ bytes: [UInt8], bigEndianLength: Bool, _ body: ([UInt32]) -> Void) {
        var tail = Array(bytes[(bytes.count / 64 * 64)...])
        tail.append(0x80)
        while tail.count % 64 != 56 { tail.append(0) }
        let bits = UInt64(bytes.count) &* 8
        for i in 0..<8 {
            let shift = bigEndianLength ? (7 - i) * 8 : i * 8
            tail.append(UInt8(truncatingIfNeeded: bits >> UInt64(shift)))
        }
        var words = [UInt32](repeating: 0, count: 16)
        func load(_ chunk: ArraySlice<UInt8>) {
            chunk.withUnsafeBytes { raw in
                for i in 0..<16 { words[i] = raw.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self) }
            }
            body(words)
        }
        var offset = 0
        while offset + 64 <= bytes.count {
            load(bytes[offset..<offset + 64])
            offset += 64
        }
        var t = 0
        while t < tail.count {
            load(tail[t..<t + 64])
            t += 64
        }
    }

    private static func rotl(_ x: UInt32, _ n: UInt32) -> UInt32 { x << n | x >> (32 - n) }
    private static func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { x >> n | x << (32 - n) }
    private static func littleEndianBytes(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> ($0 * 8)) } }
    private static func bigEndianBytes(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (24 - $0 * 8)) } }

    private static let md5Shift: [UInt32] = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21]
    /// floor(abs(sin(i + 1)) * 2^32), the MD5 constants of RFC 1321.
    private static let md5K: [UInt32] = (0..<64).map { UInt32(truncatingIfNeeded: Int64(abs(sin(Double($0 + 1))) * 4_294_967_296)) }
    /// The first 32 bits of the fractional parts of the cube roots of the first 64 primes (FIPS 180-4).
    private static let sha256K: [UInt32] = [
        0x428a_2f98, 0x7137_4491, 0xb5c0_fbcf, 0xe9b5_dba5, 0x3956_c25b, 0x59f1_11f1, 0x923f_82a4, 0xab1c_5ed5,
        0xd807_aa98, 0x1283_5b01, 0x2431_85be, 0x550c_7dc3, 0x72be_5d74, 0x80de_b1fe, 0x9bdc_06a7, 0xc19b_f174,
        0xe49b_69c1, 0xefbe_4786, 0x0fc1_9dc6, 0x240c_a1cc, 0x2de9_2c6f, 0x4a74_84aa, 0x5cb0_a9dc, 0x76f9_88da,
        0x983e_5152, 0xa831_c66d, 0xb003_27c8, 0xbf59_7fc7, 0xc6e0_0bf3, 0xd5a7_9147, 0x06ca_6351, 0x1429_2967,
        0x27b7_0a85, 0x2e1b_2138, 0x4d2c_6dfc, 0x5338_0d13, 0x650a_7354, 0x766a_0abb, 0x81c2_c92e, 0x9272_2c85,
        0xa2bf_e8a1, 0xa81a_664b, 0xc24b_8b70, 0xc76c_51a3, 0xd192_e819, 0xd699_0624, 0xf40e_3585, 0x106a_a070,
        0x19a4_c116, 0x1e37_6c08, 0x2748_774c, 0x34b0_bcb5, 0x391c_0cb3, 0x4ed8_aa4a, 0x5b9c_ca4f, 0x682e_6ff3,
        0x748f_82ee, 0x78a5_636f, 0x84c8_7814, 0x8cc7_0208, 0x90be_fffa, 0xa450_6ceb, 0xbef9_a3f7, 0xc671_78f2,
    ]
}
