import Foundation
import OsqueryEngine
import ProtocolFixture
import Testing

/// The README's "Your first extension", done as a stranger would: a package made by
/// `swift package init`, the README's files written over it, the SDK resolved by the README's URL
/// and version from a tagged `file://` mirror of this repository's HEAD, then `swift build` and
/// `swift test`. A README whose files do not build, whose version does not resolve, or whose
/// test pattern crashes fails here.
@Suite struct DependentPackageTests {
    @Test func readmePackageBuildsAndPassesAgainstATaggedMirror() async throws {
        let readme = try String(contentsOf: Shipping.repoRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let files = Shipping.readmeFiles(readme)
        #expect(files.map(\.path).sorted() == [
            "Package.swift", "Sources/Hello/Hello.swift", "Sources/hello-extension/main.swift",
            "Tests/HelloTests/HelloTests.swift",
        ])
        let manifest = try #require(files.first { $0.path == "Package.swift" }?.text)
        let dependency = try #require(Shipping.sdkDependency(in: manifest), "the README's Package.swift names no SDK URL and version")
        #expect(!dependency.url.contains("<"), "the README's URL is a placeholder")

        // Kept between runs (under .build, so never committed): the dependencies' checkouts and
        // object files, so a second run compiles only what changed.
        let work = Shipping.repoRoot.appendingPathComponent(".build/shipping")
        let mirror = work.appendingPathComponent("osquery-swift.git")
        let package = work.appendingPathComponent("Hello")
        let scratch = work.appendingPathComponent("scratch")
        let fm = FileManager.default
        for stale in [mirror, package, scratch.appendingPathComponent("checkouts/osquery-swift")] {
            try? fm.removeItem(at: stale)
        }
        for entry in (try? fm.contentsOfDirectory(atPath: scratch.appendingPathComponent("repositories").path)) ?? []
        where entry.hasPrefix("osquery-swift") {
            try? fm.removeItem(at: scratch.appendingPathComponent("repositories/\(entry)"))
        }
        try fm.createDirectory(at: package, withIntermediateDirectories: true)
        let log = work.appendingPathComponent("log.txt")

        // The mirror: HEAD of this repository, tagged with the README's version.
        try await Shipping.run("git", ["init", "--quiet", "--bare", mirror.path], log: log)
        try await Shipping.run("git", ["-C", mirror.path, "fetch", "--quiet", "--update-shallow", Shipping.repoRoot.path, "HEAD"], log: log)
        try await Shipping.run("git", ["-C", mirror.path, "update-ref", "refs/heads/main", "FETCH_HEAD"], log: log)
        try await Shipping.run("git", ["-C", mirror.path, "symbolic-ref", "HEAD", "refs/heads/main"], log: log)
        try await Shipping.run("git", ["-C", mirror.path, "tag", dependency.version, "main"], log: log)

        try await Shipping.run("swift", ["package", "init", "--name", "Hello"], in: package, log: log)
        for file in files {
            let url = package.appendingPathComponent(file.path)
            try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try file.text.write(to: url, atomically: true, encoding: .utf8)
        }
        try await Shipping.run(
            "swift", ["package", "config", "set-mirror", "--original", dependency.url, "--mirror", mirror.absoluteString],
            in: package, log: log)
        // SwiftPM remembers (per user, in ~/.swiftpm) which commit a version of a package was:
        // the mirror's tag moves with HEAD, so a second run after a commit must not be refused.
        let scratchArgs = ["--scratch-path", scratch.path, "--disable-dependency-cache", "--resolver-fingerprint-checking", "warn"]
        try await Shipping.run("swift", ["build"] + scratchArgs, in: package, log: log)
        let (status, output) = try await Shipping.run("swift", ["test"] + scratchArgs, in: package, log: log, check: false)
        #expect(status == 0, "swift test failed:\n\(output)")
        #expect(output.contains("answersByN"), "the README's test did not run:\n\(output)")
    }
}

