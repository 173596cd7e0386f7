/// Version comparison for `version_compare()` and the VERSION* collations.
public enum VersionCompare {
    public enum Kind: Int, CaseIterable, Sendable {
        case semver = 0, arch, dpkg, rhel

        init?(_ name: String) {
            switch name.uppercased() {
            case "": self = .semver
            case "ARCH": self = .arch
            case "DPKG": self = .dpkg
            case "RHEL": self = .rhel
            default: return nil
            }
        }

        var collationName: String {
            switch self {
            case .semver: return "VERSION"
            case .arch: return "VERSION_ARCH"
            case .dpkg: return "VERSION_DPKG"
            case .rhel: return "VERSION_RHEL"
            }
        }
    }

    /// -1, 0 or 1.
    public static func compare(_ a: String, _ b: String, _ kind: Kind = .semver) -> Int {
        let r: Int
        switch kind {
        case .semver: r = semver(Array(a.utf8), Array(b.utf8))
        case .dpkg: r = dpkg(a, b)
        case .rhel, .arch: r = epochVersionRelease(a, b)
        }
        return r < 0 ? -1 : (r > 0 ? 1 : 0)
    }

    private static func isDigit(_ c: UInt8) -> Bool { c >= 48 && c <= 57 }
    private static func isAlpha(_ c: UInt8) -> Bool { (c >= 65 && c <= 90) || (c >= 97 && c <= 122) }
    private static func isAlnum(_ c: UInt8) -> Bool { isDigit(c) || isAlpha(c) }

    /// Compare two digit runs numerically (any length).
    private static func compareNumbers(_ x: ArraySlice<UInt8>, _ y: ArraySlice<UInt8>) -> Int {
        let a = x.drop { $0 == 48 }
        let b = y.drop { $0 == 48 }
        if a.count != b.count { return a.count < b.count ? -1 : 1 }
        for (p, q) in zip(a, b) where p != q { return p < q ? -1 : 1 }
        return 0
    }

    /// Default: split into numeric and alphabetic runs at any separator;
    /// numbers compare numerically, words lexically, a number beats a word,
    /// more segments beat fewer.
    static func semver(_ a: [UInt8], _ b: [UInt8]) -> Int {
        func segments(_ s: [UInt8]) -> [ArraySlice<UInt8>] {
            var out: [ArraySlice<UInt8>] = []
            var i = 0
            while i < s.count {
                if !isAlnum(s[i]) { i += 1; continue }
                let start = i
                let digit = isDigit(s[i])
                while i < s.count, isAlnum(s[i]), isDigit(s[i]) == digit { i += 1 }
                out.append(s[start..<i])
            }
            return out
        }
        let x = segments(a)
        let y = segments(b)
        for (p, q) in zip(x, y) {
            let pd = isDigit(p.first!)
            let qd = isDigit(q.first!)
            if pd && qd {
                let c = compareNumbers(p, q)
                if c != 0 { return c }
            } else if pd != qd {
                return pd ? 1 : -1
            } else if p != q {
                return p.lexicographicallyPrecedes(q) ? -1 : 1
            }
        }
        return x.count == y.count ? 0 : (x.count < y.count ? -1 : 1)
    }

    /// rpmvercmp.
    static func rpmvercmp(_ a: [UInt8], _ b: [UInt8]) -> Int {
        if a == b { return 0 }
        var i = 0, j = 0
        while i < a.count || j < b.count {
            while i < a.count, !isAlnum(a[i]), a[i] != 126, a[i] != 94 { i += 1 }
            while j < b.count, !isAlnum(b[j]), b[j] != 126, b[j] != 94 { j += 1 }
            // Tilde sorts before everything.
            let at = i < a.count && a[i] == 126, bt = j < b.count && b[j] == 126
            if at || bt {
                if !at { return 1 }
                if !bt { return -1 }
                i += 1; j += 1
                continue
            }
            // Caret sorts after the end but before anything else.
            let ac = i < a.count && a[i] == 94, bc = j < b.count && b[j] == 94
            if ac || bc {
                if i >= a.count { return -1 }
                if j >= b.count { return 1 }
                if !ac { return 1 }
                if !bc { return -1 }
                i += 1; j += 1
                continue
            }
            if i >= a.count || j >= b.count { break }
            let numeric = isDigit(a[i])
            let si = i, sj = j
            if numeric {
                while i < a.count, isDigit(a[i]) { i += 1 }
                while j < b.count, isDigit(b[j]) { j += 1 }
            } else {
                while i < a.count, isAlpha(a[i]) { i += 1 }
                while j < b.count, isAlpha(b[j]) { j += 1 }
            }
            if sj == j { return numeric ? 1 : -1 }
            let x = a[si..<i], y = b[sj..<j]
            if numeric {
                let c = compareNumbers(x, y)
                if c != 0 { return c }
            } else if x != y {
                return x.lexicographicallyPrecedes(y) ? -1 : 1
            }
        }
        if i >= a.count && j >= b.count { return 0 }
        return i >= a.count ? -1 : 1
    }

