// A logger plugin that appends every record as one JSON line to a file
// ($JSONL_LOGGER_PATH, default /tmp/osquery-jsonl-logger.log).
import OsqueryExtension
import Foundation

actor LineFile {
    let handle: FileHandle?
    init(path: String) {
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        handle = FileHandle(forWritingAtPath: path)
        _ = try? handle?.seekToEnd()
    }
    func write(_ line: String) throws { try handle?.write(contentsOf: Data((line + "\n").utf8)) }
    func close() { try? handle?.close() }
}

let path = ProcessInfo.processInfo.environment["JSONL_LOGGER_PATH"] ?? "/tmp/osquery-jsonl-logger.log"
let file = LineFile(path: path)

let logger = LoggerPlugin("jsonl", features: [.status, .event], shutdown: { await file.close() }) { record in
    let line: JSONValue
    switch record {
    case .initialize(let name): line = .object([("type", .string("init")), ("name", .string(name))])
    case .result(let json): line = .object([("type", .string("result")), ("data", (try? JSONValue.parse(json)) ?? .string(json))])
    case .snapshot(let json): line = .object([("type", .string("snapshot")), ("data", (try? JSONValue.parse(json)) ?? .string(json))])
    case .event(let json): line = .object([("type", .string("event")), ("data", (try? JSONValue.parse(json)) ?? .string(json))])
    case .health(let json): line = .object([("type", .string("health")), ("data", .string(json))])
    case .status(let lines):
        for l in lines {
            try await file.write(JSONValue.object([
                ("type", .string("status")), ("severity", .number(String(l.severity.rawValue))),
                ("file", .string(l.file)), ("line", .number(String(l.line))), ("message", .string(l.message)),
                ("host", .string(l.hostIdentifier)), ("time", .number(String(l.unixTime))),
            ]).serialized)
        }
        return
    }
    try await file.write(line.serialized)
}

await Extension("jsonl_logger", version: "1.0.0", plugins: [logger]).run()
