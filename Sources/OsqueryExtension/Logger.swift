/// What a logger advertises in its `features` answer (osquery reads the bitmask from the status code).
public struct LoggerFeatures: OptionSet, Sendable, Hashable {
    /// The bitmask as the `features` status code carries it.
    public let rawValue: Int32
    /// Features from their bitmask.
    /// - Parameter rawValue: the bitmask (1: status lines, 2: events).
    public init(rawValue: Int32) { self.rawValue = rawValue }
    /// Receive the core's status (glog) lines.
    public static let status = LoggerFeatures(rawValue: 1)
    /// Receive forwarded events.
    public static let event = LoggerFeatures(rawValue: 2)
}

/// One status (glog) line the core forwards: `{s,f,i,m,h,c,u}`.
public struct StatusLine: Sendable, Hashable {
    /// glog severity.
    public enum Severity: Int, Sendable, Hashable {
        /// `INFO` (0).
        case info = 0
        /// `WARNING` (1).
        case warning = 1
        /// `ERROR` (2).
        case error = 2
        /// `FATAL` (3).
        case fatal = 3
    }
    /// glog severity (`s`).
    public var severity: Severity
    /// Source file.
    public var file: String
    /// Source line.
    public var line: Int
    /// The message (`m`).
    public var message: String
    /// The host identifier.
    public var hostIdentifier: String
    /// The time as ASCII UTC text.
    public var calendarTime: String
    /// The time as a Unix timestamp.
    public var unixTime: Int64

    /// A status line from its fields.
    /// - Parameters:
    ///   - severity: glog severity (`s`).
    ///   - file: source file (`f`).
    ///   - line: source line (`i`).
    ///   - message: the message (`m`).
    ///   - hostIdentifier: the host identifier (`h`).
    ///   - calendarTime: the time as ASCII UTC text (`c`).
    ///   - unixTime: the time as a Unix timestamp (`u`).
    package init(
        severity: Severity, file: String = "", line: Int = 0, message: String, hostIdentifier: String = "",
        calendarTime: String = "", unixTime: Int64 = 0
    ) {
        self.severity = severity
        self.file = file
        self.line = line
        self.message = message
        self.hostIdentifier = hostIdentifier
        self.calendarTime = calendarTime
        self.unixTime = unixTime
    }

    /// Parses the `log` value of a status request: a JSON array of lines (or one object).
    /// Elements that are not objects are skipped; missing fields are empty, 0 or `.info`.
    /// - Parameter json: the request's `log` value.
    /// - Returns: the lines in order.
    /// - Throws: `JSONError` when `json` is not valid JSON.
    package static func parse(_ json: String) throws(JSONError) -> [StatusLine] {
        let doc = try JSONValue.parse(json)
        let items = doc.array ?? [doc]
        return items.compactMap { item in
            guard item.members != nil else { return nil }
            return StatusLine(
                severity: Severity(rawValue: Int(item["s"]?.int64 ?? 0)) ?? .info,
                file: item["f"]?.text ?? "", line: Int(item["i"]?.int64 ?? 0), message: item["m"]?.text ?? "",
                hostIdentifier: item["h"]?.text ?? "", calendarTime: item["c"]?.text ?? "",
                unixTime: item["u"]?.int64 ?? 0)
        }
    }
}

/// One thing a logger is asked to record.
public enum LogRecord: Sendable, Hashable {
    /// `init`: the core's binary name (`osqueryd`, `osqueryi`), once at start.
    case initialize(String)
    /// A scheduled-query result (JSON). `string_batch` arrives as one of these per element.
    case result(String)
    /// A snapshot-query result (JSON).
    case snapshot(String)
    /// Status lines (only when the logger advertised ``LoggerFeatures/status``).
    case status([StatusLine])
    /// A forwarded event (only with ``LoggerFeatures/event``).
    case event(String)
    /// A health record.
    case health(String)
}

/// A logger plugin: one function that receives every ``LogRecord``.
///
/// ```swift
/// let log = LoggerPlugin("jsonl") { record in if case .result(let json) = record { print(json) } }
/// ```
public struct LoggerPlugin: ExtensionPlugin {
    /// The plugin's name (`--logger_plugin=<name>`).
    public let name: String
    /// The features answered to `{"action":"features"}`.
    package let features: LoggerFeatures
    let body: @Sendable (LogRecord) async throws -> Void
    let onShutdown: (@Sendable () async -> Void)?

    /// `logger`.
    public var registry: String { "logger" }

    /// A logger named `name`. Status lines are requested by default; add `.event` to get events.
    /// - Parameters:
    ///   - name: the plugin's name (what `--logger_plugin` names).
    ///   - features: what the logger asks the core to send besides results.
    ///   - shutdown: called once when the extension stops (flush, close files); nil: nothing.
    ///   - log: receives every record; calls for different requests may overlap.
    public init(
        _ name: String, features: LoggerFeatures = [.status], shutdown: (@Sendable () async -> Void)? = nil,
        log: @escaping @Sendable (LogRecord) async throws -> Void
    ) {
        self.name = name
        self.features = features
        self.body = log
        self.onShutdown = shutdown
    }

    /// Runs the `shutdown` closure given at creation, if any.
    public func shutdown() async { await onShutdown?() }

    /// Answers `features` with the ``LoggerFeatures`` given at creation in the status code, and passes every other request
    /// (`init`, `string`, `string_batch` element by element, `snapshot`, `status`, `event`,
    /// `health`) to the `log` closure as a ``LogRecord``.
    /// - Parameter request: the core's request.
    /// - Returns: success, or a failure status for a request it does not know or cannot parse.
    /// - Throws: what the `log` closure throws; the extension answers the core with status 1 and
    ///   the error's description.
    public func handle(_ request: PluginRequest) async throws -> PluginResponse {
        if request.action == "features" {
            return PluginResponse(code: features.rawValue)
        }
        if let v = request["init"] {
            try await body(.initialize(v))
        } else if let v = request["string_batch"] {
            guard let items = (try? JSONValue.parse(v))?.array else {
                return .failure("logger \(name): string_batch is not a JSON array")
            }
            for item in items { try await body(.result(item.text ?? item.serialized)) }
        } else if let v = request["string"] {
            try await body(.result(v))
        } else if let v = request["snapshot"] {
            try await body(.snapshot(v))
        } else if request["status"] != nil, let v = request["log"] {
            do {
                try await body(.status(try StatusLine.parse(v)))
            } catch let e as JSONError {
                return .failure("logger \(name): cannot parse status lines: \(e)")
            }
        } else if let v = request["event"] {
            try await body(.event(v))
        } else if let v = request["health"] {
            try await body(.health(v))
        } else {
            return .failure("logger \(name): unknown request \(request.raw.keys.map(\.lossyString).sorted())")
        }
        return .ok()
    }
}
