@testable import OsqueryEngine
import Testing

/// The fast paths (conversion from bytes, double formatting without printf) must give exactly
/// what the reference paths give.
@Suite struct ValueFastPathTests {
    static let texts: [String] = [
        "", " ", "0", "-0", "+0", "00", "07", "08", "0x", "0x1f", "0X1F", "0xg", "-0x10", " 42", "42 ", "\t\n42",
        "42abc", "abc", "-", "+", "--1", "+-1", "1.5", "-1.5", ".5", "5.", "1e3", "1E-3", "1e", "1e+", "-.5",
        "2147483647", "2147483648", "-2147483649", "4294967296", "9223372036854775807", "9223372036854775808",
        "-9223372036854775808", "-9223372036854775809", "18446744073709551616", "0.1", "0.30000000000000004",
        "123456789012345", "1234567890123456", "12345678901234567890", "1.000000000000001", "0.000001",
        "3.14159265358979", "-3.14159265358979", "inf", "-inf", "nan", "infinity", "0x1p3", "1_000", "١٢", "é",
        "  -7.25  ", "7.25x", "1.2.3", "999999999999999", "0.999999999999999", "100", "-100.00", "0.5e1",
    ]
    static let types: [ColumnType] = [.text, .unknown, .blob, .integer, .bigint, .unsignedBigint, .double]

    @Test func bytesConvertLikeText() {
        for text in Self.texts {
            for type in Self.types {
                var copy = text
                let fast = copy.withUTF8 { SQLValue.converting(utf8: UnsafeRawBufferPointer($0), to: type) }
                #expect(sameValue(fast, SQLValue.converting(text, to: type)), "\(text.debugDescription) as \(type)")
            }
        }
    }

    @Test func invalidUTF8StaysBytesInTextAndParsesAsRepairedInNumbers() {
        let inputs: [[UInt8]] = [[0xff], [0x31, 0xff], [0xc3], [0x20, 0x35, 0x80], [0xed, 0xa0, 0x80], [0x2d, 0xff, 0x31]]
        for bytes in inputs {
            let repaired = String(decoding: bytes, as: UTF8.self)
            for type in Self.types {
                let fast = bytes.withUnsafeBytes { SQLValue.converting(utf8: $0, to: type) }
                switch type {
                case .text, .unknown, .blob: #expect(fast == .blob(bytes))
                default: #expect(sameValue(fast, SQLValue.converting(repaired, to: type)), "\(bytes) as \(type)")
                }
            }
        }
    }

    @Test func doublesFormatLikePrintf() {
        var values: [Double] = [
            0, -0.0, 1, -1, 0.5, 0.1, 0.2, 0.3, 1.0 / 3, 2.0 / 3, 100, 1e15, 1e14, 999999999999999, 1e16, 1e17, 1e21,
            1e22, 1e100, 1e-4, 1e-5, 0.0001234, 0.00001234, 123456.789, 1.5e300, .leastNonzeroMagnitude, Double.leastNormalMagnitude,
            Double.greatestFiniteMagnitude, 0.30000000000000004, 1234567890123456, 12345678901234568, .pi, -.pi,
            2.5, 1e-7, 9.999999999999999e14, 123456789012345.6, 0.000123456789012345,
        ]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            values.append(Double(bitPattern: generator.next()))
            values.append(Double(Int.random(in: -1_000_000...1_000_000)) * 0.5)
            values.append(Double(Int.random(in: -1_000_000_000...1_000_000_000)) / 1000)
            values.append(Double.random(in: -1e-3...1e-3))
        }
        // Decimals of up to 17 significant digits at every scale osqueryDecimal takes, and the
        // edges of its range.
        for _ in 0..<20_000 {
            let m = Double(UInt64.random(in: 0...999_999_999_999_999_99) >> UInt64.random(in: 0...56))
            values.append((Bool.random() ? 1 : -1) * m / SQLValue.exactPowersOfTen[Int.random(in: 0...17)])
        }
        values += [1e-4.nextDown, 1e-4.nextUp, 1e15.nextDown, 999999999999999.5, 99999999999999.95, 0.00009999999999999999]
        var fastHits = 0
        for d in values where d.isFinite {
            var expected = SQLValue.printfDouble15g(d)
            if !expected.contains(".") { expected += ".0" }
            #expect(SQLValue.osqueryDouble(d) == expected, "\(d)")
            if let (m, scale) = SQLValue.osqueryDecimal(d) {
                fastHits += 1
                #expect(fixedPoint(m, scale: scale, negative: d < 0) == expected, "\(d) as a decimal")
            }
        }
        #expect(fastHits > 40_000)  // the fast path is taken where tables need it
        #expect(SQLValue.osqueryDouble(.infinity) == SQLValue.printfDouble15g(.infinity) + ".0")
    }

    /// m·10⁻ˢᶜᵃˡᵉ in fixed notation, trailing zeros dropped, `.0` for a whole number.
    func fixedPoint(_ m: UInt64, scale: Int, negative: Bool) -> String {
        var digits = String(m)
        if digits.count <= scale { digits = String(repeating: "0", count: scale - digits.count + 1) + digits }
        var fraction = String(digits.suffix(scale))
        while fraction.hasSuffix("0") { fraction.removeLast() }
        return (negative ? "-" : "") + digits.dropLast(scale) + "." + (fraction.isEmpty ? "0" : fraction)
    }

    @Test func decimalParsingMatchesSwift() {
        var inputs = Self.texts
        for _ in 0..<20_000 {
            let digits = Int.random(in: 1...17)
            var s = Bool.random() ? "-" : ""
            let point = Int.random(in: 0...digits)
            for k in 0..<digits {
                if k == point && k > 0 { s += "." }
                s += String(Int.random(in: 0...9))
            }
            inputs.append(s)
        }
        for text in inputs {
            var copy = text
            let fast = copy.withUTF8 { SQLValue.parseDouble(UnsafeRawBufferPointer($0)) }
            let reference = Double(text.trimmingASCIIWhitespace())
            #expect(fast?.bitPattern == reference?.bitPattern, "\(text.debugDescription)")
        }
    }
}

/// Equality where NaN equals NaN with the same bits.
func sameValue(_ a: SQLValue, _ b: SQLValue) -> Bool {
    if case .double(let x) = a, case .double(let y) = b { return x.bitPattern == y.bitPattern }
    return a == b
}