    /// `[epoch:]version[-release]` compared piecewise with rpmvercmp.
    static func epochVersionRelease(_ a: String, _ b: String) -> Int {
        func split(_ s: String) -> (Int, [UInt8], [UInt8]) {
            var bytes = Array(s.utf8)
            var epoch = 0
            if let colon = bytes.firstIndex(of: 58), let e = Int(String(decoding: bytes[..<colon], as: UTF8.self)) {
                epoch = e
                bytes = Array(bytes[(colon + 1)...])
            }
            if let dash = bytes.lastIndex(of: 45) {
                return (epoch, Array(bytes[..<dash]), Array(bytes[(dash + 1)...]))
            }
            return (epoch, bytes, [])
        }
        let (ea, va, ra) = split(a)
        let (eb, vb, rb) = split(b)
        if ea != eb { return ea < eb ? -1 : 1 }
        let c = rpmvercmp(va, vb)
        if c != 0 { return c }
        if ra.isEmpty || rb.isEmpty { return 0 }
        return rpmvercmp(ra, rb)
    }

    /// dpkg's verrevcmp on `[epoch:]upstream[-revision]`.
    static func dpkg(_ a: String, _ b: String) -> Int {
        func split(_ s: String) -> (Int, [UInt8], [UInt8]) {
            var bytes = Array(s.utf8)
            var epoch = 0
            if let colon = bytes.firstIndex(of: 58) {
                epoch = Int(String(decoding: bytes[..<colon], as: UTF8.self)) ?? 0
                bytes = Array(bytes[(colon + 1)...])
            }
            if let dash = bytes.lastIndex(of: 45) {
                return (epoch, Array(bytes[..<dash]), Array(bytes[(dash + 1)...]))
            }
            return (epoch, bytes, [])
        }
        func order(_ c: UInt8?) -> Int {
            guard let c else { return 0 }
            if isDigit(c) { return 0 }
            if isAlpha(c) { return Int(c) }
            if c == 126 { return -1 }
            return Int(c) + 256
        }
        func verrevcmp(_ x: [UInt8], _ y: [UInt8]) -> Int {
            var i = 0, j = 0
            while i < x.count || j < y.count {
                var firstDiff = 0
                while (i < x.count && !isDigit(x[i])) || (j < y.count && !isDigit(y[j])) {
                    let ac = order(i < x.count ? x[i] : nil)
                    let bc = order(j < y.count ? y[j] : nil)
                    if ac != bc { return ac - bc }
                    i += 1; j += 1
                }
                while i < x.count, x[i] == 48 { i += 1 }
                while j < y.count, y[j] == 48 { j += 1 }
                while i < x.count, isDigit(x[i]), j < y.count, isDigit(y[j]) {
                    if firstDiff == 0 { firstDiff = Int(x[i]) - Int(y[j]) }
                    i += 1; j += 1
                }
                if i < x.count, isDigit(x[i]) { return 1 }
                if j < y.count, isDigit(y[j]) { return -1 }
                if firstDiff != 0 { return firstDiff }
            }
            return 0
        }
        let (ea, va, ra) = split(a)
        let (eb, vb, rb) = split(b)
        if ea != eb { return ea < eb ? -1 : 1 }
        let c = verrevcmp(va, vb)
        if c != 0 { return c }
        return verrevcmp(ra, rb)
    }
}
