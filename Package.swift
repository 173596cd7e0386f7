// swift-tools-version: 6.1
import PackageDescription

// Module map (see CONTRIBUTING.md): dependencies point one way.
//   ThriftCodec      Thrift binary protocol, no knowledge of osquery, no dependencies.
//   OsqueryProtocol  the IDL's types, typed clients and a server on Unix sockets (SwiftNIO).
// The SDK and the core both sit on OsqueryProtocol and never import each other.
let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "osquery-swift",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "ThriftCodec", targets: ["ThriftCodec"]),
        .library(name: "OsqueryProtocol", targets: ["OsqueryProtocol"]),
        .library(name: "OsqueryEngine", targets: ["OsqueryEngine"]),
        .library(name: "OsqueryTables", targets: ["OsqueryTables"]),
        .library(name: "OsqueryShell", targets: ["OsqueryShell"]),
        .executable(name: "osqueryi", targets: ["osqueryi"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
    ],
    targets: [
        // Core engine (issue 3): SQLite system library, engine, built-in tables, shell.
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .target(
            name: "OsqueryEngine",
            dependencies: ["CSQLite", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict
        ),
        .target(
            name: "OsqueryTables",
            dependencies: ["OsqueryEngine", "CSQLite", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict
        ),
        .target(name: "OsqueryShell", dependencies: ["OsqueryEngine", "OsqueryTables"], swiftSettings: strict),
        .executableTarget(name: "osqueryi", dependencies: ["OsqueryShell"], swiftSettings: strict),
        .testTarget(name: "OsqueryEngineTests", dependencies: ["OsqueryEngine"], swiftSettings: strict),
        .testTarget(name: "OsqueryTablesTests", dependencies: ["OsqueryTables", "OsqueryEngine"], swiftSettings: strict),
        .testTarget(
            name: "OsqueryShellTests",
            dependencies: ["OsqueryShell", "OsqueryEngine", "OsqueryTables"],
            swiftSettings: strict
        ),
        .target(name: "ThriftCodec", swiftSettings: strict),
        .target(
            name: "OsqueryProtocol",
            dependencies: [
                "ThriftCodec",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(name: "ThriftCodecTests", dependencies: ["ThriftCodec"], swiftSettings: strict),
        .testTarget(
            name: "OsqueryProtocolTests",
            dependencies: ["OsqueryProtocol", "ThriftCodec", "ProtocolFixture"],
            swiftSettings: strict
        ),
        // The fixture manager of Tests/Peers/FIXTURE.md, shared by the tests and the benchmarks.
        .target(name: "ProtocolFixture", dependencies: ["OsqueryProtocol"], path: "Tests/ProtocolFixture", swiftSettings: strict),
        .executableTarget(
            name: "wire-bench",
            dependencies: ["OsqueryProtocol", "ThriftCodec", "ProtocolFixture"],
            path: "Benchmarks/WireBench",
            swiftSettings: strict
        ),
    ],
    swiftLanguageModes: [.v6]
)
