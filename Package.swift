// swift-tools-version: 6.1
import PackageDescription

// Module map (see docs/architecture.md): dependencies point one way.
//   OsqueryVocabulary  what tables are made of (column types, options, constraints, route info,
//                      the query context and JSON), no dependencies; the core and the SDK share it.
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
        .executable(name: "osqueryd", targets: ["osqueryd"]),
        .library(name: "OsqueryManager", targets: ["OsqueryManager"]),
        .library(name: "OsqueryDaemon", targets: ["OsqueryDaemon"]),
        // Extension SDK (issue 5): a pure client, the extension runner + plugins, and a testing kit.
        .library(name: "OsqueryClient", targets: ["OsqueryClient"]),
        .library(name: "OsqueryExtension", targets: ["OsqueryExtension"]),
        .library(name: "OsqueryExtensionTesting", targets: ["OsqueryExtensionTesting"]),
        // Protocol conformance kit (issue 6): checks any core or extension from outside.
        .library(name: "OsqueryConformance", targets: ["OsqueryConformance"]),
        .executable(name: "osquery-conformance", targets: ["osquery-conformance"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        // One lifecycle (issue 16): the daemon's parts and SDK extensions run as Services.
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        // `swift package generate-documentation --target OsqueryExtension` (the SDK's DocC catalog).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
        // TLS remote API (issue 20): HTTPS client on swift-nio-ssl, gzip request bodies.
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/adam-fowler/compress-nio.git", from: "1.5.0"),
    ],
    targets: [
        // Core engine (issue 3): SQLite system library, engine, built-in tables, shell.
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        // System tables (issue 18): the C libraries osquery's tables read with.
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CMagic", pkgConfig: "libmagic", providers: [.apt(["libmagic-dev"])]),
        // libaugeas and libtsk are opened on first use (dlopen; see their shim.h), so they take
        // no link flags from pkg-config.
        .systemLibrary(name: "CAugeas", providers: [.apt(["libaugeas-dev"])]),
        .systemLibrary(name: "CTSK", providers: [.apt(["libtsk-dev"])]),
        .systemLibrary(name: "CSystemHeaders"),
        // udev/syslog/yara events (issue 19): libyara for yara_events and the yara table.
        .systemLibrary(name: "CYara", pkgConfig: "yara", providers: [.apt(["libyara-dev"])]),
        // The table vocabulary shared by the core and the SDK (issue 16): a leaf, no dependencies.
        .target(name: "OsqueryVocabulary", swiftSettings: strict),
        .testTarget(name: "OsqueryVocabularyTests", dependencies: ["OsqueryVocabulary"], swiftSettings: strict),
        .target(
            name: "OsqueryEngine",
            // No swift-crypto: the SDK's testing kit runs this engine (its SQL hashes are Digest).
            dependencies: ["OsqueryVocabulary", "CSQLite"],
            swiftSettings: strict
        ),
        .target(
            name: "OsqueryTables",
            dependencies: [
                "OsqueryEngine", "CSQLite", .product(name: "Crypto", package: "swift-crypto"),
                "COpenSSL", "CMagic", "CAugeas", "CTSK", "CSystemHeaders",
            ],
            swiftSettings: strict
        ),
        .target(
            name: "OsqueryShell",
            dependencies: [
                "OsqueryEngine", "OsqueryTables", "OsqueryManager", "OsqueryConfig",
                "OsqueryEvents",  // events (issue 17)
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict),
        // events (issue 17): the publisher/subscriber framework, buffered event rows, FIM on inotify.
        .target(
            name: "OsqueryEvents",
            dependencies: [
                "OsqueryEngine", "CSQLite", .product(name: "Crypto", package: "swift-crypto"),
                "CYara",  // yara_events and the yara table (issue 19)
                "CSystemHeaders",  // recvmmsg for the audit netlink (issue 19)
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "OsqueryEventsTests",
            dependencies: [
                "OsqueryEvents", "OsqueryEngine", "OsqueryDaemon", "ProtocolFixture", "osqueryd", "osqueryi",
                "example-kernel-log", "OsqueryExtension",  // SDK event tables under osqueryd
            ],
            swiftSettings: strict
        ),
        // events (issue 17): FIM hashing, write-storm and buffered-SELECT benchmarks (Benchmarks/run.sh).
        .executableTarget(
            name: "fim-bench",
            dependencies: ["OsqueryEvents", "OsqueryDaemon", "OsqueryEngine", "CSQLite"],
            path: "Benchmarks/FIMBench",
            swiftSettings: strict
        ),
        // The config both programs read: JSON with positions, sources (filesystem, extension),
        // packs, the loader and --config_check/--config_dump.
        .target(
            name: "OsqueryConfig",
            dependencies: [
                "OsqueryEngine", "OsqueryTables", "OsqueryManager", "OsqueryProtocol", "ThriftCodec", "OsqueryVocabulary",
                "OsqueryEvents",  // the config's FIM keys and subscriber lists
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        // osqueryd's services (issue 8): schedule, store, differential results, loggers,
        // watchdog, and the lifecycle that runs them.
        .target(
            name: "OsqueryDaemon",
            dependencies: [
                "OsqueryEngine", "OsqueryTables", "OsqueryManager", "OsqueryProtocol", "ThriftCodec", "CSQLite",
                "OsqueryVocabulary", "OsqueryConfig",
                "OsqueryEvents",  // events (issue 17)
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                // TLS remote API (issue 20).
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "CompressNIO", package: "compress-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "OsqueryDaemonTests",
            dependencies: [
                "OsqueryDaemon", "OsqueryConfig", "OsqueryEngine", "OsqueryTables", "OsqueryManager", "OsqueryProtocol", "ThriftCodec",
                "ProtocolFixture",
                // The SDK, to serve logger/config plugins to the daemon in process (test-only).
                "OsqueryExtension",
                // Built with the tests: the process tests run them.
                "osqueryd", "osqueryi", "example-jsonl-logger", "example-config",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Extension manager (issue 4): the core side of the extension protocol.
        .target(
            name: "OsqueryManager",
            dependencies: [
                "OsqueryEngine", "OsqueryProtocol", "ThriftCodec",
                "OsqueryEvents",  // extension event tables in the schedule (issue 17)
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "OsqueryManagerTests",
            dependencies: [
                "OsqueryManager", "OsqueryEngine", "OsqueryTables", "OsqueryProtocol", "ThriftCodec", "ProtocolFixture",
                "OsqueryFuzz",
                // Built with the tests: the process tests run them.
                "osqueryi", "osqueryd", "example-distributed", "example-pressure-table",
            ],
            swiftSettings: strict
        ),
        // The entry both programs share: argv[0] (or -S/-D) picks the shell or the daemon.
        .target(
            name: "OsqueryMain",
            dependencies: ["OsqueryEngine", "OsqueryTables", "OsqueryShell", "OsqueryDaemon"],
            swiftSettings: strict),
        .executableTarget(name: "osqueryi", dependencies: ["OsqueryMain"], swiftSettings: strict),
        .executableTarget(name: "osqueryd", dependencies: ["OsqueryMain"], swiftSettings: strict),
        .testTarget(name: "OsqueryEngineTests", dependencies: ["OsqueryEngine", "ProtocolFixture"], swiftSettings: strict),
        .testTarget(
            name: "OsqueryTablesTests", dependencies: ["OsqueryTables", "OsqueryEngine", "OsqueryConfig", "ProtocolFixture"],
            swiftSettings: strict),
        .testTarget(
            name: "OsqueryShellTests",
            dependencies: ["OsqueryShell", "OsqueryEngine", "OsqueryTables", "ProtocolFixture"],
            swiftSettings: strict
        ),
        .target(name: "ThriftCodec", dependencies: ["OsqueryVocabulary"], swiftSettings: strict),
        .target(
            name: "OsqueryProtocol",
            dependencies: [
                "ThriftCodec",
                "CSystemHeaders",  // accept4 and eventfd for the server's threads
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
        // Extension SDK (issue 5). The client and extension never depend on the core's modules.
        .target(name: "OsqueryClient", dependencies: ["OsqueryProtocol", "ThriftCodec"], swiftSettings: strict),
        .target(
            name: "OsqueryExtension",
            dependencies: [
                "OsqueryClient", "OsqueryProtocol", "ThriftCodec", "OsqueryVocabulary",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "OsqueryExtensionTesting",
            dependencies: ["OsqueryExtension", "OsqueryClient", "OsqueryProtocol", "ThriftCodec", "OsqueryEngine"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "OsqueryExtensionTests",
            dependencies: [
                "OsqueryExtension", "OsqueryClient", "OsqueryExtensionTesting", "OsqueryProtocol", "ThriftCodec",
                "ProtocolFixture",
                // Our core's manager, to run the examples against it (test-only dependency).
                "OsqueryManager", "OsqueryEngine", "OsqueryTables",
                // Built with the tests so the process tests can run them.
                "example-pressure-table", "example-writable-table", "example-jsonl-logger", "example-config",
                "example-distributed", "example-query", "alloc-count",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Shipping (issue 22): the README's package built against a tagged mirror, and the .deb.
        .testTarget(
            name: "ShippingTests",
            dependencies: [
                "ProtocolFixture", "OsqueryProtocol", "ThriftCodec", "OsqueryEngine",
                // Built with the tests: the .deb test packs these debug binaries.
                "osqueryd", "osqueryi",
            ],
            swiftSettings: strict
        ),
        // Examples/: each a runnable extension (or client) built by `swift build`.
        .executableTarget(name: "example-pressure-table", dependencies: ["OsqueryExtension"], path: "Examples/PressureTable", exclude: ["README.md"], swiftSettings: strict),
        .executableTarget(name: "example-writable-table", dependencies: ["OsqueryExtension"], path: "Examples/WritableTable", exclude: ["README.md"], swiftSettings: strict),
        .executableTarget(name: "example-jsonl-logger", dependencies: ["OsqueryExtension"], path: "Examples/JSONLogger", exclude: ["README.md"], swiftSettings: strict),
        .executableTarget(name: "example-config", dependencies: ["OsqueryExtension"], path: "Examples/ConfigExtension", exclude: ["README.md"], swiftSettings: strict),
        .executableTarget(name: "example-distributed", dependencies: ["OsqueryExtension"], path: "Examples/DistributedExtension", exclude: ["README.md"], swiftSettings: strict),
        .executableTarget(name: "example-query", dependencies: ["OsqueryClient"], path: "Examples/QueryClient", exclude: ["README.md"], swiftSettings: strict),
        .executableTarget(name: "example-kernel-log", dependencies: ["OsqueryExtension"], path: "Examples/KernelLog", exclude: ["README.md"], swiftSettings: strict),
        .executableTarget(
            name: "sdk-bench",
            dependencies: ["OsqueryExtension", "OsqueryExtensionTesting", "OsqueryManager", "OsqueryEngine", "OsqueryTables"],
            path: "Benchmarks/ExtensionBench",
            swiftSettings: strict
        ),
        // Allocation counts per 100 000 rows (AllocationCountTests runs it): a malloc that counts.
        .target(name: "CAllocCounter", path: "Benchmarks/CAllocCounter"),
        .executableTarget(
            name: "alloc-count",
            dependencies: ["CAllocCounter", "OsqueryExtension", "OsqueryManager", "OsqueryEngine"],
            path: "Benchmarks/AllocCount",
            swiftSettings: strict
        ),
        // Protocol conformance kit (issue 6): independent of the core and the SDK it checks.
        .target(
            name: "OsqueryConformance",
            dependencies: ["OsqueryProtocol", "ThriftCodec", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "osquery-conformance",
            dependencies: ["OsqueryConformance", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict
        ),
        // Fuzzing (issue 14): a seeded mutation fuzzer over the framer, the codec and the
        // manager's registerExtension; a bounded run is a test, scripts/fuzz.sh runs a long one.
        .target(
            name: "OsqueryFuzz",
            dependencies: [
                "OsqueryProtocol", "ThriftCodec", "OsqueryManager", "OsqueryEngine",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(name: "osquery-fuzz", dependencies: ["OsqueryFuzz"], swiftSettings: strict),
        .testTarget(
            name: "OsqueryConformanceTests",
            dependencies: [
                "OsqueryConformance", "OsqueryProtocol", "ThriftCodec", "ProtocolFixture",
                // Built with the tests: the kit runs against them.
                "osquery-conformance", "osqueryd", "osqueryi", "example-pressure-table",
            ],
            swiftSettings: strict
        ),
    ],
    swiftLanguageModes: [.v6]
)
