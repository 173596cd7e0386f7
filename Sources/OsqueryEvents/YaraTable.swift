import Foundation
package import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

/// The `yara_file` table (alias `yara`; specs/yara_file.table): scans the files `path` names
/// (`=`, or `LIKE` expanded one level as osquery does) with the rules of `sig_group` (the
/// config's, compiled once per config), `sigfile` (compiled once per file version) or `sigrule`
/// (compiled for the query). `sigurl` needs rules fetched over HTTPS, which this core does not
/// do: such a constraint gives osquery's refusal.
package enum YaraTable {
    package static let schema = TableSchema(
        name: "yara_file",
        columns: [
            TableColumn("path", .text, [.index, .required]), TableColumn("matches", .text), TableColumn("count", .integer),
            TableColumn("sig_group", .text, .additional), TableColumn("sigfile", .text, .additional),
            TableColumn("sigrule", .text, [.additional, .hidden]), TableColumn("strings", .text), TableColumn("tags", .text),
            TableColumn("sigurl", .text, [.additional, .hidden]), TableColumn("pid_with_namespace", .integer, [.additional, .hidden]),
        ],
        aliases: ["yara"])

    /// The rules a query names: (column to fill, its value, rules, whether the strings column
    /// may show); nil, after osquery's error, when it names none.
    static func signatures(
        _ context: QueryContext, cache: YaraRuleCache, flags: Flags
    ) -> [(column: Int, value: String, rules: YaraRules, strings: Bool)]? {
        var signatures: [(column: Int, value: String, rules: YaraRules, strings: Bool)] = []
        var asked = false
        for group in context.equalities(for: "sig_group") {
            asked = true
            if let rules = cache.group(group) { signatures.append((3, group, rules, true)) }
        }
        for file in context.equalities(for: "sigfile") {
            asked = true
            switch cache.file(file) {
            case .success(let rules): signatures.append((4, file, rules, true))
            case .failure(let e): StatusLog.warning("YARA compile error: \(e.message)")
            }
        }
        for rule in context.equalities(for: "sigrule") {
            asked = true
            switch Yara.compile(source: rule) {
            // Rules from the query could read any file's bytes back through `strings`.
            case .success(let rules): signatures.append((5, rule, rules, flags[.enableYaraString]))
            case .failure(let e): StatusLog.warning("YARA compile error: \(e.message)")
            }
        }
        for url in context.equalities(for: "sigurl") {
            asked = true
            StatusLog.warning("Failed to get YARA rule url: \(url)")
        }
        guard asked else {
            StatusLog.error("Query must specify sig_group, sigfile, sigrule, or sigurl for scan")
            return nil
        }
        return signatures
    }

    package static func table(cache: YaraRuleCache, flags: Flags) -> FunctionTable {
        FunctionTable(schema) { context in
            var rows = TableRows(schema: schema)
            guard let signatures = signatures(context, cache: cache, flags: flags) else { return rows }
            var paths = context.equalities(for: "path")
            for c in context.constraints(for: "path") where c.op == .like {
                paths += expand(c.expr)
            }
            let delay = flags[.yaraDelay]
            var seen = Set<String>()
            for path in paths where seen.insert(path).inserted {
                for s in signatures {
                    let result = Yara.scan(s.rules, path: path, maxBytes: flags[.readMax], timeout: flags[.yaraScanTimeout], strings: s.strings)
                    guard case .success(let found) = result else { continue }
                    var row: [SQLValue] = [.text(path), .text(found.matches), .integer(Int64(found.count)), "", "", "", .text(found.strings), .text(found.tags), "", 0]
                    row[s.column] = .text(s.value)
                    rows.appendRow(row)
                    // osquery's pause between scans (memory spikes of large rule sets).
                    if delay > 0 { usleep(useconds_t(min(delay, 10_000) * 1000)) }
                }
            }
            return rows
        }
    }

    /// A LIKE pattern as osquery's `resolveFilePattern(GLOB_FILES)`: `%` and `_` as glob
    /// wildcards, regular readable files only.
    static func expand(_ pattern: String) -> [String] {
        var glob = ""
        for ch in pattern {
            switch ch {
            case "%": glob.append("*")
            case "_": glob.append("?")
            case "*", "?", "[", "\\": glob += "\\" + String(ch)
            default: glob.append(ch)
            }
        }
        var g = glob_t()
        defer { globfree(&g) }
        guard Glibc.glob(glob, 0, nil, &g) == 0 else { return [] }
        var out: [String] = []
        for i in 0..<Int(g.gl_pathc) {
            guard let p = g.gl_pathv[i] else { continue }
            var st = stat()
            if stat(p, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, access(p, R_OK) == 0 { out.append(String(cString: p)) }
        }
        return out
    }

    /// `yara_process` (specs/yara_process.table): scans the memory of the processes `pid`
    /// names with the same rules as yara_file; a row for each scan libyara completes (none for
    /// a process that is gone, a kernel thread, or this process itself), each bounded by
    /// `--yara_scan_timeout`. sig_group, sigfile and sigrule fill the same columns.
    package static let processSchema = TableSchema(
        name: "yara_process",
        columns: [
            TableColumn("pid", .integer, [.index, .required]), TableColumn("matches", .text), TableColumn("count", .integer),
            TableColumn("sig_group", .text, .additional), TableColumn("sigfile", .text, .additional),
            TableColumn("sigrule", .text, [.additional, .hidden]), TableColumn("strings", .text), TableColumn("tags", .text),
            TableColumn("sigurl", .text, [.additional, .hidden]), TableColumn("pid_with_namespace", .integer, [.additional, .hidden]),
        ])

    package static func processTable(cache: YaraRuleCache, flags: Flags) -> FunctionTable {
        FunctionTable(processSchema) { context in
            var rows = TableRows(schema: processSchema)
            guard let signatures = signatures(context, cache: cache, flags: flags) else { return rows }
            let delay = flags[.yaraDelay]
            var seen = Set<Int32>()
            for text in context.equalities(for: "pid") {
                // osquery's pid is a C int; 0 and negatives name no process.
                guard let pid = Int32(text), pid > 0, seen.insert(pid).inserted else { continue }
                // Reading its own memory would scan the scanner, rules and buffers included.
                guard pid != getpid() else { continue }
                for s in signatures {
                    switch Yara.scan(s.rules, pid: pid, timeout: flags[.yaraScanTimeout], strings: s.strings) {
                    case .success(let found):
                        var row: [SQLValue] = [.integer(Int64(pid)), .text(found.matches), .integer(Int64(found.count)), "", "", "",
                                               .text(found.strings), .text(found.tags), "", 0]
                        row[s.column] = .text(s.value)
                        rows.appendRow(row)
                    case .failure(let e):
                        StatusLog.info(e.message)
                    }
                    if delay > 0 { usleep(useconds_t(min(delay, 10_000) * 1000)) }
                }
            }
            return rows
        }
    }
}
