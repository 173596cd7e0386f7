#if canImport(Glibc)
import Glibc
#endif

/// gflags value types, named as osquery_flags shows them.
public enum FlagType: String, Sendable {
    case bool, int32, uint32, int64, uint64, double, string
}

/// Where a flag may be set (osquery's FLAG / CLI_FLAG / SHELL_FLAG / HIDDEN_FLAG).
public enum FlagKind: Sendable {
    case option, cli, shell, hidden, extensionOnly
}

public struct FlagDefinition: Sendable {
    public var name: String
    public var type: FlagType
    public var defaultValue: String
    public var description: String
    public var kind: FlagKind

    public init(_ name: String, _ type: FlagType, _ defaultValue: String, _ description: String, _ kind: FlagKind = .option) {
        self.name = name
        self.type = type
        self.defaultValue = defaultValue
        self.description = description
        self.kind = kind
    }
}

public struct FlagError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The result of parsing a command line.
public struct ParsedCommandLine: Sendable, Equatable {
    /// Non-flag arguments in order.
    public var positional: [String]
    /// Flags given explicitly (name → value), in the order seen.
    public var setFlags: [String]

    public init(positional: [String] = [], setFlags: [String] = []) {
        self.positional = positional
        self.setFlags = setFlags
    }
}

/// gflags-compatible flags: definitions, defaults, current values.
public final class Flags: Sendable {
    private struct State {
        var definitions: [String: FlagDefinition] = [:]
        var values: [String: String] = [:]
        var aliases: [String: String] = [:]
        /// Flags whose value was set (on the command line, flagfile or in code).
        var changed: Set<String> = []
    }

    /// Read on every call by every connection and query thread, written rarely: readers share
    /// the lock (a mutex made 64 callers queue on it).
    private let state = ReadMostly(State())

    public init(definitions: [FlagDefinition] = Flags.osqueryDefinitions) {
        state.withLock { s in
            for d in definitions { s.definitions[d.name] = d }
            s.aliases = Flags.osqueryAliases
        }
    }

    /// The process-wide flags.
    public static let shared = Flags()

    public func define(_ definition: FlagDefinition) {
        state.withLock { s in s.definitions[definition.name] = definition }
    }

    public func definition(_ name: String) -> FlagDefinition? {
        state.read { s in s.definitions[s.aliases[name] ?? name] }
    }

    /// All definitions sorted by name.
    public func allDefinitions() -> [FlagDefinition] {
        state.read { s in s.definitions.values.sorted { $0.name < $1.name } }
    }

    /// The current value of a flag named at run time (`osquery_flags`, extension options,
    /// the shell's `.show`); code reads a flag by its typed key: `flags[.verbose]`.
    public func value(named name: String) -> String {
        state.read { s in
            let n = s.aliases[name] ?? name
            return s.values[n] ?? s.definitions[n]?.defaultValue ?? ""
        }
    }

    /// Whether a flag named at run time has its default value.
    public func isDefault(named name: String) -> Bool {
        state.read { s in isDefault(s.aliases[name] ?? name, in: s) }
    }

    /// A flag's current value, typed by its key (`flags[.verbose]`); an unparsable number reads 0.
    package subscript(key: BoolFlag) -> Bool { Flags.parseBool(current(key.rawValue)) ?? false }
    package subscript(key: StringFlag) -> String { current(key.rawValue) }
    package subscript(key: IntFlag) -> Int64 { Int64(current(key.rawValue)) ?? 0 }
    package subscript(key: UIntFlag) -> UInt64 { UInt64(current(key.rawValue)) ?? 0 }

    /// Whether a flag has its default value (unset, or set to the default).
    package func isDefault(_ key: BoolFlag) -> Bool { isDefault(canonical: key.rawValue) }
    package func isDefault(_ key: StringFlag) -> Bool { isDefault(canonical: key.rawValue) }
    package func isDefault(_ key: IntFlag) -> Bool { isDefault(canonical: key.rawValue) }
    package func isDefault(_ key: UIntFlag) -> Bool { isDefault(canonical: key.rawValue) }

