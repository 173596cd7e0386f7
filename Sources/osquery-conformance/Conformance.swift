import ArgumentParser
import Foundation
import OsqueryConformance

@main
struct Conformance: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "osquery-conformance",
        abstract: "Checks an osquery core or extension against osquery's extension protocol from outside.",
        subcommands: [Core.self, Extension.self]
    )
}

struct Output: ParsableArguments {
    @Flag(help: "Print the report as JSON.") var json = false

    func emit(_ report: Report) -> Never {
        FileHandle.standardOutput.write(Data((json ? report.json : report.text).utf8))
        Foundation.exit(report.exitCode)
    }
}

struct Core: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check a running core through its manager socket.")
    @Option(help: "The core's --extensions_socket path.") var socket: String
    @OptionGroup var output: Output

    func run() async throws {
        output.emit(await CoreConformance(socket: socket).run())
    }
}

struct Extension: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run an extension binary against the kit's reference manager.")
    @OptionGroup var output: Output
    @Argument(parsing: .postTerminator, help: "The extension's command and arguments (after --).") var command: [String]

    func run() async throws {
        guard !command.isEmpty else { throw ValidationError("give the extension command after --") }
        output.emit(await ExtensionConformance(command: command).run())
    }
}

