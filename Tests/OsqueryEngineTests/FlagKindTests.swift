import OsqueryEngine
import Testing

/// Issue 15 item 5: each flag is declared as osquery declares it (`FLAG`, `CLI_FLAG`,
/// `SHELL_FLAG`, `HIDDEN_FLAG` in osquery/ and plugins/), since the kind decides what a config's
/// `options` may set and where `--help` lists the flag.
@Suite struct FlagKindTests {
    /// osquery's `CLI_FLAG`s, among the flags this implementation has.
    static let osqueryCLIOnly: Set<String> = [
        "config_plugin", "config_path", "config_refresh", "config_accelerated_refresh", "config_check", "config_dump",
        "config_enable_backup", "logger_plugin", "logger_mode", "logger_stderr", "pidfile", "database_path",
        "database_dump", "daemonize", "force", "disable_watchdog", "watchdog_level", "watchdog_memory_limit",
        "watchdog_utilization_limit", "watchdog_latency_limit", "watchdog_delay", "watchdog_forced_shutdown_delay",
        "enable_watchdog_debug", "enable_extensions_watchdog", "disable_extensions", "extensions_socket",
        "extensions_autoload", "extensions_timeout", "extensions_interval", "extensions_require", "disable_tables",
        "enable_tables", "tls_hostname", "tls_server_certs", "tls_client_cert", "tls_client_key", "tls_session_reuse",
        "tls_session_timeout", "tls_accept_gzip", "proxy_hostname", "enroll_secret_path", "enroll_secret_env",
        "enroll_tls_endpoint", "enroll_always", "alarm_timeout", "config_tls_endpoint", "config_tls_max_attempts",
        "disable_carver", "carver_start_endpoint", "carver_continue_endpoint", "carver_block_size",
        "disable_reenrollment",
        // TLS remote API (issue 20).
        "tls_enroll_max_attempts", "tls_enroll_max_interval", "disable_enrollment",
    ]
    /// Limits of our own (not osquery flags) that only the command line sets: the extensions
    /// socket exists before any config is read.
    static let ownCLIOnly: Set<String> = [
        "extensions_max_reply_cells", "extensions_max_message_size", "extensions_max_pipelined_calls",
        "extensions_idle_timeout", "extensions_partial_message_timeout", "extensions_max_connections",
        // TLS remote API (issue 20): the transport is made once, at start.
        "tls_connect_timeout", "tls_request_timeout", "tls_max_response_size",
        // issue 21: the extensions socket's server is started once.
        "extensions_server_threads",
    ]
    /// osquery's `SHELL_FLAG`s.
    static let osqueryShellOnly: Set<String> = [
        "A", "L", "planner", "header", "csv", "json", "json_pretty", "line", "list", "separator", "pack", "connect",
        "profile", "query", "query_file", "output", "extension",
    ]
    /// osquery's `HIDDEN_FLAG`s, and `value_max` (from osquery's earlier releases).
    static let hidden: Set<String> = [
        "allow_unsafe", "regex_max_size", "tls_dump", "tls_allow_unsafe", "tls_node_api", "profile_delay",
        "watchdog_max_delay", "hash_delay", "utc", "value_max",
        // events (issue 17)
        "events_enforce_denylist",
        // TLS remote API (issue 20).
        "tls_secret_always", "tls_enroll_override",
        // audit events (issue 19)
        "audit_debug", "audit_show_partial_fim_events", "audit_fim_show_accesses", "audit_allow_unix",
        // udev/syslog/yara events (issue 19)
        "enable_yara_string",
    ]

    static func names(_ kind: FlagKind) -> Set<String> {
        Set(Flags.osqueryDefinitions.filter { $0.kind == kind }.map(\.name))
    }

    @Test func theCLIOnlyFlagsAreOsquerys() {
        #expect(Self.names(.cli) == Self.osqueryCLIOnly.union(Self.ownCLIOnly))
    }

    @Test func theShellAndHiddenFlagsAreOsquerys() {
        #expect(Self.names(.shell) == Self.osqueryShellOnly)
        #expect(Self.names(.hidden) == Self.hidden)
    }

    /// Ordinary flags in osquery that were CLI-only here: a config's options set them now.
    @Test func aConfigSetsTheLoggerFlags() {
        let flags = Flags()
        var warnings: [String] = []
        let options: [(name: String, value: ConfigOptionValue)] = [
            ("logger_path", .string("/tmp/elsewhere")), ("logger_rotate", .bool(true)), ("logger_min_status", .int(1)),
            ("thrift_timeout", .int(20)), ("nullvalue", .string("NULL")), ("config_tls_endpoint", .string("/config")),
        ]
        ConfigOptions.apply(options, to: flags, warn: { warnings.append($0) })
        #expect(flags[.loggerPath] == "/tmp/elsewhere")
        #expect(flags[.loggerRotate])
        #expect(flags[.loggerMinStatus] == 1)
        #expect(flags[.thriftTimeout] == 20)
        #expect(flags[.nullvalue] == "NULL")
        // config_tls_endpoint is osquery's CLI_FLAG: ignored, with osquery's warning.
        #expect(flags[.configTlsEndpoint] == "")
        #expect(warnings == [
            "The CLI only flag --config_tls_endpoint set via config file will be ignored, please use a flagfile or pass it to the process at startup"
        ])
    }
}