    /// Whether a flag was set on the command line, in a flagfile or in code.
    package func wasSet(_ key: BoolFlag) -> Bool { wasSet(canonical: key.rawValue) }
    package func wasSet(_ key: StringFlag) -> Bool { wasSet(canonical: key.rawValue) }
    package func wasSet(_ key: IntFlag) -> Bool { wasSet(canonical: key.rawValue) }
    package func wasSet(_ key: UIntFlag) -> Bool { wasSet(canonical: key.rawValue) }

    /// A key's raw value is a defined flag's own name (FlagKeyTests), never an alias, so the
    /// typed read skips the alias table.
    private func current(_ name: String) -> String {
        state.read { s in
            if let v = s.values[name] { return v }
            guard let d = s.definitions[name] else {
                assertionFailure("flag '\(name)' has no definition")
                return ""
            }
            return d.defaultValue
        }
    }

    private func isDefault(canonical name: String) -> Bool {
        state.read { s in
            assert(s.definitions[name] != nil, "flag '\(name)' has no definition")
            return isDefault(name, in: s)
        }
    }

    private func isDefault(_ name: String, in s: State) -> Bool {
        guard let v = s.values[name] else { return true }
        return v == s.definitions[name]?.defaultValue
    }

    private func wasSet(canonical name: String) -> Bool {
        state.read { s in
            assert(s.definitions[name] != nil, "flag '\(name)' has no definition")
            return s.changed.contains(name)
        }
    }

    /// Gives a flag the value the program worked out for it (osquery assigns the flag in code,
    /// as the shell's socket path): what `osquery_flags` and extensions read, but not counted as
    /// set by the user (`wasSet` stays false).
    package func assign(_ key: StringFlag, _ value: String) {
        state.withLock { s in s.values[key.rawValue] = value }
    }

    /// Set a flag, validating the value against its type.
    public func set(_ name: String, _ value: String) throws(FlagError) {
        let n = state.read { s in s.aliases[name] ?? name }
        guard let d = definition(n) else {
            throw FlagError("ERROR: unknown command line flag '\(name)'")
        }
        let normalized = try Flags.validate(value, for: d)
        state.withLock { s in
            s.values[n] = normalized
            s.changed.insert(n)
        }
    }

    /// Change a default (e.g. the shell's `disable_events=true`) without marking it set.
    package func setDefault(_ key: BoolFlag, _ value: Bool) { setDefault(canonical: key.rawValue, value ? "true" : "false") }
    package func setDefault(_ key: UIntFlag, _ value: UInt64) { setDefault(canonical: key.rawValue, String(value)) }

    private func setDefault(canonical name: String, _ value: String) {
        state.withLock { s in
            if var d = s.definitions[name] {
                d.defaultValue = value
                s.definitions[name] = d
            }
        }
    }

    /// Restore every flag to its default (tests).
    public func reset() {
        state.withLock { s in
            s.values.removeAll()
            s.changed.removeAll()
        }
    }

    static func validate(_ value: String, for d: FlagDefinition) throws(FlagError) -> String {
        switch d.type {
        case .bool:
            guard let b = parseBool(value) else {
                throw FlagError("ERROR: illegal value '\(value)' specified for bool flag '\(d.name)'")
            }
            return b ? "true" : "false"
        case .int32:
            guard let v = Int32(value.trimmingASCIIWhitespace()) else {
                throw FlagError("ERROR: illegal value '\(value)' specified for int32 flag '\(d.name)'")
            }
            return String(v)
        case .uint32:
            guard let v = UInt32(value.trimmingASCIIWhitespace()) else {
                throw FlagError("ERROR: illegal value '\(value)' specified for uint32 flag '\(d.name)'")
            }
            return String(v)
        case .int64:
            guard let v = Int64(value.trimmingASCIIWhitespace()) else {
                throw FlagError("ERROR: illegal value '\(value)' specified for int64 flag '\(d.name)'")
            }
            return String(v)
        case .uint64:
            guard let v = UInt64(value.trimmingASCIIWhitespace()) else {
                throw FlagError("ERROR: illegal value '\(value)' specified for uint64 flag '\(d.name)'")
            }
            return String(v)
        case .double:
            guard let v = Double(value.trimmingASCIIWhitespace()) else {
                throw FlagError("ERROR: illegal value '\(value)' specified for double flag '\(d.name)'")
            }
            return String(v)
        case .string:
            return value
        }
    }

