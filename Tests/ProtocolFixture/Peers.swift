import Foundation

/// The checkout the tests were built from and the peers in it that the process tests run:
/// scripts/install-test-deps.sh and scripts/build-peers.sh make them.
package enum Peers {
    package static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    /// The extension written with PyPI `osquery` (Tests/Peers/python/osquery_extension.py).
    package static let pythonExtension = repo + "/Tests/Peers/python/osquery_extension.ext"
    /// The C++ libthrift client (Tests/Peers/cpp/fixture_peer; OSQ_PEERS_DIR overrides .build-peers).
    package static let cppClient = (ProcessInfo.processInfo.environment["OSQ_PEERS_DIR"] ?? repo + "/.build-peers") + "/cpp/fixture_peer"

    package struct Missing: Error, CustomStringConvertible {
        package let description: String
    }

    /// Throws, naming the first one missing, unless the Python extension, the C++ client and the
    /// Python environment are there.
    package static func require() throws {
        for path in [pythonExtension, cppClient, repo + "/.venv/bin/python3"] where !FileManager.default.fileExists(atPath: path) {
            throw Missing(description: "\(path) is missing: run scripts/install-test-deps.sh && scripts/build-peers.sh")
        }
    }
}
