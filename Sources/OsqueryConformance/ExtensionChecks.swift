import Foundation

/// Runs an extension binary against the kit's reference manager and checks it.
public struct ExtensionConformance: Sendable {
    public let command: [String]
    public init(command: [String]) { self.command = command }

    public func run(echo: (@Sendable (CheckResult) -> Void)? = nil) async -> Report {
        let rec = Recorder(mode: "extension", echo: echo)
        rec.fail("extension.todo", "§6", "not implemented yet")
        return rec.current
    }
}
