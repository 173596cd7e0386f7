#if canImport(Glibc)
import Glibc
#endif

enum FileOutput {
    static func standardError(_ s: String) {
        var s = s
        s.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    }
}
