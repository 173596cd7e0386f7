#if canImport(Glibc)
public import Glibc
#endif

/// Helpers for starting child processes with posix_spawn.
public enum Spawn {
    /// Adds a close action for every descriptor above 2 that this process left inheritable (no
    /// FD_CLOEXEC). SwiftNIO accepts connections without FD_CLOEXEC, so a child started without
    /// this keeps those connections open: when the server closes one, its peer never sees the end
    /// until the child exits. glibc ignores a close action for a descriptor closed meanwhile.
    public static func closeInheritedDescriptors(in actions: inout posix_spawn_file_actions_t) {
        for name in FileIO.listDirectoryNames("/proc/self/fd") ?? [] {
            guard let fd = Int32(name), fd > 2 else { continue }
            let flags = fcntl(fd, F_GETFD)
            if flags >= 0, flags & FD_CLOEXEC == 0 { posix_spawn_file_actions_addclose(&actions, fd) }
        }
    }
}
