import OsqueryEngine
internal import CMagic
internal import CAugeas
internal import CSystemHeaders
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// osquery's tables about what is in or on a file: extended_attributes, magic, augeas.
enum FileContentTables {
    // MARK: extended_attributes

    /// libcap's file capabilities, loaded at run time: libcap2 is on every Debian system, its
    /// headers are not needed for three calls.
    struct Libcap: @unchecked Sendable {
        typealias GetFile = @convention(c) (UnsafePointer<CChar>) -> OpaquePointer?
        typealias ToText = @convention(c) (OpaquePointer, UnsafeMutablePointer<Int>?) -> UnsafeMutablePointer<CChar>?
        typealias Free = @convention(c) (UnsafeMutableRawPointer?) -> Int32
        let getFile: GetFile, toText: ToText, free: Free

        static let shared: Libcap? = {
            guard let lib = dlopen("libcap.so.2", RTLD_NOW | RTLD_LOCAL) else {
                OnceLog.shared.info("libcap is not available: extended_attributes shows security.capability raw")
                return nil
            }
            func symbol<T>(_ name: String, _: T.Type) -> T? { dlsym(lib, name).map { unsafeBitCast($0, to: T.self) } }
            guard let g = symbol("cap_get_file", GetFile.self), let t = symbol("cap_to_text", ToText.self),
                  let f = symbol("cap_free", Free.self) else { return nil }
            return Libcap(getFile: g, toText: t, free: f)
        }()

        /// The capabilities as cap_to_text prints them ("" when none); nil when they could not be read.
        func text(_ path: PathBytes) -> String? {
            guard let caps = withCPath(path, { getFile($0) }) else { return errno == ENODATA ? "" : nil }
            defer { _ = free(UnsafeMutableRawPointer(caps)) }
            guard let text = toText(caps, nil) else { return "" }
            defer { _ = free(text) }
            return String(cString: text)
        }
    }

