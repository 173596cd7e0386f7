import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One configured pattern, resolved to what inotify watches: directories, each with the names
/// (a leaf pattern) whose events count. A file is watched through its directory, so a file
/// replaced by a rename (what editors do) stays watched.
struct ResolvedPattern: Sendable, Equatable {
    var category: String
    /// Directories to watch, with a trailing '/'.
    var directories: [String]
    /// fnmatch pattern for the event's name within a directory; nil matches every name.
    var leaf: String?
    /// `%%`: every directory below, including new ones.
    var recursive: Bool
}

enum FilePatterns {
    /// Longest pattern taken from a config (longer ones are refused with a status line).
    static let maxPatternBytes = 4096

    /// osquery's wildcards as fnmatch's: `%%` → `**`, `%` → `*`.
    static func globbed(_ pattern: String) -> String {
        pattern.replacingOccurrences(of: "%%", with: "**").replacingOccurrences(of: "%", with: "*")
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// What `pattern` (osquery's rules, core.md §3.2) watches; an error text when it is refused.
    static func resolve(_ pattern: String, category: String) -> Result<[ResolvedPattern], EventError> {
        guard !pattern.isEmpty else { return .success([]) }
        guard pattern.utf8.count <= maxPatternBytes else {
            return .failure(EventError("file_paths pattern of \(pattern.utf8.count) bytes in category \(category) is too long"))
        }
        guard pattern.hasPrefix("/"), !pattern.utf8.contains(0) else {
            return .failure(EventError("file_paths pattern is not an absolute path: \(pattern.prefix(256))"))
        }
        var path = globbed(pattern)
        var recursive = false
        if let r = path.range(of: "**") {
            recursive = true
            path = String(path[..<r.lowerBound])
        }
        var leaf: String?
        if !path.hasSuffix("/"), path.contains("*") {
            // A wildcard in the last component: watch its directory, filter names.
            let slash = path.lastIndex(of: "/")!
            let name = String(path[path.index(after: slash)...])
            if name.contains("*") {
                leaf = name
                path = String(path[...slash])
            }
        }
        var bases: [String]
        if path.contains("*") {
            // A wildcard in the stem is resolved now (osquery: at configure time).
            bases = expand(path)
        } else {
            bases = [path]
        }
        var out: [ResolvedPattern] = []
        for base in bases {
            if base.hasSuffix("/") || isDirectory(base) {
                let dir = base.hasSuffix("/") ? base : base + "/"
                out.append(ResolvedPattern(category: category, directories: [dir], leaf: leaf, recursive: recursive))
            } else {
                // A file: its directory, its name only.
                guard let slash = base.lastIndex(of: "/") else { continue }
                let dir = String(base[...slash])
                let name = String(base[base.index(after: slash)...])
                out.append(ResolvedPattern(category: category, directories: [dir], leaf: escapeFnmatch(name), recursive: false))
            }
        }
        return .success(out)
    }

    /// A literal name as an fnmatch pattern.
    static func escapeFnmatch(_ name: String) -> String {
        var out = ""
        for c in name {
            if c == "*" || c == "?" || c == "[" || c == "\\" { out.append("\\") }
            out.append(c)
        }
        return out
    }

    /// glob(3) of a pattern with wildcards in its stem (no sorting needed, no errors fatal).
    static func expand(_ pattern: String) -> [String] {
        var g = glob_t()
        defer { globfree(&g) }
        guard glob(pattern, GLOB_NOSORT | GLOB_MARK, nil, &g) == 0 else { return [] }
        var out: [String] = []
        for i in 0..<Int(g.gl_pathc) {
            if let p = g.gl_pathv[i] { out.append(String(cString: p)) }
        }
        return out.sorted()
    }

    static func matches(_ pattern: String, _ name: String) -> Bool {
        fnmatch(pattern, name, 0) == 0
    }

    /// An `exclude_paths` pattern: `%%`/`**` at the end excludes everything below; otherwise
    /// fnmatch with `/` matched only literally.
    static func excluded(_ path: String, by patterns: [String]) -> Bool {
        for p in patterns {
            let g = globbed(p)
            if let r = g.range(of: "**") {
                if path.hasPrefix(String(g[..<r.lowerBound])) { return true }
            } else if fnmatch(g, path, FNM_PATHNAME) == 0 {
                return true
            } else if g.hasSuffix("/"), path == String(g.dropLast()) || path.hasPrefix(g) && !path.dropFirst(g.count).contains("/") {
                // "/dir/" excludes the directory's direct children.
                return true
            }
        }
        return false
    }
}
