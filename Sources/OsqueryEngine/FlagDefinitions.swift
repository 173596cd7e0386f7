extension Flags {
    /// Flag aliases osquery accepts.
    public static let osqueryAliases: [String: String] = [
        "config_tls_refresh": "config_refresh",
        "db_path": "database_path",
        "osquery_log_dir": "logger_path",
        "log_numerics_as_numbers": "logger_numerics",
        "logger_tls_max": "logger_tls_max_linesize",
    ]

    /// osquery's flag set (the subset this implementation knows), with
    /// osquery's names, types and defaults.
    public static let osqueryDefinitions: [FlagDefinition] = [
        // Shell-only flags.
        .init("A", .string, "", "Select all from a table", .shell),
        .init("L", .bool, "false", "List all table names", .shell),
        .init("planner", .bool, "false", "Enable osquery runtime planner output", .shell),
        .init("header", .bool, "true", "Toggle column headers true/false", .shell),
        .init("csv", .bool, "false", "Set output mode to 'csv'", .shell),
        .init("json", .bool, "false", "Set output mode to 'json'", .shell),
        .init("json_pretty", .bool, "false", "Set output mode to 'json_pretty'", .shell),
        .init("line", .bool, "false", "Set output mode to 'line'", .shell),
        .init("list", .bool, "false", "Set output mode to 'list'", .shell),
        .init("separator", .string, "|", "Set output field separator, default '|'", .shell),
        .init("pack", .string, "", "Run all queries in a pack", .shell),
        .init("connect", .string, "", "Connect to an extension socket", .shell),
        .init("profile", .int32, "0", "Enable profile mode when non-0, set number of iterations", .shell),
        .init("query", .string, "", "Run a query and exit", .shell),
        .init("query_file", .string, "", "Run queries from a file and exit", .shell),
        .init("output", .string, "", "Write results to a file, '-' for stdout", .shell),
        .init("extension", .string, "", "Path to a single extension to autoload", .shell),
        // Command-line-only flags.
        .init("config_plugin", .string, "filesystem", "Config plugin name", .cli),
        .init("config_path", .string, "/etc/osquery/osquery.conf", "Path to JSON config file", .cli),
        .init("config_refresh", .uint64, "0", "Optional interval in seconds to re-read configuration", .cli),
        .init("config_accelerated_refresh", .uint64, "300", "Interval to wait if reading a configuration fails", .cli),
        .init("config_check", .bool, "false", "Check the format of an osquery config and exit", .cli),
        .init("config_dump", .bool, "false", "Dump the contents of the configuration, then exit", .cli),
        .init("config_enable_backup", .bool, "false", "Backup config and use it when refresh fails", .cli),
        .init("logger_plugin", .string, "filesystem", "Logger plugin name", .cli),
        .init("logger_mode", .string, "0640", "Octal mode for log files (default '0640')", .cli),
        .init("logger_stderr", .bool, "true", "Write status logs to stderr", .cli),
        .init("pidfile", .string, "/var/run/osqueryd.pidfile", "Path to the daemon pidfile mutex", .cli),
        .init("database_path", .string, "/var/osquery/osquery.db", "If using a disk-based backing store, specify a path", .cli),
        .init("database_dump", .bool, "false", "Dump the contents of the backing store", .cli),
        .init("daemonize", .bool, "false", "Attempt to daemonize (POSIX only)", .cli),
        .init("force", .bool, "false", "Force osqueryd to kill previously-running daemons", .cli),
        .init("disable_watchdog", .bool, "false", "Disable userland watchdog process", .cli),
        .init("watchdog_level", .int32, "0", "Performance limit level (0=normal, 1=restrictive, -1=off)", .cli),
        .init("watchdog_memory_limit", .uint64, "0", "Override watchdog profile memory limit (e.g., 300, for 300MB)", .cli),
        .init("watchdog_utilization_limit", .uint64, "0", "Override watchdog profile CPU utilization limit", .cli),
        .init("watchdog_latency_limit", .uint64, "0", "Override watchdog profile CPU utilization latency limit", .cli),
        .init("watchdog_delay", .uint64, "60", "Initial delay in seconds before watchdog starts enforcing limits", .cli),
        .init("watchdog_forced_shutdown_delay", .uint64, "4", "Seconds the watchdog waits before forcefully killing the worker", .cli),
        .init("enable_watchdog_debug", .bool, "false", "Enable debug logging in the watchdog", .cli),
        .init("enable_extensions_watchdog", .bool, "false", "Enable userland watchdog for extensions processes", .cli),
        .init("disable_extensions", .bool, "false", "Disable extension API", .cli),
        .init("extensions_socket", .string, "/var/osquery/osquery.em", "Path to the extensions UNIX domain socket", .cli),
        .init("extensions_autoload", .string, "/etc/osquery/extensions.load", "Optional path to a list of autoloaded & managed extensions", .cli),
        .init("extensions_timeout", .string, "3", "Seconds to wait for autoloaded extensions", .cli),
        .init("extensions_interval", .string, "3", "Seconds delay between connectivity checks", .cli),
        .init("extensions_require", .string, "", "Comma-separated list of required extensions", .cli),
        .init("allow_unsafe", .bool, "false", "Allow unsafe executable permissions", .hidden),
        .init("disable_tables", .string, "", "Comma-delimited list of table names to be disabled", .cli),
        .init("enable_tables", .string, "", "Comma-delimited list of table names to be enabled", .cli),
        .init("tls_hostname", .string, "", "TLS/HTTPS hostname for Config, Logger, and Enroll plugins", .cli),
        .init("tls_server_certs", .string, "/opt/osquery/share/osquery/certs/certs.pem", "Optional path to a TLS server PEM certificate(s) bundle", .cli),
        .init("tls_client_cert", .string, "", "Optional path to a TLS client-auth PEM certificate", .cli),
        .init("tls_client_key", .string, "", "Optional path to a TLS client-auth PEM private key", .cli),
        .init("tls_session_reuse", .bool, "true", "Reuse TLS session across requests", .cli),
        .init("tls_session_timeout", .uint32Fallback, "3600", "TLS session keep alive timeout in seconds", .cli),
        .init("tls_accept_gzip", .bool, "false", "Request gzip responses from the server", .cli),
        .init("proxy_hostname", .string, "", "Optional HTTP proxy hostname", .cli),
        .init("enroll_secret_path", .string, "", "Path to an optional client enrollment-auth secret", .cli),
        .init("enroll_secret_env", .string, "", "Name of environment variable holding enrollment-auth secret", .cli),
        .init("enroll_tls_endpoint", .string, "", "TLS/HTTPS endpoint for client enrollment", .cli),
        .init("enroll_always", .bool, "false", "On startup, send a new enrollment request", .cli),
        .init("alarm_timeout", .uint64, "15", "Seconds to allow for shutdown. Minimum is 10", .cli),
        .init("config_tls_endpoint", .string, "", "TLS/HTTPS endpoint for config retrieval", .cli),
        .init("config_tls_max_attempts", .uint64, "3", "Number of attempts to retry a TLS config request", .cli),
        .init("disable_carver", .bool, "true", "Disable the osquery file carver function", .cli),
        .init("carver_start_endpoint", .string, "", "TLS/HTTPS init endpoint for forensic carver", .cli),
        .init("carver_continue_endpoint", .string, "", "TLS/HTTPS endpoint that receives carved content", .cli),
        .init("carver_block_size", .uint32Fallback, "8192", "Size of blocks used for POSTing data back to remote endpoints", .cli),
        .init("disable_reenrollment", .bool, "false", "Disable re-enrollment attempts if related plugins return invalid", .cli),
        // Options (settable from config).
        .init("verbose", .bool, "false", "Enable verbose informational messages"),
        .init("disable_logging", .bool, "false", "Disable ERROR/INFO logging"),
        .init("disable_caching", .bool, "false", "Disable scheduled query caching"),
        .init("disable_events", .bool, "false", "Disable osquery publish/subscribe system"),
        .init("disable_audit", .bool, "true", "Disable receiving events from the audit subsystem"),
        .init("events_expiry", .uint64, "3600", "Timeout to expire event subscriber results"),
        .init("events_max", .uint64, "50000", "Maximum number of events per type to buffer"),
        .init("events_optimize", .bool, "true", "Optimize subscriber select queries (scheduler only)"),
        .init("enable_file_events", .bool, "false", "Enable the file events publisher"),
        .init("host_identifier", .string, "hostname", "Field used to identify the host running osquery (hostname, uuid, instance, ephemeral, specified)"),
        .init("specified_identifier", .string, "", "Field used to specify the host_identifier when set to \"specified\""),
        .init("schedule_splay_percent", .uint64, "10", "Percent to splay config times"),
        .init("schedule_default_interval", .uint64, "3600", "Query interval to use if none is provided"),
        .init("schedule_timeout", .uint64, "0", "Limit the schedule, 0 for no limit"),
        .init("schedule_max_drift", .uint64, "60", "Max time drift in seconds"),
        .init("schedule_reload", .uint64, "300", "Interval in seconds to reload database arenas"),
        .init("schedule_epoch", .uint64, "0", "Epoch for scheduled queries"),
        .init("schedule_lognames", .bool, "false", "Log the running scheduled query name"),
        .init("pack_delimiter", .string, "_", "Delimiter for pack and query names"),
        .init("pack_refresh_interval", .uint64, "3600", "Cache expiration for a packs discovery queries"),
        .init("disable_distributed", .bool, "true", "Disable distributed queries"),
        .init("distributed_plugin", .string, "tls", "Distributed plugin name"),
        .init("distributed_interval", .uint64, "60", "Seconds between polling for new queries"),
        .init("distributed_denylist_duration", .uint64, "86400", "Seconds to denylist distributed queries"),
        .init("distributed_tls_read_endpoint", .string, "", "TLS/HTTPS endpoint for distributed query retrieval"),
        .init("distributed_tls_write_endpoint", .string, "", "TLS/HTTPS endpoint for distributed query results"),
        .init("distributed_tls_max_attempts", .uint64, "3", "Number of times to attempt a request"),
        .init("logger_tls_endpoint", .string, "", "TLS/HTTPS endpoint for results logging"),
        .init("logger_tls_period", .uint64, "4", "Seconds between flushing logs over TLS/HTTPS"),
        .init("logger_tls_max_lines", .uint64, "1024", "Max number of logs to send per period"),
        .init("logger_tls_max_linesize", .uint64, "1048576", "Max size in bytes allowed per log line"),
        .init("logger_tls_compress", .bool, "false", "GZip compress TLS/HTTPS request body"),
        .init("logger_tls_backoff_max", .uint64, "3600", "Maximum backoff in seconds between failed log uploads"),
        .init("logger_event_type", .bool, "true", "Log scheduled results as events"),
        .init("logger_snapshot_event_type", .bool, "false", "Log scheduled snapshot results as events"),
        .init("logger_numerics", .bool, "false", "Use numeric JSON syntax for numeric values"),
        .init("logger_syslog_facility", .int32, "19", "Syslog facility for status and results logs (0-23)"),
        .init("logger_syslog_prepend_cee", .bool, "false", "Prepend @cee: tag to logged JSON messages"),
        .init("buffered_log_max", .uint64, "1000000", "Maximum number of logs in buffered output plugins"),
        .init("read_max", .uint64, "52428800", "Maximum file read size"),
        .init("hash_cache_max", .uint32Fallback, "500", "Size of LRU file hash cache"),
        .init("disable_hash_cache", .bool, "false", "Cache calculated file hashes, re-calculate only if inode times change"),
        .init("table_delay", .uint64, "0", "Add an optional microsecond delay between table scans"),
        .init("enable_foreign", .bool, "false", "Enable no-op foreign virtual tables"),
        .init("disable_decorators", .bool, "false", "Disable log result decoration"),
        .init("decorations_top_level", .bool, "false", "Add decorators as top level JSON objects"),
        .init("enable_numeric_monitoring", .bool, "false", "Enable numeric monitoring system"),
        .init("malloc_trim_threshold", .uint64, "200", "Memory threshold in MB used to decide when a malloc_trim will be called"),
        .init("nullvalue", .string, "", "Set string for NULL values, default ''"),
        .init("logger_path", .string, "/var/log/osquery/", "Directory path for ERROR/WARN/INFO and results logging"),
        .init("logger_min_stderr", .int32, "0", "Minimum level for statuses written to stderr"),
        .init("logger_min_status", .int32, "0", "Minimum level for status log recording"),
        .init("logger_rotate", .bool, "false", "Use rotation for log files"),
        .init("logger_rotate_size", .uint64, "26214400", "Size in bytes after which a log file is rotated"),
        .init("logger_rotate_max_files", .uint64, "25", "Number of rotated files to keep"),
        .init("disable_database", .bool, "false", "Disable the persistent RocksDB storage"),
        .init("ephemeral", .bool, "false", "Skip pidfile and database state checks"),
        .init("extensions_default_index", .bool, "true", "Enable INDEX on all extension table columns (default true)"),
        .init("thrift_timeout", .uint32, "300", "Thrift socket timeout in seconds (core to extension calls)"),
        .init("thrift_verbose", .bool, "false", "Enable Thrift verbose logging"),
        .init("thrift_string_size_limit", .int32, "0", "Limit for Thrift string sizes (0 is unlimited)"),
        .init("value_max", .uint64, "512", "Maximum returned row value size", .hidden),
        .init("regex_max_size", .uint64, "256", "Maximum size of a regex pattern", .hidden),
        .init("tls_dump", .bool, "false", "Print remote requests and responses", .hidden),
        .init("tls_allow_unsafe", .bool, "false", "Allow TLS server certificate trust failures", .hidden),
        .init("tls_node_api", .bool, "false", "Use node key as TLS endpoints", .hidden),
        .init("profile_delay", .uint64, "0", "Sleep a number of seconds before and after the profiling", .hidden),
        .init("watchdog_max_delay", .uint64, "600", "Max delay in seconds between worker respawns", .hidden),
        .init("hash_delay", .uint32Fallback, "20", "Number of milliseconds to delay after hashing", .hidden),
        .init("utc", .bool, "true", "Convert all UNIX times to UTC", .hidden),
        // Hardening (issue 14), privilege and extension replies: not osquery flags.
        .init(
            "extensions_max_reply_cells", .uint64, "16777216",
            "Most cells (rows x columns) an extension table reply may cost, or one per 8 bytes of a bigger reply", .cli),
        // SQL hardening (issue 14; not osquery flags). query_timeout: osquery has no query
        // deadline; 60 s is its default distributed_interval, past which a distributed query
        // would overlap the next round. sql_max_length: the 100 MiB a wire message may carry.
        .init("query_timeout", .uint64, "60", "Seconds a query from an extension or a distributed request may run before it is interrupted (0: no limit)"),
        .init("sql_max_length", .uint64, "104857600", "Maximum bytes of a SQL statement, string or blob"),
        // Daemon result pipeline (issue 14): what a failing logger may hold and how often it is retried.
        .init(
            "logger_outbox_max_bytes", .uint64, "134217728",
            "Most bytes of result lines kept for loggers that fail; beyond it the oldest run is dropped (with a warning)"),
        .init("logger_retry_max_seconds", .uint64, "30", "Longest wait between retries of a failing logger (back-off from 0.25 s)"),
        // Extensions socket server limits (issue 14, wire): not in osquery, whose Thrift server
        // has none of these bounds.
        .init("extensions_max_message_size", .uint64, "104857600", "Largest message in bytes accepted or sent on the extensions socket", .cli),
        .init("extensions_max_pipelined_calls", .uint64, "16", "Calls queued per extensions socket connection before it is no longer read", .cli),
        .init("extensions_idle_timeout", .uint64, "600", "Seconds an extensions socket connection may stay open with no call", .cli),
        .init("extensions_partial_message_timeout", .uint64, "30", "Seconds a message may take to arrive, or a reply to be read, on the extensions socket", .cli),
        .init("extensions_max_connections", .uint64, "256", "Connections served at once on the extensions socket", .cli),
        // Config auto_table_construction (issue 15): bounds on one scan of an ATC table (all
        // its files); not osquery flags, whose ATC reads without bounds.
        .init("atc_max_rows", .uint64, "1000000", "Most rows one scan of an auto_table_construction table may return; past it the scan fails"),
        .init("atc_max_bytes", .uint64, "268435456", "Most bytes of values one scan of an auto_table_construction table may return; past it the scan fails"),
        .init("atc_timeout", .uint64, "60", "Seconds one scan of an auto_table_construction table may run before it is interrupted (0: no limit)"),
        // System tables (issue 18): augeas_lenses is osquery's flag, defaulting to Debian's lenses
        // (osquery's /opt/osquery/share/osquery/lenses is its own package's); the others bound
        // the tables that fetch over HTTP (osquery's client waits 16 s and reads without bound)
        // and pick the cloud metadata address (tests point it at loopback).
        .init("augeas_lenses", .string, "/usr/share/augeas/lenses/dist", "Directory that contains augeas lenses files"),
        .init("table_http_timeout", .uint64, "16", "Seconds an HTTP request of a table (curl, prometheus_metrics, docker_*) may take in all"),
        .init("table_http_max_bytes", .uint64, "16777216", "Most bytes of an HTTP response a table reads (curl, prometheus_metrics, docker_*)"),
        .init("cloud_metadata_timeout", .uint64, "3", "Seconds a cloud metadata table waits for its link-local endpoint"),
        .init("cloud_metadata_address", .string, "169.254.169.254", "Address (host[:port]) of the EC2, Azure and Yandex metadata endpoints"),
        // events (issue 17): osquery's hidden denylist switch, then our limits.
        .init("events_enforce_denylist", .bool, "false", "Enforce denylist for event-based queries", .hidden),
        .init("file_events_hash_queue_max", .uint64, "4096", "Most file events waiting for their hashes; past it events are logged unhashed (hashed -1)"),
        .init("events_flush_rows", .uint64, "1024", "Event rows a subscriber buffers in memory before it writes them to the store"),
        .init("file_events_max_watches", .uint64, "0", "Most inotify watches file_events adds (0: up to fs.inotify.max_user_watches)"),
        // TLS remote API (issue 20): osquery's enroll and TLS plugin flags not declared above, then
        // the transport's bounds (not osquery flags: its transport has no such limits).
        .init("tls_enroll_max_attempts", .uint64, "12", "Number of attempts to retry a TLS enroll request, 0 = forever", .cli),
        .init("tls_enroll_max_interval", .uint64, "600", "Maximum wait time in seconds between enroll retry attempts", .cli),
        .init("disable_enrollment", .bool, "false", "Disable enrollment functions on related app instances", .cli),
        .init("tls_disable_status_log", .bool, "false", "Disable sending status logs"),
        .init("tls_enroll_override", .string, "enroll_secret", "Override the TLS enroll secret key name", .hidden),
        .init("tls_secret_always", .bool, "false", "Include TLS enroll secret in every request", .hidden),
        .init("tls_connect_timeout", .uint64, "10", "Seconds a TLS/HTTPS connection (TCP and handshake) may take", .cli),
        .init("tls_request_timeout", .uint64, "60", "Seconds a whole TLS/HTTPS request may take, response body included", .cli),
        .init("tls_max_response_size", .uint64, "16777216", "Largest TLS/HTTPS response body in bytes (after gzip decoding)", .cli),
        // audit events (issue 19): osquery's audit flags with its defaults, then our bounds.
        .init("audit_allow_config", .bool, "false", "Allow the audit publisher to change auditing configuration"),
        .init("audit_allow_sockets", .bool, "false", "Allow the audit publisher to install socket-related rules"),
        .init("audit_allow_process_events", .bool, "true", "Allow the audit publisher to install process-related rules"),
        .init("audit_allow_user_events", .bool, "true", "Allow the audit publisher to install user-related rules"),
        .init("audit_allow_fim_events", .bool, "false", "Allow the audit publisher to install filesystem-related rules"),
        .init("audit_persist", .bool, "true", "Attempt to retain control of audit"),
        .init("audit_debug", .bool, "false", "Debug Linux audit messages", .hidden),
        .init("audit_force_unconfigure", .bool, "false", "Always uninstall all rules, regardless of whether they were already installed or not"),
        .init("audit_force_reconfigure", .bool, "false", "Configure the audit subsystem from scratch"),
        .init("audit_backlog_wait_time", .int32, "0", "The audit backlog wait time"),
        .init("audit_backlog_limit", .int32, "4096", "The audit backlog limit"),
        .init("audit_allow_accept_socket_events", .bool, "true", "Include rows for accept socket events"),
        .init("audit_allow_apparmor_events", .bool, "false", "Allow the publisher to process audit events"),
        .init("audit_allow_fork_process_events", .bool, "false", "Allow the audit publisher to install process event monitoring rules to capture fork/vfork/clone system calls"),
        .init("audit_allow_kill_process_events", .bool, "false", "Allow the audit publisher to install process event monitoring rules to capture kill/tkill/tgkill system calls"),
        .init("audit_show_partial_fim_events", .bool, "false", "Allow the audit publisher to show partial file events", .hidden),
        .init("audit_fim_show_accesses", .bool, "false", "Also show file accesses (not just writes)", .hidden),
        .init("audit_allow_seccomp_events", .bool, "false", "Allow the audit publisher to process seccomp events"),
        .init("audit_allow_selinux_events", .bool, "false", "Allow the audit publisher to process audit events"),
        .init("audit_allow_unix", .bool, "false", "Allow socket events to collect domain sockets", .hidden),
        .init("audit_allow_failed_socket_events", .bool, "false", "Include rows for socket events that have failed"),
        .init("audit_allow_null_accept_socket_events", .bool, "false", "Allow non-blocking accept() syscalls that returned EAGAIN/EWOULDBLOCK"),
        .init("audit_max_partial_events", .uint64, "4096", "Most audit events being assembled at once; past it the oldest is dropped and counted"),
        .init("audit_max_event_bytes", .uint64, "131072", "Most bytes of record text one audit event keeps (EXECVE arguments); past it the command line is cut and counted"),
        // udev/syslog/yara events (issue 19): osquery's flags, then our bounds (osquery reads a
        // syslog line into 2 KiB and scans without a timeout).
        .init("hardware_disabled_types", .string, "partition", "List of disabled hardware event types"),
        .init("enable_syslog", .bool, "false", "Enable the syslog ingestion event publisher"),
        .init("syslog_pipe_path", .string, "/var/osquery/syslog_pipe", "Path to the named pipe used for forwarding rsyslog events"),
        .init("syslog_rate_limit", .uint64, "100", "Maximum number of logs to ingest per run (~200ms between runs)"),
        .init("syslog_events_expiry", .uint64, "2592000", "Timeout to expire event subscriber results"),
        .init("syslog_events_max", .uint64, "100000", "Maximum number of events per type to buffer"),
        .init("yara_delay", .uint32Fallback, "50", "Time in ms to sleep after scan of each file (default 50) to reduce memory spikes"),
        .init("enable_yara_string", .bool, "false", "Enable returning matched YARA strings. The strings are set to private if rules are passed with sigrule", .hidden),
        .init("syslog_max_line", .uint64, "65536", "Longest syslog line (bytes) read from the pipe; longer lines are skipped and counted"),
        .init("yara_scan_timeout", .uint64, "10", "Seconds one YARA scan of a file may take (0: no limit)"),
        .init("yara_events_queue_max", .uint64, "1024", "Most files waiting for their yara_events scan; past it changes are counted and not scanned"),
        // docker_* tables (issue 18): osquery's socket flag, then the bound on objects one scan
        // walks (not an osquery flag: osquery asks the engine about every container and image).
        .init("docker_socket", .string, "/var/run/docker.sock", "Docker UNIX domain socket path"),
        .init("docker_max_objects", .uint64, "10000", "Most containers or images one docker_* table scan asks the engine about"),
        // lxd_* tables (issue 18): osquery's socket flag, then the bound on objects one scan
        // walks (not an osquery flag: osquery asks LXD about every instance, image and network).
        .init("lxd_socket", .string, "/var/lib/lxd/unix.socket", "LXD UNIX domain socket path"),
        .init("lxd_max_objects", .uint64, "10000", "Most instances, images, networks or other objects one lxd_* table scan asks LXD about"),
        // latency and concurrency (issue 21): the extensions socket's own event-loop threads. Under
        // CPU contention each thread gets a scheduler's share, and a loop serves many connections.
        .init("extensions_server_threads", .uint64, "0", "Ignored: the extensions socket serves each connection on a thread of its own", .cli),
        // file_events storms (issue 17): the inotify reader hands events to a queue and reads on;
        // past this many waiting it stops reading (the kernel's queue then overflows, counted).
        .init("file_events_queue_max", .uint64, "262144", "Most file events read from inotify and waiting to be written; past it reading pauses"),
    ]
}

