import Foundation
import OsqueryDaemon
import OsqueryEngine
import OsqueryEvents
import ProtocolFixture
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A core with FIM on (in-memory buffer) watching a tree the test makes.
final class FIMCore: @unchecked Sendable {  // used by one test at a time
    let dir: String
    let hub: EventHub
    let database: Database
    let publisher: INotifyPublisher

    init(_ tag: String, flags extra: [String: String] = [:], config: (String) -> EventsConfiguration) throws {
        dir = try scratchDirectory("fim-" + tag)
        let core = try startEventsCore(["disable_events": "false", "enable_file_events": "true"], extra, configuration: config(dir))
        hub = core.hub
        database = core.database
        publisher = hub.publishers.first as! INotifyPublisher
    }

    deinit {
        hub.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }

    func rows(_ filter: String = "1") -> [[String: String]] {
        (try? database.execute(
            "SELECT target_path, category, action, transaction_id, md5, sha1, sha256, hashed, inode, size, mode FROM file_events WHERE \(filter)"
        ).rowMaps(nullValue: "NULL")) ?? []
    }

    func actions(_ path: String) -> [String] {
        rows("target_path = '\(path)'").map { $0["action"]! }
    }

    func counter(_ name: String) -> Int {
        Int((try? database.strings("SELECT events FROM osquery_events WHERE name = 'inotify.\(name)'", "events").first) ?? nil ?? "") ?? -1
    }
}

func config(_ paths: [String: [String]], exclude: [String: [String]] = [:], accesses: [String] = []) -> EventsConfiguration {
    var c = EventsConfiguration()
    c.filePaths = paths
    c.excludePaths = exclude
    c.fileAccesses = accesses
    return c
}

func write(_ path: String, _ text: String) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    precondition(fd >= 0, "cannot create \(path)")
    _ = text.withCString { Glibc.write(fd, $0, strlen($0)) }
    close(fd)
}

@Suite struct FileEventsTests {
    @Test func createModifyAttributesDelete() async throws {
        let core = try FIMCore("basic") { config(["tree": [$0 + "/%%"]]) }
        let f = core.dir + "/a.txt"
        write(f, "one")
        write(f, "two")
        chmod(f, 0o600)
        unlink(f)
        #expect(await eventually { core.actions(f).contains("DELETED") })
        let actions = core.actions(f)
        #expect(actions.first == "CREATED")
        #expect(actions.contains("UPDATED"))
        #expect(actions.contains("ATTRIBUTES_MODIFIED"))
        #expect(Set(core.rows().map { $0["category"]! }) == ["tree"])
        // Nothing else is reported: every row is about the file.
        #expect(core.rows().allSatisfy { $0["target_path"] == f })
        #expect(core.rows("action = 'DELETED'").first?["hashed"] == "0")
    }

    @Test func hashesMatchTheCoreutils() async throws {
        let core = try FIMCore("hashes") { config(["tree": [$0 + "/"]]) }
        let f = core.dir + "/data.bin"
        write(f, String(repeating: "osquery file integrity monitoring ", count: 5000))
        #expect(await eventually { core.rows("target_path = '\(f)' AND action = 'UPDATED' AND hashed = 1").count >= 1 })
        let row = try #require(core.rows("target_path = '\(f)' AND action = 'UPDATED' AND hashed = 1").last)
        #expect(row["sha256"] == String(try run("sha256sum", [f]).prefix(64)))
        #expect(row["md5"] == String(try run("md5sum", [f]).prefix(32)))
        #expect(row["sha1"] == String(try run("sha1sum", [f]).prefix(40)))
        #expect(row["size"] == "170000")
        #expect(row["mode"] == "0644")
    }