/// Shared by the shipping tests: the repository, and running tools with their output in a log.
enum Shipping {
    struct Failed: Error, CustomStringConvertible {
        let description: String
    }

    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// The files the README shows as "`path`:" followed by a swift block.
    static func readmeFiles(_ readme: String) -> [(path: String, text: String)] {
        var files: [(path: String, text: String)] = []
        let lines = readme.split(separator: "\n", omittingEmptySubsequences: false)
        var i = 0
        while i + 2 < lines.count {
            let line = lines[i]
            if line.hasPrefix("`"), line.hasSuffix("`:"), lines[i + 1].isEmpty, lines[i + 2] == "```swift" {
                let path = String(line.dropFirst().dropLast(2))
                var body: [Substring] = []
                var j = i + 3
                while j < lines.count, lines[j] != "```" {
                    body.append(lines[j])
                    j += 1
                }
                files.append((path, body.joined(separator: "\n") + "\n"))
                i = j
            }
            i += 1
        }
        return files
    }

    /// The URL and the lowest version of the manifest's `.package(url:…)` line.
    static func sdkDependency(in manifest: String) -> (url: String, version: String)? {
        guard let line = manifest.split(separator: "\n").first(where: { $0.contains(".package(url:") }) else { return nil }
        let quoted = line.split(separator: "\"", omittingEmptySubsequences: false)
        guard quoted.count >= 5 else { return nil }
        return (String(quoted[1]), String(quoted[3]))
    }

    /// Runs `tool` (found on PATH) in `directory`, its output appended to `log`; returns the exit
    /// status and this run's output. Throws on a non-zero status when `check` is set.
    /// posix_spawn and a blocking `waitpid` for this child, not Foundation's `Process`: a tool that
    /// leaves a daemon behind (`osqueryctl start`) exited without `Process` ever noticing.
    @discardableResult
    static func run(
        _ tool: String, _ arguments: [String], in directory: URL? = nil, log: URL, check: Bool = true,
        environment: [String: String] = [:]
    ) async throws -> (Int32, String) {
        try await offPool {
            // A file, not a pipe: a build writes more than a pipe holds, on both streams.
            let fd = open(log.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw Failed(description: "cannot open \(log.path)") }
            defer { close(fd) }
            let start = lseek(fd, 0, SEEK_END)
            let header = "$ \(tool) \(arguments.joined(separator: " "))\n"
            _ = header.withCString { write(fd, $0, strlen($0)) }

            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_adddup2(&actions, fd, 1)
            posix_spawn_file_actions_adddup2(&actions, fd, 2)
            Spawn.closeInheritedDescriptors(in: &actions)
            let env = ProcessInfo.processInfo.environment.merging(environment) { _, b in b }.map { "\($0.key)=\($0.value)" }
            // env -C: glibc's posix_spawn_file_actions_addchdir_np is not in Swift's Glibc module.
            let chdir = directory.map { ["-C", $0.path] } ?? []
            let argv = (["/usr/bin/env"] + chdir + [tool] + arguments).map { strdup($0) } + [nil]
            let envp = env.map { strdup($0) } + [nil]
            defer { for p in argv + envp { free(p) } }
            var pid: pid_t = 0
            let rc = posix_spawn(&pid, "/usr/bin/env", &actions, nil, argv, envp)
            guard rc == 0 else { throw Failed(description: "cannot start \(tool): \(String(cString: strerror(rc)))") }
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            // WIFEXITED / WEXITSTATUS; a signal reads as 128 + its number, as in a shell.
            let exit = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)

            let reader = try FileHandle(forReadingFrom: log)
            defer { try? reader.close() }
            try reader.seek(toOffset: UInt64(max(start, 0)))
            let text = String(decoding: reader.readDataToEndOfFile(), as: UTF8.self)
            if check && exit != 0 {
                throw Failed(description: "\(tool) \(arguments.joined(separator: " ")) exited \(exit):\n\(text.suffix(6000))")
            }
            return (exit, text)
        }
    }
}