extension FlagType {
    /// gflags has no uint32; osquery declares those flags as uint64.
    static let uint32Fallback: FlagType = .uint64
}

/// A flag's name typed by its value: code reads `flags[.verbose]` (a `Bool`), so a misspelt
/// name does not compile. Every key names a definition of a matching type, and every
/// definition has one key (FlagKeyTests); a key is the flag's name in lowerCamelCase.
package protocol FlagKey: RawRepresentable, CaseIterable, Sendable where RawValue == String {
    /// The definition types a key of this kind may name.
    static var flagTypes: Set<FlagType> { get }
}

extension BoolFlag { package static var flagTypes: Set<FlagType> { [.bool] } }
extension StringFlag { package static var flagTypes: Set<FlagType> { [.string] } }
extension IntFlag { package static var flagTypes: Set<FlagType> { [.int32, .int64] } }
extension UIntFlag { package static var flagTypes: Set<FlagType> { [.uint32, .uint64] } }

/// Names of the `bool` flags.
package enum BoolFlag: String, FlagKey {
    // audit events (issue 19)
    case auditAllowConfig = "audit_allow_config"
    case auditAllowSockets = "audit_allow_sockets"
    case auditAllowProcessEvents = "audit_allow_process_events"
    case auditAllowUserEvents = "audit_allow_user_events"
    case auditAllowFimEvents = "audit_allow_fim_events"
    case auditPersist = "audit_persist"
    case auditDebug = "audit_debug"
    case auditForceUnconfigure = "audit_force_unconfigure"
    case auditForceReconfigure = "audit_force_reconfigure"
    case auditAllowAcceptSocketEvents = "audit_allow_accept_socket_events"
    case auditAllowApparmorEvents = "audit_allow_apparmor_events"
    case auditAllowForkProcessEvents = "audit_allow_fork_process_events"
    case auditAllowKillProcessEvents = "audit_allow_kill_process_events"
    case auditShowPartialFimEvents = "audit_show_partial_fim_events"
    case auditFimShowAccesses = "audit_fim_show_accesses"
    case auditAllowSeccompEvents = "audit_allow_seccomp_events"
    case auditAllowSelinuxEvents = "audit_allow_selinux_events"
    case auditAllowUnix = "audit_allow_unix"
    case auditAllowFailedSocketEvents = "audit_allow_failed_socket_events"
    case auditAllowNullAcceptSocketEvents = "audit_allow_null_accept_socket_events"
    // events (issue 17)
    case eventsEnforceDenylist = "events_enforce_denylist"
    /// `-L`: list all table names.
    case listTables = "L"
    case planner
    case header
    case csv
    case json
    case jsonPretty = "json_pretty"
    case line
    case list
    case configCheck = "config_check"
    case configDump = "config_dump"
    case configEnableBackup = "config_enable_backup"
    case loggerStderr = "logger_stderr"
    case databaseDump = "database_dump"
    case daemonize
    case force
    case disableWatchdog = "disable_watchdog"
    case enableWatchdogDebug = "enable_watchdog_debug"
    case enableExtensionsWatchdog = "enable_extensions_watchdog"
    case disableExtensions = "disable_extensions"
    case allowUnsafe = "allow_unsafe"
    case tlsSessionReuse = "tls_session_reuse"
    case tlsAcceptGzip = "tls_accept_gzip"
    case enrollAlways = "enroll_always"
    case disableCarver = "disable_carver"
    case disableReenrollment = "disable_reenrollment"
    case verbose
    case disableLogging = "disable_logging"
    case disableCaching = "disable_caching"
    case disableEvents = "disable_events"
    case disableAudit = "disable_audit"
    case eventsOptimize = "events_optimize"
    case enableFileEvents = "enable_file_events"
    case scheduleLognames = "schedule_lognames"
    case disableDistributed = "disable_distributed"
    case loggerTlsCompress = "logger_tls_compress"
    case loggerEventType = "logger_event_type"
    case loggerSnapshotEventType = "logger_snapshot_event_type"
    case loggerNumerics = "logger_numerics"
    case loggerSyslogPrependCee = "logger_syslog_prepend_cee"
    case disableHashCache = "disable_hash_cache"
    case enableForeign = "enable_foreign"
    case disableDecorators = "disable_decorators"
    case decorationsTopLevel = "decorations_top_level"
    case enableNumericMonitoring = "enable_numeric_monitoring"
    case loggerRotate = "logger_rotate"
    case disableDatabase = "disable_database"
    case ephemeral
    case extensionsDefaultIndex = "extensions_default_index"
    case thriftVerbose = "thrift_verbose"
    case tlsDump = "tls_dump"
    case tlsAllowUnsafe = "tls_allow_unsafe"
    case tlsNodeApi = "tls_node_api"
    case utc
    // TLS remote API (issue 20).
    case disableEnrollment = "disable_enrollment"
    case tlsDisableStatusLog = "tls_disable_status_log"
    case tlsSecretAlways = "tls_secret_always"
    // udev/syslog/yara events (issue 19)
    case enableSyslog = "enable_syslog"
    case enableYaraString = "enable_yara_string"
}