    @Test func renamesArePairedWithinAndAcrossWatchedDirectories() async throws {
        let core = try FIMCore("moves") { dir in
            mkdir(dir + "/a", 0o755)
            mkdir(dir + "/b", 0o755)
            return config(["a": [dir + "/a/"], "b": [dir + "/b/"]])
        }
        let a = core.dir + "/a/", b = core.dir + "/b/"
        write(a + "one", "1")
        rename(a + "one", a + "two")
        rename(a + "two", b + "three")
        #expect(await eventually { core.actions(b + "three").contains("MOVED_TO") })
        let from1 = try #require(core.rows("target_path = '\(a)one' AND action = 'MOVED_FROM'").first)
        let to1 = try #require(core.rows("target_path = '\(a)two' AND action = 'MOVED_TO'").first)
        #expect(from1["transaction_id"] != "0")
        #expect(from1["transaction_id"] == to1["transaction_id"])
        let from2 = try #require(core.rows("target_path = '\(a)two' AND action = 'MOVED_FROM'").first)
        let to2 = try #require(core.rows("target_path = '\(b)three' AND action = 'MOVED_TO'").first)
        #expect(from2["transaction_id"] == to2["transaction_id"])
        #expect(from2["transaction_id"] != from1["transaction_id"])
        #expect(from2["category"] == "a" && to2["category"] == "b")
    }

