import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

enum UtilityTables {
    static let instanceID = Host.randomUUID()
    static let startTime = Host.now()

    static func osqueryInfo(registry: PluginRegistry, flags: Flags) -> FunctionTable {
        table("osquery_info", [
            col("pid", .integer), col("uuid", .text, .collateNocase), col("instance_id", .text), col("version", .text, .collateVersion),
            col("config_hash", .text, .collateNocase), col("config_valid", .integer), col("extensions", .text),
            col("build_platform", .text), col("build_distro", .text), col("start_time", .integer),
            col("watcher", .integer), col("platform_mask", .integer),
        ], attributes: .utility) { _, schema in
            var rows = TableRows(schema: schema, reservingRows: 1)
            rows.appendRow([
                .integer(Int64(getpid())), .text(Host.uuid), .text(instanceID), .text(OsqueryVersion.version),
                "", 0, .text(registry.extensions().isEmpty ? "inactive" : "active"),
                .text(OsqueryVersion.buildPlatform), .text(OsqueryVersion.buildDistro), .integer(startTime),
                -1, 9,
            ])
            return rows
        }
    }

    static func osqueryFlags(flags: Flags) -> FunctionTable {
        table("osquery_flags", [
            col("name", .text), col("type", .text), col("description", .text), col("default_value", .text),
            col("value", .text), col("shell_only", .integer),
        ], attributes: .utility) { _, schema in
            let defs = flags.allDefinitions().filter { $0.name.count > 1 }
            var rows = TableRows(schema: schema, reservingRows: defs.count)
            for d in defs {
                rows.appendRow([
                    .text(d.name), .text(d.type.rawValue), .text(d.description), .text(d.defaultValue),
                    .text(flags.value(named: d.name)), .integer(d.kind == .shell ? 1 : 0),
                ])
            }
            return rows
        }
    }

    static func osqueryRegistry(registry: PluginRegistry) -> FunctionTable {
        table("osquery_registry", [
            col("registry", .text), col("name", .text), col("owner_uuid", .integer), col("internal", .integer), col("active", .integer),
        ], attributes: .utility) { _, schema in
            let items = registry.allItems()
            var rows = TableRows(schema: schema, reservingRows: items.count)
            for item in items {
                rows.appendRow([
                    .text(item.registry), .text(item.name), .integer(Int64(bitPattern: item.ownerUUID)),
                    .integer(item.ownerUUID == 0 && item.isInternal ? 1 : 0),
                    .integer(registry.isActive(registry: item.registry, name: item.name) ? 1 : 0),
                ])
            }
            return rows
        }
    }

    static func osqueryExtensions(registry: PluginRegistry, flags: Flags) -> FunctionTable {
        table("osquery_extensions", [
            col("uuid", .bigint), col("name", .text), col("version", .text, .collateVersion),
            col("sdk_version", .text, .collateVersion), col("path", .text), col("type", .text),
        ], attributes: .utility) { _, schema in
            var rows = TableRows(schema: schema)
            // osquery's core row shows sdk_version 0.0.0 (its records swap
            // sdk/min_sdk); extension rows show their min_sdk_version likewise.
            rows.appendRow([0, "core", .text(OsqueryVersion.version), "0.0.0", .text(flags[.extensionsSocket]), "core"])
            for e in registry.extensions() {
                rows.appendRow([
                    .integer(Int64(bitPattern: e.uuid)), .text(e.name), .text(e.version), .text(e.minSdkVersion),
                    .text(e.path), "extension",
                ])
            }
            return rows
        }
    }

    static let weekdays = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]

    static func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }

    /// asctime(3) without the trailing newline.
    static func asctime(_ t: tm) -> String {
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        let day = t.tm_mday < 10 ? " \(t.tm_mday)" : "\(t.tm_mday)"
        return "\(days[Int(t.tm_wday)]) \(months[Int(t.tm_mon)]) \(day) \(two(t.tm_hour)):\(two(t.tm_min)):\(two(t.tm_sec)) \(1900 + t.tm_year)"
    }

    static func time() -> FunctionTable {
        table("time", [
            col("weekday", .text), col("year", .integer), col("month", .integer), col("day", .integer),
            col("hour", .integer), col("minutes", .integer), col("seconds", .integer), col("timezone", .text),
            col("local_timezone", .text), col("unix_time", .integer), col("timestamp", .text),
            col("datetime", .text), col("iso_8601", .text), col("win_timestamp", .bigint, .hidden),
        ], columnAliases: [(alias: "date_time", target: "datetime")], attributes: .utility) { _, schema in
            var now = time_t(Host.now())
            var utc = tm()
            gmtime_r(&now, &utc)
            var local = tm()
            localtime_r(&now, &local)
            let zone = local.tm_zone.map { String(cString: $0) } ?? "UTC"
            let iso = "\(1900 + utc.tm_year)-\(two(utc.tm_mon + 1))-\(two(utc.tm_mday))T\(two(utc.tm_hour)):\(two(utc.tm_min)):\(two(utc.tm_sec))Z"
            var rows = TableRows(schema: schema, reservingRows: 1)
            rows.appendRow([
                .text(weekdays[Int(utc.tm_wday)]), .integer(Int64(1900 + utc.tm_year)), .integer(Int64(utc.tm_mon + 1)),
                .integer(Int64(utc.tm_mday)), .integer(Int64(utc.tm_hour)), .integer(Int64(utc.tm_min)),
                .integer(Int64(utc.tm_sec)), "UTC", .text(zone), .integer(Int64(now)),
                .text(asctime(utc) + " UTC"), .text(iso), .text(iso), .null,
            ])
            return rows
        }
    }
}