/// Names of the `string` flags.
package enum StringFlag: String, FlagKey {
    /// `-A`: select all from a table.
    case selectAll = "A"
    case separator
    case pack
    case connect
    case query
    case queryFile = "query_file"
    case output
    case `extension` = "extension"
    case configPlugin = "config_plugin"
    case configPath = "config_path"
    case loggerPlugin = "logger_plugin"
    case loggerMode = "logger_mode"
    case pidfile
    case databasePath = "database_path"
    case extensionsSocket = "extensions_socket"
    case extensionsAutoload = "extensions_autoload"
    case extensionsTimeout = "extensions_timeout"
    case extensionsInterval = "extensions_interval"
    case extensionsRequire = "extensions_require"
    case disableTables = "disable_tables"
    case enableTables = "enable_tables"
    case tlsHostname = "tls_hostname"
    case tlsServerCerts = "tls_server_certs"
    case tlsClientCert = "tls_client_cert"
    case tlsClientKey = "tls_client_key"
    case proxyHostname = "proxy_hostname"
    case augeasLenses = "augeas_lenses"
    case cloudMetadataAddress = "cloud_metadata_address"
    case enrollSecretPath = "enroll_secret_path"
    case enrollSecretEnv = "enroll_secret_env"
    case enrollTlsEndpoint = "enroll_tls_endpoint"
    case configTlsEndpoint = "config_tls_endpoint"
    case carverStartEndpoint = "carver_start_endpoint"
    case carverContinueEndpoint = "carver_continue_endpoint"
    case hostIdentifier = "host_identifier"
    case specifiedIdentifier = "specified_identifier"
    case packDelimiter = "pack_delimiter"
    case distributedPlugin = "distributed_plugin"
    case distributedTlsReadEndpoint = "distributed_tls_read_endpoint"
    case distributedTlsWriteEndpoint = "distributed_tls_write_endpoint"
    case loggerTlsEndpoint = "logger_tls_endpoint"
    case nullvalue
    case loggerPath = "logger_path"
    // TLS remote API (issue 20).
    case tlsEnrollOverride = "tls_enroll_override"
    // udev/syslog/yara events (issue 19)
    case hardwareDisabledTypes = "hardware_disabled_types"
    case syslogPipePath = "syslog_pipe_path"
    // docker_* tables (issue 18).
    case dockerSocket = "docker_socket"
    // lxd_* tables (issue 18).
    case lxdSocket = "lxd_socket"
}

