import Foundation

/// Executables built with the tests (osqueryi, osqueryd, the examples), found
/// next to the running test binary: the process tests of every suite use them.
package enum BuiltProducts {
    package struct Missing: Error, CustomStringConvertible {
        package let description: String
    }

    /// The path of product `name`, searching up from the test binary's directory.
    package static func path(_ name: String) throws -> String {
        var dir = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        while dir.path != "/" {
            let candidate = dir.appendingPathComponent(name).path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        throw Missing(description: "\(name) is not built: run `swift build` first")
    }
}
