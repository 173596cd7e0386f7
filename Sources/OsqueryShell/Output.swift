#if canImport(Glibc)
import Glibc
#endif

/// Where the shell writes: real file descriptors, or closures in tests.
public struct ShellIO: Sendable {
    public var out: @Sendable (String) -> Void
    public var err: @Sendable (String) -> Void
    /// Output already in UTF-8 bytes (a large result table), written without a `String` copy;
    /// nil sends everything through `out`.
    public var outBytes: (@Sendable (UnsafeRawBufferPointer) -> Void)?

    public init(
        out: @escaping @Sendable (String) -> Void, err: @escaping @Sendable (String) -> Void,
        outBytes: (@Sendable (UnsafeRawBufferPointer) -> Void)? = nil
    ) {
        self.out = out
        self.err = err
        self.outBytes = outBytes
    }

    /// stdout and stderr of the process.
    public static let standard = ShellIO(out: { writeAll(1, $0) }, err: { writeAll(2, $0) }, outBytes: { writeAll(1, $0) })

    /// Write bytes to a file descriptor, all of them unless it fails.
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress else { return }
        var offset = 0
        while offset < bytes.count {
            let n = write(fd, base + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                return
            }
            offset += n
        }
    }

    /// Write a whole string to a file descriptor.
    public static func writeAll(_ fd: Int32, _ text: String) {
        var s = text
        s.withUTF8 { writeAll(fd, UnsafeRawBufferPointer($0)) }
    }
}
