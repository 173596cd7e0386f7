import Foundation
import Logging
import OsqueryEngine
import OsqueryProtocol
import ThriftCodec
import Synchronization

/// Activates plugins named by `--config_plugin` and `--logger_plugin` that an
/// extension serves: waits for the extension to register them, then does what
/// osquery does (protocol.md §3.3, §3.4).
///
/// - config: `{"action":"genConfig"}`; each source's `options` are applied to
///   flags that the command line did not set (CLI-only flags are left alone).
/// - logger: `{"init": <binary>}`, then `{"action":"features"}`, whose bitmask
///   comes back in `status.code` (1 = status logs, 2 = events); status lines go
///   only to loggers that asked for them, as `{"status":"true","log":"[...]"}`.
public final class PluginActivation: Sendable {
    /// Loggers that asked for status lines, by name.
    public let statusLoggers: [String]
    /// The config sources the config plugin returned (source name → JSON text).
    public let configSources: [String: String]
    let forwarding: Task<Void, Never>?
    let queue: AsyncStream<String>.Continuation?
    let distributed: Task<Void, Never>?

    init(
        statusLoggers: [String], configSources: [String: String], forwarding: Task<Void, Never>?,
        queue: AsyncStream<String>.Continuation?, distributed: Task<Void, Never>?
    ) {
        self.statusLoggers = statusLoggers
        self.configSources = configSources
        self.forwarding = forwarding
        self.queue = queue
        self.distributed = distributed
    }

    /// Stops forwarding status lines and polling for distributed queries.
    public func stop() {
        StatusLog.setForwarder(nil)
        queue?.finish()
        distributed?.cancel()
    }

    /// - Parameter loadConfig: false when the caller loads the config itself
    ///   (osqueryd's config loader): the config plugin is then only waited for.
    static func activate(
        service: ManagerService, registry: PluginRegistry, flags: Flags, binary: String, timeout: Duration,
        loadConfig: Bool = true, logger: Logger
    ) async -> PluginActivation {
        var sources: [String: String] = [:]
        let configName = flags[.configPlugin]
        if let uuid = await owner(of: configName, in: "config", registry: registry, timeout: timeout), loadConfig {
            do {
                let response = try await service.caller.call(
                    uuid: uuid, registry: "config", item: ThriftString(configName), request: ["action": "genConfig"])
                if response.status.isSuccess, let first = response.response.first {
                    for entry in first.entries { sources[entry.key.lossyString] = entry.value.lossyString }
                    applyOptions(sources, flags: flags, logger: logger)
                } else {
                    logger.error("config plugin \(configName) failed: \(response.status.message)")
                }
            } catch {
                logger.error("config plugin \(configName): \(error)")
            }
        }

        var statusLoggers: [(name: String, uuid: ExtensionRouteUUID)] = []
        let loggers = flags[.disableLogging] ? [] : flags[.loggerPlugin].split(separator: ",")
        for name in loggers.map({ String($0).trimmingCharacters(in: .whitespaces) }) where !name.isEmpty {
            guard let uuid = await owner(of: name, in: "logger", registry: registry, timeout: timeout) else { continue }
            let item = ThriftString(name)
            _ = try? await service.caller.call(uuid: uuid, registry: "logger", item: item, request: ["init": ThriftString(binary)])
            let features = (try? await service.caller.call(
                uuid: uuid, registry: "logger", item: item, request: ["action": "features"]))?.status.code ?? 0
            // The bitmask travels in status.code, so a generic failure (code 1,
            // what the Go and Python SDKs answer) means "send me status logs".
            if features & 1 != 0 { statusLoggers.append((name, uuid)) }
        }

        var distributed: Task<Void, Never>?
        let distributedName = flags[.distributedPlugin]
        // `tls` is the daemon's own (TLS remote API), never an extension's.
        if !flags[.disableDistributed], distributedName != "tls",
            let uuid = await owner(of: distributedName, in: "distributed", registry: registry, timeout: timeout)
        {
            let loop = DistributedLoop(
                caller: service.caller, queries: service.queries, uuid: uuid, plugin: ThriftString(distributedName),
                interval: .seconds(Int64(clamping: max(1, flags[.distributedInterval]))), logger: logger)
            distributed = Task { await loop.run() }
        }

        guard !statusLoggers.isEmpty else {
            return PluginActivation(
                statusLoggers: [], configSources: sources, forwarding: nil, queue: nil, distributed: distributed)
        }
        // Status lines are forwarded in order from one task; a full queue drops
        // lines rather than blocking whoever logs.
        let (stream, continuation) = AsyncStream<String>.makeStream(bufferingPolicy: .bufferingNewest(1000))
        let host = ProcessInfo.processInfo.hostName
        StatusLog.setForwarder { severity, message, file, line in
            let now = Date()
            let entry: [String: Any] = [
                "s": severity.rawValue, "f": file, "i": Int(line), "m": message, "h": host,
                "c": asciiTime(now), "u": Int(now.timeIntervalSince1970),
            ]
            if let data = try? JSONSerialization.data(withJSONObject: [entry], options: [.sortedKeys]) {
                continuation.yield(String(decoding: data, as: UTF8.self))
            }
        }
        let targets = statusLoggers
        let caller = service.caller
        let task = Task {
            for await log in stream {
                for target in targets {
                    _ = try? await caller.call(
                        uuid: target.uuid, registry: "logger", item: ThriftString(target.name),
                        request: ["status": "true", "log": ThriftString(log)])
                }
            }
        }
        return PluginActivation(
            statusLoggers: targets.map(\.name), configSources: sources, forwarding: task, queue: continuation,
            distributed: distributed)
    }