    @Test func newSubdirectoriesUnderARecursivePatternAreWatched() async throws {
        let core = try FIMCore("recursive") { dir in
            mkdir(dir + "/old", 0o755)
            // A symlink loop under %% must not make the watcher recurse forever.
            symlink(dir, dir + "/old/loop")
            return config(["tree": [dir + "/%%"]])
        }
        write(core.dir + "/old/f", "x")
        #expect(await eventually { core.actions(core.dir + "/old/f").contains("CREATED") })
        mkdir(core.dir + "/new", 0o755)
        mkdir(core.dir + "/new/deeper", 0o755)
        #expect(await eventually { core.actions(core.dir + "/new").contains("CREATED") })
        // The watch on a new directory is added when its CREATED arrives: write until one is seen.
        var n = 0
        #expect(await eventually {
            n += 1
            write(core.dir + "/new/deeper/probe\(n)", "p")
            return core.rows("target_path LIKE '\(core.dir)/new/deeper/probe%' AND action = 'CREATED'").count > 0
        })
    }

    @Test func excludePathsAndLeafPatterns() async throws {
        let core = try FIMCore("exclude") { dir in
            mkdir(dir + "/skip", 0o755)
            return config(
                ["tree": [dir + "/%%"], "conf": [dir + "/%.conf"], "other": [dir + "/elsewhere/%%"]],
                exclude: ["tree": [dir + "/skip/%%", dir + "/ignored.txt"], "absent": [dir + "/kept.txt"]])
        }
        write(core.dir + "/ignored.txt", "i")
        write(core.dir + "/skip/inner", "s")
        write(core.dir + "/app.conf", "c")
        write(core.dir + "/kept.txt", "k")
        #expect(await eventually { core.actions(core.dir + "/kept.txt").contains("CREATED") })
        #expect(core.rows("target_path LIKE '%ignored.txt'").isEmpty)
        #expect(core.rows("target_path LIKE '%/skip/inner'").isEmpty)
        // "/dir/%.conf" matches only .conf names in its directory.
        #expect(core.rows("category = 'conf'").allSatisfy { $0["target_path"] == core.dir + "/app.conf" })
        #expect(!core.rows("category = 'conf'").isEmpty)
        // An exclude of a category not in file_paths is ignored.
        #expect(core.rows("category = 'tree' AND target_path LIKE '%kept.txt'").count > 0)
    }

    @Test func fileAccessesReportOpensAndReadsUnhashed() async throws {
        let core = try FIMCore("accesses") { dir in
            write(dir + "/secret", "s3cr3t")
            return config(["watched": [dir + "/"]], accesses: ["watched"])
        }
        let f = core.dir + "/secret"
        #expect(await eventually {
            _ = try? String(contentsOfFile: f, encoding: .utf8)
            return core.actions(f).contains("ACCESSED") && core.actions(f).contains("OPENED")
        })
        #expect(core.rows().allSatisfy { $0["hashed"] == "0" })
    }

    @Test func aFileReplacedByRenameStaysWatched() async throws {
        let core = try FIMCore("replace") { dir in
            write(dir + "/app.cfg", "v1")
            return config(["cfg": [dir + "/app.cfg"]])
        }
        let f = core.dir + "/app.cfg"
        // What editors do: write a temporary file, rename it over the original.
        write(core.dir + "/app.cfg.tmp", "v2")
        rename(core.dir + "/app.cfg.tmp", f)
        #expect(await eventually { core.actions(f).contains("MOVED_TO") })
        write(f, "v3")
        #expect(await eventually { core.rows("target_path = '\(f)' AND action = 'UPDATED' AND hashed = 1").count > 0 })
        #expect(core.rows("target_path LIKE '%.tmp'").isEmpty)
        let sha = String(try run("sha256sum", [f]).prefix(64))
        #expect(await eventually { core.rows("target_path = '\(f)' AND sha256 = '\(sha)'").count > 0 })
    }

    @Test func kernelQueueOverflowIsCountedAndLogged() async throws {
        let core = try FIMCore("overflow") { config(["tree": [$0 + "/"]]) }
        write(core.dir + "/x", "x")
        write(core.dir + "/y", "y")
        #expect(await eventually { core.actions(core.dir + "/y").contains("CREATED") })
        core.publisher.pauseReading(true)
        let limit = Int((try? String(contentsOfFile: "/proc/sys/fs/inotify/max_queued_events", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 16384
        // Alternating files: identical consecutive events would be merged by the kernel.
        for i in 0...(min(limit, 1 << 20) / 2 + 10) {
            _ = i
            utimes(core.dir + "/x", nil)
            utimes(core.dir + "/y", nil)
        }
        core.publisher.pauseReading(false)
        #expect(await eventually { core.counter("queue_overflows") >= 1 })
        // Still serving afterwards.
        write(core.dir + "/after", "a")
        #expect(await eventually { core.actions(core.dir + "/after").contains("CREATED") })
    }

    @Test func aFullHashQueueLogsEventsUnhashedAndLosesNone() async throws {
        let core = try FIMCore("hashqueue", flags: ["file_events_hash_queue_max": "1"]) { config(["tree": [$0 + "/"]]) }
        core.publisher.pauseReading(true)
        for i in 0..<200 { write(core.dir + "/f\(i)", String(repeating: "z", count: 4096)) }
        core.publisher.pauseReading(false)
        #expect(await eventually { Set(core.rows("action = 'CREATED'").map { $0["target_path"]! }).count == 200 })
        #expect(core.counter("hash_queue_overflows") > 0)
        #expect(core.rows("action = 'UPDATED' AND hashed = -1").count > 0)
    }

    @Test func hostileFilesDoNotBlockOrOverreadTheHasher() async throws {
        let core = try FIMCore("hostile", flags: ["read_max": "1000"]) { dir in
            var c = config(["tree": [dir + "/", "/" + String(repeating: "x", count: 5000), "relative/path", dir + "/%%/%%/../%"]])
            c.filePaths["empty"] = [""]
            return c
        }
        // A FIFO: opening it for reading would block; the hasher must skip it.
        mkfifo(core.dir + "/pipe", 0o644)
        let writer = open(core.dir + "/pipe", O_RDWR | O_NONBLOCK)
        defer { if writer >= 0 { close(writer) } }
        write(core.dir + "/big", String(repeating: "b", count: 5000))
        write(core.dir + "/small", "tiny")
        #expect(await eventually { core.rows("target_path = '\(core.dir)/small' AND action = 'UPDATED' AND hashed = 1").count > 0 })
        #expect(core.rows("target_path = '\(core.dir)/pipe' AND action = 'CREATED'").first?["hashed"] == "-1")
        // Bigger than --read_max: not hashed, marked failed. (Its CREATED event may be hashed
        // while the file is still empty: that is the only hash it may have.)
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        #expect(core.rows("target_path = '\(core.dir)/big' AND hashed = 1").allSatisfy { $0["sha256"] == empty })
        #expect(core.rows("target_path = '\(core.dir)/big' AND action = 'UPDATED'").allSatisfy { $0["hashed"] == "-1" })
        #expect(core.rows("target_path = '\(core.dir)/small' AND action = 'UPDATED' AND hashed = 1").last?["sha256"]
            == String(try run("sha256sum", [core.dir + "/small"]).prefix(64)))
        // The 5000-byte pattern and the relative one are refused (a status line each), and counted.
        #expect(core.counter("refused_patterns") == 2)
    }

    @Test func osqueryEventsShowsTheInotifyPublisher() async throws {
        let core = try FIMCore("status") { config(["tree": [$0 + "/"]]) }
        write(core.dir + "/s", "s")
        #expect(await eventually { core.actions(core.dir + "/s").contains("CREATED") })
        let rows = try core.database.execute("SELECT * FROM osquery_events WHERE type != 'counter'").rowMaps()
        #expect(rows.first { $0["name"] == "inotify" }?["active"] == "1")
        #expect(rows.first { $0["name"] == "inotify" }?["subscriptions"] == "1")
        #expect(rows.first { $0["name"] == "file_events" }?["active"] == "1")
        #expect(Int(rows.first { $0["name"] == "file_events" }?["events"] ?? "") ?? 0 >= 1)
        let counters = try core.database.strings("SELECT name FROM osquery_events WHERE type = 'counter' AND publisher = 'inotify'", "name")
        #expect(counters.contains("inotify.queue_overflows"))
        #expect(counters.contains("inotify.watch_limit"))
        #expect(counters.contains("inotify.hash_queue_overflows"))
        #expect(counters.contains("inotify.unreadable_paths"))
    }
}

@Suite struct FileEventsLimitsTests {
    @Test func theWatchLimitIsReportedAndCountedAndWatchedPathsStillWork() async throws {
        let core = try FIMCore("watchcap", flags: ["file_events_max_watches": "2"]) { dir in
            for d in ["a", "b", "c", "d"] { mkdir(dir + "/" + d, 0o755) }
            return config(["tree": [dir + "/%%"]])
        }
        #expect(core.counter("watch_limit") >= 1)
        // The root is watched first: its own entries are still seen.
        write(core.dir + "/top", "t")
        #expect(await eventually { core.actions(core.dir + "/top").contains("CREATED") })
    }

    /// The reader stops reading while `--file_events_queue_max` events wait for the worker and
    /// reads on once they are written: with a queue of 8, a burst of 600 events that the
    /// kernel's queue holds is logged in full, none counted lost, and the core serves on.
    @Test func aFullEventQueuePausesTheReaderAndLosesNothing() async throws {
        let core = try FIMCore("eventqueue", flags: ["file_events_queue_max": "8"]) { config(["tree": [$0 + "/"]]) }
        core.publisher.pauseReading(true)
        for i in 0..<200 { write(core.dir + "/q\(i)", "q\(i)") }
        core.publisher.pauseReading(false)
        #expect(await eventually { core.rows("action = 'CREATED'").count == 200 })
        #expect(await eventually { core.rows("action = 'UPDATED' AND hashed = 1").count == 400 })
        #expect(core.counter("queue_overflows") == 0)
        #expect(core.counter("hash_queue_overflows") == 0)
        write(core.dir + "/after", "a")
        #expect(await eventually { core.actions(core.dir + "/after").contains("CREATED") })
    }

    @Test func filePathsQueryAddsThePathsItReturns() async throws {
        let core = try FIMCore("pathsquery") { dir in
            mkdir(dir + "/q", 0o755)
            var c = EventsConfiguration()
            c.filePathsQuery = ["from_query": ["SELECT '\(dir)/q/' AS path"]]
            return c
        }
        write(core.dir + "/q/file", "q")
        #expect(await eventually { core.rows("target_path = '\(core.dir)/q/file' AND category = 'from_query'").count > 0 })
    }
}