    /// gflags' boolean spellings.
    public static func parseBool(_ value: String) -> Bool? {
        switch value.lowercased() {
        case "true", "t", "yes", "y", "1": return true
        case "false", "f", "no", "n", "0": return false
        default: return nil
        }
    }

    /// Parse a command line (without argv[0]): `--name=value`, `--name value`,
    /// `--name`/`--noname` for booleans, single-dash forms, `--flagfile`, `--`.
    /// Sets the flags and returns the positional arguments.
    @discardableResult
    public func parse(_ arguments: [String], readFile: (String) -> String? = Flags.readTextFile) throws(FlagError) -> ParsedCommandLine {
        var result = ParsedCommandLine(positional: [], setFlags: [])
        var i = 0
        while i < arguments.count {
            let arg = arguments[i]
            i += 1
            if arg == "--" {
                result.positional += arguments[i...]
                break
            }
            guard arg.hasPrefix("-"), arg.count > 1 else {
                result.positional.append(arg)
                continue
            }
            var body = Substring(arg.dropFirst())
            if body.hasPrefix("-") { body = body.dropFirst() }
            var name: String
            var value: String?
            if let eq = body.firstIndex(of: "=") {
                name = String(body[..<eq])
                value = String(body[body.index(after: eq)...])
            } else {
                name = String(body)
            }
            if name == "flagfile" {
                if value == nil {
                    guard i < arguments.count else { throw FlagError("ERROR: flag '--flagfile' is missing its argument") }
                    value = arguments[i]
                    i += 1
                }
                try applyFlagfile(value!, readFile: readFile, into: &result)
                continue
            }
            var d = definition(name)
            if d == nil, value == nil, name.hasPrefix("no"), let b = definition(String(name.dropFirst(2))), b.type == .bool {
                d = b
                name = b.name
                value = "false"
            }
            guard let def = d else {
                throw FlagError("ERROR: unknown command line flag '\(name)'")
            }
            if value == nil {
                if def.type == .bool {
                    value = "true"
                } else {
                    guard i < arguments.count else {
                        throw FlagError("ERROR: flag '\(arg)' is missing its argument; flag description: \(def.description)")
                    }
                    value = arguments[i]
                    i += 1
                }
            }
            try set(def.name, value!)
            result.setFlags.append(def.name)
        }
        return result
    }

    /// A flagfile: one flag a line, `#` comments, blank lines ignored.
    public func applyFlagfile(_ path: String, readFile: (String) -> String? = Flags.readTextFile, into result: inout ParsedCommandLine) throws(FlagError) {
        guard let text = readFile(path) else {
            throw FlagError("ERROR: Failed to read flagfile: \(path)")
        }
        var lines: [String] = []
        for raw in text.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            let line = String(raw).trimmingASCIIWhitespace()
            if line.isEmpty || line.hasPrefix("#") { continue }
            lines.append(line)
        }
        let nested = try parse(lines, readFile: readFile)
        result.setFlags += nested.setFlags
        // Positional words in a flagfile are ignored, as gflags does.
    }

    public static func readTextFile(_ path: String) -> String? {
        guard let bytes = FileIO.readAll(path) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}