    /// osquery's built-in config and logger plugins: never waited for.
    static let builtIn: [String: Set<String>] = [
        "config": ["filesystem", "tls", "update"],
        "logger": ["filesystem", "tls", "syslog", "stdout", "aws_kinesis", "aws_firehose", "kafka_producer"],
        "distributed": ["tls"],
    ]

    /// The uuid of the extension serving `name` in `registryName`, waiting up to
    /// `timeout` for it to register; nil for the core's own plugins or none.
    static func owner(of name: String, in registryName: String, registry: PluginRegistry, timeout: Duration) async
        -> ExtensionRouteUUID?
    {
        guard !name.isEmpty, !name.contains(","), builtIn[registryName]?.contains(name) != true else { return nil }
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while true {
            if let item = registry.item(registry: registryName, name: name) {
                return item.ownerUUID == 0 ? nil : ExtensionRouteUUID(item.ownerUUID)
            }
            if clock.now >= deadline { return nil }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Applies each source's `options` (sources in name order, as osquery
    /// merges them) through the engine's one implementation of the rules.
    static func applyOptions(_ sources: [String: String], flags: Flags, logger: Logger) {
        for source in sources.keys.sorted() {
            guard let data = sources[source]?.data(using: .utf8),
                let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
            else {
                logger.error("config source \(source) is not a JSON object")
                continue
            }
            guard let options = object["options"] as? [String: Any] else { continue }
            // JSONSerialization loses member order; name order keeps runs repeatable.
            let values = options.sorted(by: { $0.key < $1.key }).map { (name: $0.key, value: optionValue($0.value)) }
            ConfigOptions.apply(values, to: flags) { logger.warning("\($0)") }
        }
    }

    /// Foundation's JSON value as the option value it was written as.
    static func optionValue(_ raw: Any) -> ConfigOptionValue {
        switch raw {
        case let s as String: return .string(s)
        case is NSNull: return .null
        case let n as NSNumber:
            // A JSON boolean arrives as an NSNumber of Objective-C type 'c'.
            if String(cString: n.objCType) == "c" { return .bool(n.boolValue) }
            if let i = Int64(exactly: n) { return .int(i) }
            if let u = UInt64(exactly: n) { return .uint(u) }
            return .double(n.doubleValue)
        default:
            if JSONSerialization.isValidJSONObject(raw),
                let data = try? JSONSerialization.data(withJSONObject: raw, options: [.sortedKeys, .withoutEscapingSlashes])
            {
                return .json(String(decoding: data, as: UTF8.self))
            }
            return .null
        }
    }

    static func asciiTime(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "EEE MMM d HH:mm:ss yyyy 'UTC'"
        return formatter.string(from: date)
    }
}
