/// Minimal JSON writing helpers (rapidjson-compatible escaping: `"` `\\` and
/// control characters are escaped, `/` and non-ASCII are written as-is).
public enum JSON {
    public static func appendString(_ s: String, to out: inout String) {
        out.append("\"")
        var needsEscape = false
        for b in s.utf8 where b < 0x20 || b == 0x22 || b == 0x5c {
            needsEscape = true
            break
        }
        if !needsEscape {
            out.append(s)
            out.append("\"")
            return
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(s.utf8.count + 8)
        let hex: [UInt8] = Array("0123456789ABCDEF".utf8)
        for b in s.utf8 {
            switch b {
            case 0x22: bytes += [0x5c, 0x22]
            case 0x5c: bytes += [0x5c, 0x5c]
            case 0x08: bytes += [0x5c, UInt8(ascii: "b")]
            case 0x0c: bytes += [0x5c, UInt8(ascii: "f")]
            case 0x0a: bytes += [0x5c, UInt8(ascii: "n")]
            case 0x0d: bytes += [0x5c, UInt8(ascii: "r")]
            case 0x09: bytes += [0x5c, UInt8(ascii: "t")]
            case 0..<0x20:
                bytes += [0x5c, UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(b >> 4)], hex[Int(b & 0xf)]]
            default: bytes.append(b)
            }
        }
        out.append(String(decoding: bytes, as: UTF8.self))
        out.append("\"")
    }

    public static func quoted(_ s: String) -> String {
        var out = ""
        appendString(s, to: &out)
        return out
    }
}
