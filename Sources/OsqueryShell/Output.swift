#if canImport(Glibc)
import Glibc
#endif

/// Where the shell writes: real file descriptors, or closures in tests.
public struct ShellIO: Sendable {
    public var out: @Sendable (String) -> Void
    public var err: @Sendable (String) -> Void

    public init(out: @escaping @Sendable (String) -> Void, err: @escaping @Sendable (String) -> Void) {
        self.out = out
        self.err = err
    }

    /// stdout and stderr of the process.
    public static let standard = ShellIO(out: { writeAll(1, $0) }, err: { writeAll(2, $0) })

    /// Write a whole string to a file descriptor.
    public static func writeAll(_ fd: Int32, _ text: String) {
        var s = text
        s.withUTF8 { buf in
            var offset = 0
            while offset < buf.count {
                let n = write(fd, buf.baseAddress! + offset, buf.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    return
                }
                offset += n
            }
        }
    }
}
