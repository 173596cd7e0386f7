import Foundation
import OsqueryEngine
@testable import OsqueryManager
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Issue 14 item 14: an extension is opened once without following a link, checked through its
/// descriptor (and every directory above it), and that descriptor is what runs.
@Suite("Autoload safety")
struct AutoloadSafetyTests {
    @Test func aSymbolicLinkIsRefusedUnlessUnsafeIsAllowed() {
        let dir = TempDir()
        defer { dir.remove() }
        let target = dir.write("real.ext", "#!/bin/sh\n", mode: 0o755)
        let link = dir.file("link.ext")
        #expect(symlink(target, link) == 0)
        #expect(Autoload.launchRefusal(path: target, allowUnsafe: false) == nil)
        #expect(Autoload.launchRefusal(path: link, allowUnsafe: false) == .symbolicLink)
        let result = Autoload.parse(contents: link, logger: quietLogger)
        #expect(result.refused == [AutoloadRejection(path: link, reason: .symbolicLink)])
        #expect(Autoload.launchRefusal(path: link, allowUnsafe: true) == nil)
    }

    @Test func groupWritableAndSpecialFilesAreRefused() {
        let dir = TempDir()
        defer { dir.remove() }
        let groupWritable = dir.write("gw.ext", "#!/bin/sh\n", mode: 0o775)
        let fifo = dir.file("fifo.ext")
        #expect(mkfifo(fifo, 0o755) == 0)
        #expect(Autoload.launchRefusal(path: groupWritable, allowUnsafe: false) == .groupWritable)
        // Opened with O_PATH: checking a FIFO does not block on it.
        #expect(Autoload.launchRefusal(path: fifo, allowUnsafe: false) == .notRegularFile)
    }

    @Test func aWritableDirectoryAboveTheFileIsRefused() {
        let dir = TempDir()
        defer { dir.remove() }
        let open = dir.mkdir("open", mode: 0o777)
        dir.mkdir("open/sub", mode: 0o755)
        let below = dir.write("open/sub/x.ext", "#!/bin/sh\n", mode: 0o755)
        #expect(Autoload.launchRefusal(path: below, allowUnsafe: false) == .unsafeDirectory(open))
        let groupOpen = dir.mkdir("group", mode: 0o775)
        let inGroup = dir.write("group/y.ext", "#!/bin/sh\n", mode: 0o755)
        #expect(Autoload.launchRefusal(path: inGroup, allowUnsafe: false) == .unsafeDirectory(groupOpen))
        // A sticky world-writable directory (like /tmp) higher up is fine: nobody else can
        // rename what is below it.
        dir.mkdir("sticky", mode: 0o1777)
        dir.mkdir("sticky/own", mode: 0o755)
        let underSticky = dir.write("sticky/own/z.ext", "#!/bin/sh\n", mode: 0o755)
        #expect(Autoload.launchRefusal(path: underSticky, allowUnsafe: false) == nil)
        // A link among the directories is resolved first, then every real directory is checked.
        let alias = dir.file("alias")
        #expect(symlink(dir.file("open/sub"), alias) == 0)
        #expect(Autoload.launchRefusal(path: alias + "/x.ext", allowUnsafe: false) == .unsafeDirectory(open))
        #expect(Autoload.launchRefusal(path: below, allowUnsafe: true) == nil)
    }

    // Only root can give a directory away (CI runs as root).
    @Test(.enabled(if: getuid() == 0)) func aDirectoryOwnedByAnotherUserIsRefused() {
        let dir = TempDir()
        defer { dir.remove() }
        let theirs = dir.mkdir("theirs", mode: 0o755)
        let file = dir.write("theirs/x.ext", "#!/bin/sh\n", mode: 0o755)
        #expect(chown(theirs, 65534, 65534) == 0)
        #expect(Autoload.launchRefusal(path: file, allowUnsafe: false) == .unsafeDirectory(theirs))
    }

    /// The file is replaced after the check: what runs is still the file that was checked (a
    /// script, read by its interpreter through the descriptor, and a binary).
    @Test func replacingTheFileAfterTheCheckChangesNothing() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let ran = dir.file("ran")
        let path = dir.write("race.ext", "#!/bin/sh\necho checked > \(ran)\n", mode: 0o755)
        let swapped = dir.write("swap", "#!/bin/sh\necho replaced > \(ran)\n", mode: 0o755)
        let opened = try Autoload.open(path: path, allowUnsafe: false).get()
        #expect(rename(swapped, path) == 0)
        let pid = try ExtensionSupervisor.spawn(opened, path: path, configuration: .init(socket: "/tmp/r.em")).get()
        #expect(Self.exitStatus(pid) == 0)
        #expect(try String(contentsOfFile: ran, encoding: .utf8) == "checked\n")

