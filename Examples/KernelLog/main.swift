// An event table osquery does not have: kernel log records (/dev/kmsg) as they are written.
import OsqueryExtension
import Foundation

let environment = ProcessInfo.processInfo.environment
let events = EventTable(
    "kernel_log_events",
    columns: [
        .integer("facility", description: "Syslog facility (0: kernel)"),
        .integer("priority", description: "Syslog priority, 0 (emergency) to 7 (debug)"),
        .bigint("sequence", description: "The record's kmsg sequence number"),
        .bigint("uptime_usec", description: "Microseconds since boot when it was logged"),
        .text("message", description: "The message"),
    ],
    documentation: TableDocumentation(
        description: "Kernel log records (/dev/kmsg), one event each.",
        examples: ["select priority, message from kernel_log_events where priority <= 3"]),
    options: EventTableOptions(stateDirectory: environment["KERNEL_LOG_STATE"] ?? EventTableOptions.defaultStateDirectory))

/// Adds the records of `path` past the last one added, in this run or (the state file's cursor:
/// the boot's id and a sequence, as sequences restart at boot) a previous one. /dev/kmsg replays
/// its ring buffer at open and then blocks; a plain file is read again each second.
func follow(_ path: String, boot: String, into events: EventTable) {
    let saved = events.cursor?.split(separator: ":")
    var seen = saved?.first.map(String.init) == boot ? Int64(saved?.last ?? "") ?? -1 : -1
    var buffer = [UInt8](repeating: 0, count: 8192)
    while true {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { break }
        var pending: [UInt8] = []
        while true {
            let n = read(fd, &buffer, buffer.count)
            guard n > 0 || (n < 0 && errno == EPIPE) else { break }  // EPIPE: records were overwritten
            pending += buffer[0..<max(n, 0)]
            while let end = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[..<end], as: UTF8.self)
                pending.removeSubrange(...end)
                // `prio,seq,usec,flags;message`; continuation lines (" KEY=value") have no `;`.
                guard let semicolon = line.firstIndex(of: ";") else { continue }
                let fields = line[..<semicolon].split(separator: ",")
                guard fields.count >= 3, let prio = Int(fields[0]), let seq = Int64(fields[1]), seq > seen else { continue }
                seen = seq
                let message = line[line.index(after: semicolon)...]
                events.add(
                    ["facility": prio >> 3, "priority": prio & 7, "sequence": seq, "uptime_usec": Int64(fields[2]), "message": message],
                    cursor: "\(boot):\(seq)")
            }
        }
        close(fd)
        sleep(1)
    }
    FileHandle.standardError.write(Data("kernel_log_events: cannot read \(path)\n".utf8))
}

let boot = (try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8)) ?? ""
let path = environment["KERNEL_LOG_PATH"] ?? "/dev/kmsg"
Thread.detachNewThread { [events, path, boot] in follow(path, boot: boot.trimmingCharacters(in: .whitespacesAndNewlines), into: events) }
await Extension("kernel_log", version: "1.0.0", plugins: [events]).run()
