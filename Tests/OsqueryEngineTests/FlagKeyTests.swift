import OsqueryEngine
import Testing

/// The typed flag keys against the definitions: a key that names no definition, or one of
/// another type, would read a silent default (and trap in debug builds).
@Suite struct FlagKeyTests {
    /// Every declared key: its flag name, its case name and the types its kind reads.
    static let allKeys: [(name: String, caseName: String, types: Set<FlagType>)] =
        keys(BoolFlag.self) + keys(StringFlag.self) + keys(IntFlag.self) + keys(UIntFlag.self)

    static func keys<K: FlagKey>(_: K.Type) -> [(name: String, caseName: String, types: Set<FlagType>)] {
        K.allCases.map { ($0.rawValue, String(describing: $0), K.flagTypes) }
    }

    @Test func everyKeyNamesADefinitionOfItsType() {
        let definitions = Dictionary(uniqueKeysWithValues: Flags.osqueryDefinitions.map { ($0.name, $0) })
        for key in Self.allKeys {
            guard let definition = definitions[key.name] else {
                Issue.record("key .\(key.caseName) names no flag definition '\(key.name)'")
                continue
            }
            #expect(key.types.contains(definition.type), "key .\(key.caseName) reads \(key.types), '\(key.name)' is \(definition.type)")
            #expect(Flags.osqueryAliases[key.name] == nil, "key .\(key.caseName) names an alias")
        }
    }

    @Test func everyDefinitionHasOneKey() {
        var keyCount: [String: Int] = [:]
        for key in Self.allKeys { keyCount[key.name, default: 0] += 1 }
        for definition in Flags.osqueryDefinitions {
            #expect(keyCount[definition.name] == 1, "flag '\(definition.name)' needs exactly one key next to its definition")
        }
        #expect(Self.allKeys.count == Flags.osqueryDefinitions.count)
    }

    /// A key is found from its flag's name: lowerCamelCase, except the shell's one-letter flags.
    @Test func keyNamesFollowFlagNames() {
        let exceptions = ["A": "selectAll", "L": "listTables"]
        for key in Self.allKeys {
            let words = key.name.split(separator: "_")
            let camel = String(words[0]) + words.dropFirst().map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
            #expect(key.caseName == exceptions[key.name] ?? camel, "flag '\(key.name)'")
        }
    }

    /// A typed read returns what the flag's text says, set or default, through aliases too.
    @Test func typedReadsMatchTheFlagText() throws {
        let flags = Flags()
        try flags.parse(["--verbose", "--osquery_log_dir=/tmp/logs", "--watchdog_level=-1", "--read_max=7"])
        #expect(flags[.verbose])
        #expect(flags[.loggerPath] == "/tmp/logs")
        #expect(flags[.watchdogLevel] == -1)
        #expect(flags[.readMax] == 7)
        #expect(!flags.isDefault(.readMax) && flags.wasSet(.readMax))
        #expect(flags.isDefault(.header) && !flags.wasSet(.header))
        // A key with no definition traps when read; everyKeyNamesADefinitionOfItsType reports it.
        func defined(_ name: String) -> Bool { flags.definition(name) != nil }
        for key in BoolFlag.allCases where defined(key.rawValue) {
            #expect(flags[key] == (Flags.parseBool(flags.value(named: key.rawValue)) ?? false))
        }
        for key in StringFlag.allCases where defined(key.rawValue) { #expect(flags[key] == flags.value(named: key.rawValue)) }
        for key in IntFlag.allCases where defined(key.rawValue) { #expect(flags[key] == Int64(flags.value(named: key.rawValue))) }
        for key in UIntFlag.allCases where defined(key.rawValue) { #expect(flags[key] == UInt64(flags.value(named: key.rawValue))) }
    }
}
