/// A config `options` value as JSON gave it, before osquery turns it into a flag string.
public enum ConfigOptionValue: Sendable, Equatable {
    case string(String)
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    /// An object or array, already serialized as compact JSON (osquery passes its text on).
    case json(String)
    case null
}

/// Applies a config's `options` to flags, once for the daemon's config and the
/// manager's plugin activation (osquery's `options` config parser).
public enum ConfigOptions {
    /// The flag text osquery derives from an option value (nil for null:
    /// "Cannot parse unknown value type").
    public static func text(of value: ConfigOptionValue) -> String? {
        switch value {
        case .string(let s): return s
        case .bool(let b): return b ? "true" : "false"
        case .int(let v): return String(v)
        case .uint(let v): return String(v)
        case .double(let d):
            // osquery reads non-int numbers as unsigned integers; whole numbers
            // keep that meaning, fractions keep their digits instead of garbage.
            if d == d.rounded(), abs(d) < 9.0e15 { return String(Int64(d)) }
            return String(d)
        case .json(let text): return text
        case .null: return nil
        }
    }

    /// Sets each option, in order, as osquery does: a config option overrides
    /// the flag's current value, even one given on the command line or in a
    /// flagfile (osquery's documented precedence), except CLI-only flags, which
    /// are ignored with a warning. Unknown names are refused with osquery's
    /// message, unless they start with `custom_`: those are defined as string
    /// flags (visible in osquery_flags). Empty values and empty names are skipped.
    /// - Parameter warn: receives each warning line.
    public static func apply(_ options: [(name: String, value: ConfigOptionValue)], to flags: Flags, warn: (String) -> Void) {
        for (name, raw) in options {
            guard let value = text(of: raw) else {
                warn("Cannot parse unknown value type for option: \(name)")
                continue
            }
            if value.isEmpty || name.isEmpty { continue }
            if flags.definition(name) == nil {
                guard name.hasPrefix("custom_") else {
                    warn("Cannot set unknown or invalid flag: \(name)")
                    continue
                }
                flags.define(FlagDefinition(name, .string, "", "Custom option from the config", .option))
            }
            if flags.definition(name)?.kind == .cli {
                warn(
                    "The CLI only flag --\(name) set via config file will be ignored, please use a flagfile or pass it to the process at startup"
                )
                continue
            }
            do {
                try flags.set(name, value)
            } catch {
                warn("Cannot set flag \(name) from the config: \(error.message)")
            }
        }
    }
}
