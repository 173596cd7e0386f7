/// A config plugin: `genConfig` returns config sources, `genPack` resolves a pack by name.
///
/// ```swift
/// let cfg = ConfigPlugin("static") { ["main": #"{"schedule":{}}"#] }
/// ```
public struct ConfigPlugin: ExtensionPlugin {
    /// The plugin's name (`--config_plugin=<name>`).
    public let name: String
    let genConfig: @Sendable () async throws -> [String: String]
    let genPack: (@Sendable (_ name: String, _ value: String) async throws -> String)?

    /// `config`.
    public var registry: String { "config" }

    /// A config plugin named `name`.
    /// - Parameters:
    ///   - name: the plugin's name (what `--config_plugin` names).
    ///   - genConfig: source name → config JSON text.
    ///   - genPack: pack name and its value in the config → pack JSON text (nil: packs unsupported).
    public init(
        _ name: String,
        genPack: (@Sendable (_ name: String, _ value: String) async throws -> String)? = nil,
        genConfig: @escaping @Sendable () async throws -> [String: String]
    ) {
        self.name = name
        self.genConfig = genConfig
        self.genPack = genPack
    }

    /// Answers `genConfig` with one row of source name → config JSON, and `genPack` with one row of
    /// pack name → pack JSON; any other action gets a failure status.
    /// - Parameter request: the core's request (`action`, and for `genPack` the pack's `name` and `value`).
    /// - Returns: the row, or a failure status (`genPack` without a `genPack` closure, an unknown action).
    /// - Throws: what `genConfig` or `genPack` throws; the extension answers the core with status 1
    ///   and the error's description.
    public func handle(_ request: PluginRequest) async throws -> PluginResponse {
        switch request.action {
        case "genConfig":
            return .ok([try await genConfig()])
        case "genPack":
            guard let genPack else { return .failure("config \(name): genPack is not supported") }
            let pack = request["name"] ?? ""
            return .ok([[pack: try await genPack(pack, request["value"] ?? "")]])
        default:
            return .failure("config \(name): unknown action \(request.action ?? "(none)")")
        }
    }
}