    /// The names and values of a file's extended attributes, sorted by name (symbolic links
    /// followed, as osquery's open does); nil when the file is missing. Path calls, not an
    /// open file: a FIFO or device is never opened.
    static func xattrs(_ path: PathBytes) -> [(name: String, value: [UInt8])]? {
        var size = withCPath(path) { listxattr($0, nil, 0) }
        if size < 0 { return errno == ENOENT ? nil : [] }
        var names = [CChar](repeating: 0, count: max(size, 1))
        size = withCPath(path) { listxattr($0, &names, names.count) }
        guard size > 0 else { return size < 0 && errno == ENOENT ? nil : [] }
        var out: [(String, [UInt8])] = []
        for raw in names[0..<size].split(separator: 0) {
            let name = String(decoding: raw.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            // The kernel caps a value at 64 KiB (XATTR_SIZE_MAX): the read is bounded.
            var value = [UInt8](repeating: 0, count: 65536)
            let n = withCPath(path) { getxattr($0, name, &value, value.count) }
            guard n >= 0 else { continue }
            out.append((name, Array(value[0..<n])))
        }
        return out.sorted { $0.0 < $1.0 }
    }

    static func extendedAttributes() -> FunctionTable {
        table("extended_attributes", [
            col("path", .text, [.required, .optimized]), col("directory", .text, [.required, .optimized]),
            col("key", .text), col("value", .text), col("base64", .integer),
        ]) { context, schema in
            var rows = TableRows(schema: schema)
            // osquery reads the paths named by `path` (= and LIKE); `directory` only satisfies
            // the requirement.
            var paths: [PathBytes] = []
            var seen = Set<PathBytes>()
            for c in context.constraints(for: "path") {
                let found: [PathBytes]
                switch c.op {
                case .equals: found = [PathResolver.rawBytes(c)]
                case .like: found = PathResolver.expandLike(c.expr)
                default: continue
                }
                for p in found where seen.insert(p).inserted { paths.append(p) }
            }
            paths.sort { $0.lexicographicallyPrecedes($1) }
            for path in paths {
                guard let attributes = xattrs(path) else { continue }
                var directory = path
                while directory.count > 1 && directory.last == UInt8(ascii: "/") { directory.removeLast() }
                if let slash = directory.lastIndex(of: UInt8(ascii: "/")) {
                    directory = slash == 0 ? [UInt8(ascii: "/")] : Array(directory[..<slash])
                } else {
                    directory = []
                }
                func add(_ key: String, _ value: SQLValue, base64: Bool) {
                    rows.append(.text(bytes: path))
                    rows.append(.text(bytes: directory))
                    rows.append(.text(key))
                    rows.append(value)
                    rows.append(.integer(base64 ? 1 : 0))
                }
                let capability = "security.capability"
                var capabilitiesDecoded = false
                if attributes.contains(where: { $0.name == capability }), let caps = Libcap.shared?.text(path) {
                    capabilitiesDecoded = true
                    if !caps.isEmpty { add(capability, .text(caps), base64: false) }
                }
                for (name, value) in attributes {
                    if name == capability && capabilitiesDecoded { continue }
                    if value.isEmpty {
                        add(name, .text(""), base64: true)
                        continue
                    }
                    // Printable: NUL-terminated, every byte before it printable ASCII.
                    if value.last == 0, value.dropLast().allSatisfy({ $0 >= 0x20 && $0 <= 0x7e }) {
                        add(name, .text(bytes: value.dropLast()), base64: false)
                    } else {
                        add(name, .text(Base64.encode(value.last == 0 ? Array(value.dropLast()) : value)), base64: true)
                    }
                }
            }
            return rows
        }
    }

    // MARK: magic

    /// The magic databases osquery loads when the query names none.
    static let defaultMagicFiles = ["/usr/share/file/magic.mgc", "/usr/share/misc/magic.mgc"]

    static func magic(log: OnceLog = .shared) -> FunctionTable {
        table("magic", [
            col("path", .text, [.index, .required]), col("magic_db_files", .text, .additional), col("data", .text),
            col("mime_type", .text), col("mime_encoding", .text),
        ]) { context, schema in
            var rows = TableRows(schema: schema)
            let asked = context.equalities(for: "magic_db_files")
            let databases = (asked.isEmpty ? defaultMagicFiles : asked).joined(separator: ":")
            guard let cookie = magic_open(MAGIC_NONE) else {
                log.info("Unable to initialize magic library")
                return rows
            }
            defer { magic_close(cookie) }
            guard magic_load(cookie, databases) == 0 else {
                let reason = magic_error(cookie).map { String(cString: $0) } ?? ""
                StatusLog.warning("Unable to load magic list of database: \(databases) because: \(reason)")
                return rows
            }
            func describe(_ path: String, _ flags: Int32) -> SQLValue {
                // osquery leaves the last flags set for the next path; each path here starts at none.
                magic_setflags(cookie, flags)
                return magic_file(cookie, path).map { .text(String(cString: $0)) } ?? .null
            }
            // libmagic reads at most its bytes_max (1 MiB) of a file and does not open FIFOs
            // or devices (no MAGIC_DEVICES): bounded for any path.
            for path in context.equalities(for: "path") {
                rows.append(.text(path))
                rows.append(.text(databases))
                rows.append(describe(path, MAGIC_NONE))
                rows.append(describe(path, MAGIC_MIME_TYPE))
                rows.append(describe(path, MAGIC_MIME_ENCODING))
            }
            return rows
        }
    }

    // MARK: augeas

    /// One libaugeas handle for the process, as osquery keeps one: it is initialized once and
    /// reloads (only files that changed) on each scan; calls are serialized.
    final class Augeas: Sendable {
        private let state = Mutex<AugeasState>(AugeasState())

        struct AugeasState: ~Copyable {
            var handle: OpaquePointer?
            var failed = false
            var lenses = ""
        }

        static let shared = Augeas()

        /// Runs `body` with a loaded handle, or logs why there is none.
        func withLoaded(lenses: String, log: OnceLog, _ body: (OpaquePointer) -> Void) {
            state.withLock { (s: inout AugeasState) in
                if s.handle == nil && (!s.failed || s.lenses != lenses) {
                    s.lenses = lenses
                    let flags = UInt32(OSQ_AUG_NO_ERR_CLOSE | OSQ_AUG_NO_LOAD | OSQ_AUG_NO_STDINC | OSQ_AUG_SAVE_NOOP)
                    let handle = osq_aug_init(nil, lenses, flags)
                    if handle == nil {
                        log.info("An error has occurred while trying to initialize augeas"
                            + (osq_aug_available() == 0 ? ": libaugeas.so.0 is not installed" : ""))
                        s.failed = true
                    } else if osq_aug_error(handle) != Int32(OSQ_AUG_NOERROR) {
                        log.info("An error has occurred while trying to initialize augeas: " + String(cString: osq_aug_error_message(handle)))
                        osq_aug_close(handle)
                        s.failed = true
                    } else {
                        s.handle = handle
                        s.failed = false
                    }
                }
                guard let handle = s.handle else { return }
                guard osq_aug_load(handle) == 0 else {
                    StatusLog.error("An error has occurred while trying to load augeas: " + String(cString: osq_aug_error_message(handle)))
                    return
                }
                body(handle)
            }
        }
    }

    /// An augeas path expression for a `node` or `path` constraint, as osquery builds it:
    /// LIKE's `%%` becomes `/*` and `%` `*`; a file path is looked up under /files, itself
    /// and (unless it ends in a wildcard) everything below it.
    static func augeasPatterns(_ input: String, like: Bool, path: Bool) -> [String] {
        var pattern = path ? "/files" + input : input
        if like {
            pattern = pattern.replacingAll("%%", with: "/*").replacingAll("%", with: "*")
        }
        if path && !pattern.hasSuffix("*") { return [pattern, pattern + "//*"] }
        return [pattern]
    }

    static func augeas(flags: Flags, log: OnceLog = .shared, handle: Augeas = .shared) -> FunctionTable {
        table("augeas", [
            col("node", .text, .index), col("value", .text), col("label", .text), col("path", .text, .additional),
        ], aliases: ["configurations"]) { context, schema in
            var rows = TableRows(schema: schema)
            var patterns: [String] = []
            func add(_ list: [String]) { for p in list where !patterns.contains(p) { patterns.append(p) } }
            for c in context.constraints(for: "node") {
                if c.op == .equals { add([c.expr]) }
                if c.op == .like, !c.expr.isEmpty { add(augeasPatterns(c.expr, like: true, path: false)) }
            }
            for c in context.constraints(for: "path") where !c.expr.isEmpty {
                if c.op == .equals { add(augeasPatterns(c.expr, like: false, path: true)) }
                if c.op == .like { add(augeasPatterns(c.expr, like: true, path: true)) }
            }
            let expression = patterns.isEmpty ? "/files//*" : patterns.joined(separator: "|")
            handle.withLoaded(lenses: flags[.augeasLenses], log: log) { aug in
                guard osq_aug_defvar(aug, "matches", expression) != -1 else {
                    StatusLog.error("An error has occurred while trying to query augeas: " + String(cString: osq_aug_error_message(aug)))
                    return
                }
                var matches: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
                let count = osq_aug_match(aug, "$matches", &matches)
                guard let matches else { return }
                defer { free(matches) }
                guard count >= 0 else {
                    StatusLog.error("An error has occurred while trying to query augeas: " + String(cString: osq_aug_error_message(aug)))
                    return
                }
                for i in 0..<Int(count) {
                    guard let match = matches[i] else { continue }
                    let node = String(cString: match)
                    free(match)
                    var value: UnsafePointer<CChar>?, label: UnsafePointer<CChar>?
                    var file: UnsafeMutablePointer<CChar>?
                    guard osq_aug_ns_attr(aug, "matches", Int32(i), &value, &label, &file) != -1 else {
                        for j in (i + 1)..<Int(count) { free(matches[j]) }
                        return
                    }
                    var path = ""
                    if let file {
                        path = String(String(cString: file).dropFirst(6))
                        free(file)
                    } else if node.hasPrefix("/files") {
                        path = String(node.dropFirst(6))
                    }
                    rows.append(.text(node))
                    rows.append(.text(value.map { String(cString: $0) } ?? ""))
                    rows.append(.text(label.map { String(cString: $0) } ?? ""))
                    rows.append(.text(path))
                }
            }
            return rows
        }
    }
}

extension String {
    /// Every occurrence of `needle` replaced, left to right.
    func replacingAll(_ needle: String, with replacement: String) -> String {
        guard !needle.isEmpty else { return self }
        var out = ""
        var rest = Substring(self)
        while let r = rest.firstRange(of: needle) {
            out += rest[..<r.lowerBound]
            out += replacement
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}
