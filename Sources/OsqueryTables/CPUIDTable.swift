import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

/// osquery's cpuid table. Swift has no `cpuid` instruction without C, so the registers come
/// from the kernel's cpuid driver (/dev/cpu/0/cpuid: a 16-byte read at offset ecx << 32 | eax
/// returns eax, ebx, ecx, edx), which needs root and CONFIG_X86_CPUID.
enum CPUIDTable {
    /// (input eax, [(feature, register, bit)]) in osquery's order.
    static let features: [(UInt32, [(String, String, Int)])] = [
        (1, [
            ("pae", "edx", 6), ("msr", "edx", 5), ("sep", "edx", 11), ("mtrr", "edx", 12), ("pge", "edx", 13),
            ("mca", "edx", 14), ("pat", "edx", 16), ("clfsh", "edx", 19), ("acpi", "edx", 22), ("mmz", "edx", 23),
            ("sse", "edx", 25), ("sse2", "edx", 26), ("ss", "edx", 27), ("htt", "edx", 28), ("ia64", "edx", 30),
            ("sse3", "ecx", 0), ("vmx", "ecx", 5), ("smx", "ecx", 6), ("ssse3", "ecx", 9), ("sdbg", "ecx", 11),
            ("pdcm", "ecx", 15), ("pcid", "ecx", 17), ("dca", "ecx", 18), ("sse4.1", "ecx", 19), ("sse4.2", "ecx", 20),
            ("aes", "ecx", 25), ("avx", "ecx", 28), ("hypervisor", "ecx", 31),
        ]),
        (7, [
            ("sgx", "ebx", 2), ("hle", "ebx", 4), ("avx2", "ebx", 5), ("smep", "ebx", 7), ("bmi2", "ebx", 8),
            ("erms", "ebx", 9), ("invpcid", "ebx", 10), ("rtm", "ebx", 11), ("pqm", "ebx", 12), ("mpx", "ebx", 14),
            ("pqe", "ebx", 15), ("avx512f", "ebx", 16), ("avx512dq", "ebx", 17), ("rdseed", "ebx", 18), ("adx", "ebx", 19),
            ("smap", "ebx", 20), ("intel_pt", "ebx", 25), ("sha", "ebx", 29),
            ("umip", "ecx", 2), ("pku", "ecx", 3), ("ospke", "ecx", 4), ("gfni", "ecx", 8), ("vaes", "ecx", 9),
            ("sgx_lc", "ecx", 30), ("spec_ctrl", "edx", 26),
        ]),
        (0x8000_0001, [
            ("lahfsahf", "ecx", 0), ("svm", "ecx", 2), ("3dnowprefetch", "ecx", 8), ("ibs", "ecx", 10), ("skinit", "ecx", 12),
            ("lwp", "ecx", 15), ("nx", "edx", 20), ("page1gb", "edx", 26), ("lm", "edx", 29),
        ]),
    ]

    static func hex8(_ v: UInt32) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 8 - s.count) + s
    }

    static func cpuid(flags: Flags, device: String = "/dev/cpu/0/cpuid", log: OnceLog = OnceLog()) -> FunctionTable {
        table("cpuid", [
            col("feature", .text), col("value", .text), col("output_register", .text), col("output_bit", .integer),
            col("input_eax", .text),
        ]) { _, schema in
            var rows = TableRows(schema: schema)
            // A character device: opened non-blocking, each read a fixed 16 bytes.
            let fd = open(device, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
            guard fd >= 0 else {
                log.info("cpuid: \(device) cannot be opened (it needs root and the kernel's cpuid driver)")
                return rows
            }
            defer { close(fd) }
            var st = stat()
            guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFCHR else {
                log.info("cpuid: \(device) is not the cpuid driver's device")
                return rows
            }
            func registers(_ eax: UInt32, _ ecx: UInt32 = 0) -> [UInt32] {
                var regs = [UInt32](repeating: 0, count: 4)
                let n = regs.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 16, off_t(Int64(bitPattern: UInt64(ecx) << 32 | UInt64(eax)))) }
                return n == 16 ? regs : [0, 0, 0, 0]
            }
            func ascii(_ regs: [UInt32]) -> String {
                var bytes: [UInt8] = []
                for r in regs { for i in 0..<4 { bytes.append(UInt8((r >> (8 * UInt32(i))) & 0xFF)) } }
                // The brand string is NUL-padded to 48 bytes; SQL text stops at the first NUL.
                if let nul = bytes.firstIndex(of: 0) { bytes.removeSubrange(nul...) }
                return String(decoding: bytes, as: UTF8.self)
            }
            func add(_ feature: String, _ value: String, _ register: String, _ bit: Int, _ eax: String) {
                rows.append(.text(feature))
                rows.append(.text(value))
                rows.append(.text(register))
                rows.append(.integer(Int64(bit)))
                rows.append(.text(eax))
            }
            let leaf0 = registers(0)
            guard Int32(bitPattern: leaf0[0]) >= 1 else {
                log.info("cpuid: failed to run cpuid")
                return rows
            }
            add("vendor", ascii([leaf0[1], leaf0[3], leaf0[2]]), "ebx,edx,ecx", 0, "0")
            let brand = (0..<3).flatMap { registers(0x8000_0002 + UInt32($0)) }
            add("product_name", ascii(brand), "eax,ebx,ecx,edx", 0, "0x80000002")
            let hypervisor = registers(0x4000_0000)
            // osquery tests `eax && 0xFF000000 != 0`: any non-zero eax.
            if hypervisor[0] != 0 {
                add("hypervisor_id", hex8(hypervisor[0]) + hex8(hypervisor[1]) + hex8(hypervisor[2]), "ebx,ecx,edx", 0, "0x40000000")
            }
            let leaf1 = registers(1), leaf3 = registers(3)
            add("serial", hex8(leaf1[0]) + hex8(leaf3[0]) + hex8(leaf3[3]), "eax,eax,ecx", 0, "1,3")
            let family = String(leaf1[0] & 0xF00, radix: 16)
            add("family", String(repeating: "0", count: max(0, 4 - family.count)) + family, "eax", 0, "1")
            for (eax, list) in features {
                let regs = registers(eax)
                for (name, register, bit) in list {
                    let index = register == "edx" ? 3 : register == "ebx" ? 1 : register == "ecx" ? 2 : 0
                    add(name, regs[index] & (1 << UInt32(bit)) != 0 ? "1" : "0", register, bit, String(eax))
                }
            }
            for (ecx, input) in [(UInt32(0), "18"), (1, "18,1")] {
                let regs = registers(0x12, ecx)
                add(ecx == 0 ? "sgx0" : "sgx1", regs.map(hex8).joined(), "eax,ebx,ecx,edx", 0, input)
            }
            return rows
        }
    }
}
