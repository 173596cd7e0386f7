import Glibc
import OsqueryEngine
import ProtocolFixture
import Testing

/// A child started with `Spawn.closeInheritedDescriptors` holds none of our inheritable
/// descriptors: closing our end of a pipe is seen at once by its reader while the child lives.
@Suite struct SpawnTests {
    @Test func childrenDoNotHoldOurDescriptors() async throws {
        await onOwnThread {
            var fds: [Int32] = [0, 0]
            #expect(pipe(&fds) == 0)  // inheritable on purpose, as NIO's accepted sockets are
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            Spawn.closeInheritedDescriptors(in: &actions)
            var argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/sleep"), strdup("30"), nil]
            defer { for a in argv { free(a) } }
            var child: pid_t = 0
            #expect(posix_spawn(&child, "/bin/sleep", &actions, nil, &argv, environ) == 0)
            defer {
                kill(child, SIGKILL)
                var status: Int32 = 0
                waitpid(child, &status, 0)
            }
            // The child's descriptors, once it runs sleep: none is our pipe's write end.
            for _ in 0..<500 where FileIO.readString("/proc/\(child)/cmdline")?.hasPrefix("/bin/sleep") != true {
                usleep(10_000)
            }
            let theirs = FileIO.listDirectoryNames("/proc/\(child)/fd") ?? []
            #expect(!theirs.isEmpty)
            let ourInode = inode(fds[1])
            let held = theirs.compactMap { Int32($0) }.contains { fd in
                var st = stat()
                return stat("/proc/\(child)/fd/\(fd)", &st) == 0 && st.st_ino == ourInode
            }
            #expect(!held, "the child holds our pipe")
            close(fds[1])
            var byte: UInt8 = 0
            let flags = fcntl(fds[0], F_GETFL)
            _ = fcntl(fds[0], F_SETFL, flags | O_NONBLOCK)
            #expect(read(fds[0], &byte, 1) == 0)  // end of file now, not when the child exits
            close(fds[0])
        }
    }

    func inode(_ fd: Int32) -> ino_t {
        var st = stat()
        return fstat(fd, &st) == 0 ? st.st_ino : 0
    }
}