/// Names of the `int32` and `int64` flags, read as `Int64`.
package enum IntFlag: String, FlagKey {
    // audit events (issue 19)
    case auditBacklogWaitTime = "audit_backlog_wait_time"
    case auditBacklogLimit = "audit_backlog_limit"
    case profile
    case watchdogLevel = "watchdog_level"
    case loggerSyslogFacility = "logger_syslog_facility"
    case loggerMinStderr = "logger_min_stderr"
    case loggerMinStatus = "logger_min_status"
    case thriftStringSizeLimit = "thrift_string_size_limit"
}

/// Names of the `uint32` and `uint64` flags, read as `UInt64`.
package enum UIntFlag: String, FlagKey {
    case configRefresh = "config_refresh"
    case configAcceleratedRefresh = "config_accelerated_refresh"
    case watchdogMemoryLimit = "watchdog_memory_limit"
    case watchdogUtilizationLimit = "watchdog_utilization_limit"
    case watchdogLatencyLimit = "watchdog_latency_limit"
    case watchdogDelay = "watchdog_delay"
    case watchdogForcedShutdownDelay = "watchdog_forced_shutdown_delay"
    case tlsSessionTimeout = "tls_session_timeout"
    case alarmTimeout = "alarm_timeout"
    case configTlsMaxAttempts = "config_tls_max_attempts"
    case carverBlockSize = "carver_block_size"
    case eventsExpiry = "events_expiry"
    case eventsMax = "events_max"
    case scheduleSplayPercent = "schedule_splay_percent"
    case scheduleDefaultInterval = "schedule_default_interval"
    case scheduleTimeout = "schedule_timeout"
    case scheduleMaxDrift = "schedule_max_drift"
    case scheduleReload = "schedule_reload"
    case scheduleEpoch = "schedule_epoch"
    case packRefreshInterval = "pack_refresh_interval"
    case distributedInterval = "distributed_interval"
    case distributedDenylistDuration = "distributed_denylist_duration"
    case distributedTlsMaxAttempts = "distributed_tls_max_attempts"
    case loggerTlsPeriod = "logger_tls_period"
    case loggerTlsMaxLines = "logger_tls_max_lines"
    case loggerTlsMaxLinesize = "logger_tls_max_linesize"
    case loggerTlsBackoffMax = "logger_tls_backoff_max"
    case bufferedLogMax = "buffered_log_max"
    case readMax = "read_max"
    case hashCacheMax = "hash_cache_max"
    case tableDelay = "table_delay"
    case mallocTrimThreshold = "malloc_trim_threshold"
    case loggerRotateSize = "logger_rotate_size"
    case loggerRotateMaxFiles = "logger_rotate_max_files"
    case thriftTimeout = "thrift_timeout"
    case valueMax = "value_max"
    case regexMaxSize = "regex_max_size"
    case profileDelay = "profile_delay"
    case watchdogMaxDelay = "watchdog_max_delay"
    case hashDelay = "hash_delay"
    case extensionsMaxReplyCells = "extensions_max_reply_cells"
    case queryTimeout = "query_timeout"
    case sqlMaxLength = "sql_max_length"
    case loggerOutboxMaxBytes = "logger_outbox_max_bytes"
    case loggerRetryMaxSeconds = "logger_retry_max_seconds"
    case extensionsMaxMessageSize = "extensions_max_message_size"
    case extensionsMaxPipelinedCalls = "extensions_max_pipelined_calls"
    case extensionsIdleTimeout = "extensions_idle_timeout"
    case extensionsPartialMessageTimeout = "extensions_partial_message_timeout"
    case extensionsMaxConnections = "extensions_max_connections"
    case atcMaxRows = "atc_max_rows"
    case atcMaxBytes = "atc_max_bytes"
    case atcTimeout = "atc_timeout"
    case tableHttpTimeout = "table_http_timeout"
    case tableHttpMaxBytes = "table_http_max_bytes"
    case cloudMetadataTimeout = "cloud_metadata_timeout"
    // events (issue 17)
    case fileEventsHashQueueMax = "file_events_hash_queue_max"
    case eventsFlushRows = "events_flush_rows"
    case fileEventsMaxWatches = "file_events_max_watches"
    case fileEventsQueueMax = "file_events_queue_max"
    // TLS remote API (issue 20).
    case tlsEnrollMaxAttempts = "tls_enroll_max_attempts"
    case tlsEnrollMaxInterval = "tls_enroll_max_interval"
    case tlsConnectTimeout = "tls_connect_timeout"
    case tlsRequestTimeout = "tls_request_timeout"
    case tlsMaxResponseSize = "tls_max_response_size"
    // audit events (issue 19)
    case auditMaxPartialEvents = "audit_max_partial_events"
    case auditMaxEventBytes = "audit_max_event_bytes"
    // udev/syslog/yara events (issue 19)
    case syslogRateLimit = "syslog_rate_limit"
    case syslogEventsExpiry = "syslog_events_expiry"
    case syslogEventsMax = "syslog_events_max"
    case yaraDelay = "yara_delay"
    case syslogMaxLine = "syslog_max_line"
    case yaraScanTimeout = "yara_scan_timeout"
    case yaraEventsQueueMax = "yara_events_queue_max"
    // docker_* tables (issue 18).
    case dockerMaxObjects = "docker_max_objects"
    // lxd_* tables (issue 18).
    case lxdMaxObjects = "lxd_max_objects"
    // latency and concurrency (issue 21)
    case extensionsServerThreads = "extensions_server_threads"
}