        // A binary: /bin/false checked, /bin/true swapped in; false's status proves which ran.
        let binary = dir.file("bin.ext")
        try FileManager.default.copyItem(atPath: "/bin/false", toPath: binary)
        try FileManager.default.copyItem(atPath: "/bin/true", toPath: dir.file("true"))
        chmod(binary, 0o755)
        chmod(dir.file("true"), 0o755)
        let openedBinary = try Autoload.open(path: binary, allowUnsafe: false).get()
        #expect(rename(dir.file("true"), binary) == 0)
        let second = try ExtensionSupervisor.spawn(openedBinary, path: binary, configuration: .init(socket: "/tmp/r.em")).get()
        #expect(Self.exitStatus(second) == 1)
    }

    /// A link swapped in for a checked extension between two launches is refused at the relaunch.
    @Test func aLinkSwappedInIsRefusedAtRelaunch() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let path = dir.write("swap.ext", "#!/bin/sh\nexit 3\n", mode: 0o755)
        let elsewhere = dir.write("elsewhere", recordingScript, mode: 0o755)
        let supervisor = ExtensionSupervisor(
            paths: [path], configuration: .init(socket: "/tmp/l.em", initialBackoff: .milliseconds(100)), logger: quietLogger)
        supervisor.start()
        try await alwaysStopping(supervisor) {
            #expect(await eventually { (supervisor.children.first?.launchCount ?? 0) >= 1 })
            #expect(unlink(path) == 0 && symlink(elsewhere, path) == 0)
            #expect(await eventually { supervisor.children.first?.refusal == .symbolicLink })
            #expect(!FileManager.default.fileExists(atPath: dir.file("record")))
            await supervisor.stop(grace: .seconds(2))
        }
    }

    /// The exit status of a child of this process, waited for (it has already exited or is about to).
    static func exitStatus(_ pid: Int32) -> Int32? {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { return nil }
        }
        return status & 0x7f == 0 ? (status >> 8) & 0xff : nil
    }
}

/// Issue 14 item 15: the shell's fallback socket directory in a world-writable place must be
/// this user's own, private directory.
@Suite("Socket directory")
struct SocketDirectoryTests {
    static func refusal(_ path: String) -> String? {
        do {
            try ExtensionsRuntime.privateDirectory(path)
            return nil
        } catch {
            return error.description
        }
    }

    @Test func aMissingDirectoryIsCreatedPrivate() {
        let dir = TempDir()
        defer { dir.remove() }
        let fresh = dir.file("osquery-\(getuid())")
        #expect(Self.refusal(fresh) == nil)
        var st = stat()
        #expect(lstat(fresh, &st) == 0 && st.st_mode & 0o7777 == 0o700 && st.st_mode & S_IFMT == S_IFDIR)
        #expect(Self.refusal(fresh) == nil)
    }

    @Test func hostileDirectoriesAreRefused() {
        let dir = TempDir()
        defer { dir.remove() }
        let own = dir.mkdir("own", mode: 0o700)
        let link = dir.file("link")
        #expect(symlink(own, link) == 0)
        #expect(Self.refusal(link)?.hasSuffix("it is a symbolic link") == true)
        let file = dir.write("file", "x", mode: 0o600)
        #expect(Self.refusal(file)?.hasSuffix("it is not a directory") == true)
        let open = dir.mkdir("open", mode: 0o755)
        #expect(Self.refusal(open)?.hasSuffix("group or others may use it (mode 755)") == true)
        let sticky = dir.mkdir("sticky", mode: 0o1777)
        #expect(Self.refusal(sticky)?.hasSuffix("group or others may use it (mode 1777)") == true)
        if getuid() == 0 {
            let theirs = dir.mkdir("theirs", mode: 0o700)
            #expect(chown(theirs, 65534, 65534) == 0)
            #expect(Self.refusal(theirs)?.hasSuffix("it is owned by uid 65534") == true)
        }
        #expect(Self.refusal(own) == nil)
    }

    /// The shell falls back to `$TMPDIR/osquery-<uid>` when the home directory is not usable;
    /// made in advance as a link to someone else's directory, it is refused with a clear error
    /// and nothing is created through it. Made by us, private, it is used.
    @Test func aPlantedFallbackDirectoryIsRefused() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let elsewhere = dir.mkdir("elsewhere", mode: 0o777)
        let planted = dir.file("osquery-\(getuid())")
        #expect(symlink(elsewhere, planted) == 0)
        // /proc: no directory can be made there, not even by root.
        #expect(throws: ManagerError.self) {
            try ExtensionsRuntime.socketPath(flags: Flags(), shell: true, home: "/proc", temporaryDirectory: dir.path + "/")
        }
        do {
            _ = try ExtensionsRuntime.socketPath(flags: Flags(), shell: true, home: "/proc", temporaryDirectory: dir.path + "/")
        } catch {
            #expect(error.description == "Refusing the extensions socket directory \(planted): it is a symbolic link")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: elsewhere).isEmpty)
        #expect(unlink(planted) == 0)
        let path = try ExtensionsRuntime.socketPath(flags: Flags(), shell: true, home: "/proc", temporaryDirectory: dir.path + "/")
        #expect(path == planted + "/shell.em")
        var st = stat()
        #expect(lstat(planted, &st) == 0 && st.st_mode & 0o7777 == 0o700)
    }
}
