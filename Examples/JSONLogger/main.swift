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

/// `s` as a JSON string literal.
func quoted(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        default:
            if u.value < 0x20 { out += "\\u00" + (u.value < 16 ? "0" : "") + String(u.value, radix: 16) } else { out.unicodeScalars.append(u) }
        }
    }
    return out + "\""
}

/// A JSON object from keys and values that are already JSON.
func object(_ fields: [(String, String)]) -> String {
    "{" + fields.map { quoted($0.0) + ":" + $0.1 }.joined(separator: ",") + "}"
}

/// The core's JSON text as it is, or as a string when it does not parse.
func embedded(_ json: String) -> String {
    (try? JSONSerialization.jsonObject(with: Data(json.utf8), options: [.fragmentsAllowed])) != nil ? json : quoted(json)
}

let logger = LoggerPlugin("jsonl", features: [.status, .event], shutdown: { await file.close() }) { record in
    let line: String
    switch record {
    case .initialize(let name): line = object([("type", quoted("init")), ("name", quoted(name))])
    case .result(let json): line = object([("type", quoted("result")), ("data", embedded(json))])
    case .snapshot(let json): line = object([("type", quoted("snapshot")), ("data", embedded(json))])
    case .event(let json): line = object([("type", quoted("event")), ("data", embedded(json))])
    case .health(let json): line = object([("type", quoted("health")), ("data", quoted(json))])
    case .status(let lines):
        for l in lines {
            try await file.write(object([
                ("type", quoted("status")), ("severity", String(l.severity.rawValue)),
                ("file", quoted(l.file)), ("line", String(l.line)), ("message", quoted(l.message)),
                ("host", quoted(l.hostIdentifier)), ("time", String(l.unixTime)),
            ]))
        }
        return
    }
    try await file.write(line)
}

await Extension("jsonl_logger", version: "1.0.0", plugins: [logger]).run()
