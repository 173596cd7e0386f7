import Crypto
import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

/// Browser and editor add-ons in users' profile directories: chrome_extensions and
/// chrome_extension_content_scripts (every Chromium-based browser's profiles), firefox_addons
/// (extensions.json), vscode_extensions (extensions/extensions.json of VS Code and its forks).
extension PackageTables {
    /// osquery's Linux profile roots, in its order (kLinuxPathList).
    static let chromeRoots: [(browser: String, suffix: String)] = [
        ("chrome", ".config/google-chrome"),
        ("chrome_beta", ".config/google-chrome-beta"),
        ("chrome_dev", ".config/google-chrome-unstable"),
        ("brave", ".config/BraveSoftware/Brave-Browser"),
        ("brave", ".var/app/com.brave.Browser/config/BraveSoftware/Brave-Browser"),
        ("brave_beta", ".config/BraveSoftware/Brave-Browser-Beta"),
        ("brave_beta", ".var/app/com.brave.Browser/config/BraveSoftware/Brave-Browser-Beta"),
        ("brave_nightly", ".config/BraveSoftware/Brave-Browser-Nightly"),
        ("brave_nightly", ".var/app/com.brave.Browser/config/BraveSoftware/Brave-Browser-Nightly"),
        ("chromium", ".config/chromium"),
        ("chromium", "snap/chromium/common/chromium"),
        ("chromium", ".var/app/org.chromium.Chromium/config/chromium"),
        ("yandex", ".config/yandex-browser-beta"),
        ("edge", ".config/microsoft-edge"),
        ("edge_beta", ".config/microsoft-edge-beta"),
        ("edge_dev", ".config/microsoft-edge-dev"),
        ("opera", ".config/opera"),
        ("vivaldi", ".config/vivaldi"),
        ("vivaldi", ".var/app/com.vivaldi.Vivaldi/config/vivaldi"),
    ]

    static func chromeExtensions(flags: Flags, users: @escaping Users = { ContextUsers.fromContext($0, table: "chrome_extensions") }) -> FunctionTable {
        table("chrome_extensions", [
            col("browser_type", .text), col("uid", .bigint, [.index, .optimized]), col("name", .text), col("profile", .text),
            col("profile_path", .text), col("referenced_identifier", .text), col("identifier", .text),
            col("version", .text, .collateVersion), col("description", .text), col("default_locale", .text),
            col("current_locale", .text), col("update_url", .text), col("author", .text), col("persistent", .integer),
            col("path", .text), col("permissions", .text), col("permissions_json", .text, .hidden),
            col("optional_permissions", .text), col("optional_permissions_json", .text, .hidden),
            col("manifest_hash", .text, .collateNocase), col("referenced", .bigint), col("from_webstore", .text),
            col("state", .text), col("install_time", .text), col("install_timestamp", .bigint),
            col("manifest_json", .text, .hidden), col("key", .text, .hidden),
        ], columnAliases: [(alias: "locale", target: "default_locale")], attributes: .userBased) { context, schema in
            var rows = TableRows(schema: schema)
            for profile in ChromeProfiles.read(users(context), flags: flags, table: "chrome_extensions") {
                for e in profile.extensions {
                    func p(_ name: String, _ fallback: String = "") -> SQLValue { .text(e.properties[name] ?? fallback) }
                    func s(_ name: String) -> SQLValue { .text(e.settings[name] ?? "") }
                    let installTime = e.settings["install_time"] ?? ""
                    var timestamp: Int64 = 0
                    if let webkit = Int64(installTime) {
                        let unix = webkit / 1_000_000 - 11_644_473_600
                        if unix >= 0 { timestamp = unix }
                    }
                    rows.appendRow([
                        .text(profile.browser), .integer(profile.uid), p("name"), .text(profile.name), .text(profile.path),
                        s("referenced_identifier"), .text(e.identifier ?? ""), p("version"), p("description"),
                        p("default_locale"), p("current_locale"), p("update_url"), p("author"),
                        .integer((e.properties["persistent"] ?? "").lowercased() == "true" ? 1 : 0), .text(e.path),
                        p("permissions"), p("permissions_json", "{}"), p("optional_permissions"),
                        p("optional_permissions_json", "{}"), .text(e.manifestHash), .integer(e.referenced ? 1 : 0),
                        s("from_webstore"), s("state"), .text(installTime), .integer(timestamp), .text(e.manifestJSON), .null,
                    ])
                }
            }
            return rows
        }
    }

    static func chromeExtensionContentScripts(flags: Flags, users: @escaping Users = { ContextUsers.fromContext($0, table: "chrome_extension_content_scripts") }) -> FunctionTable {
        table("chrome_extension_content_scripts", [
            col("browser_type", .text), col("uid", .bigint, [.index, .optimized]), col("identifier", .text),
            col("version", .text, .collateVersion), col("script", .text), col("match", .text), col("profile_path", .text),
            col("path", .text), col("referenced", .bigint),
        ], attributes: .userBased) { context, schema in
            var rows = TableRows(schema: schema)
            for profile in ChromeProfiles.read(users(context), flags: flags, table: "chrome_extension_content_scripts") {
                for e in profile.extensions {
                    for (script, match) in e.contentScripts {
                        // osquery looks the identifier up under a settings key it never stores.
                        rows.appendRow([
                            .text(profile.browser), .integer(profile.uid), "", .text(e.properties["version"] ?? ""),
                            .text(script), .text(match), .text(profile.path), .text(e.path), .integer(e.referenced ? 1 : 0),
                        ])
                    }
                }
            }
            return rows
        }
    }
}

/// Chromium profiles as osquery reads them (osquery/tables/applications/chrome/utils.cpp):
/// JSON through Boost.PropertyTree (keys without case, every value a string).
enum ChromeProfiles {
    struct Extension {
        var path: String
        var referenced = false
        var properties: [String: String] = [:]
        var settings: [String: String] = [:]
        var manifestJSON = ""
        var manifestHash = ""
        var contentScripts: [(String, String)] = []
        var identifier: String?
    }

    struct Profile {
        var browser: String
        var uid: Int64
        var path: String
        var name = ""
        var extensions: [Extension] = []
    }

    static func canonical(_ path: String) -> String { PackageFS.realPath(path) ?? path }

    static func isProfile(_ path: String) -> Bool {
        access(path + "/Preferences", R_OK) == 0 || access(path + "/Secure Preferences", R_OK) == 0
    }

    static func read(_ users: [HomeUser], flags: Flags, table: String) -> [Profile] {
        var out: [Profile] = []
        defer { if out.isEmpty { OnceLog.shared.info("\(table): no Chromium-based browser profile in the users' home directories") } }
        for user in users {
            for (browser, suffix) in PackageTables.chromeRoots {
                let root = canonical(user.directory + "/" + suffix)
                if isProfile(root) {
                    if let p = profile(browser, user.uid, root, flags) { out.append(p) }
                    continue
                }
                for sub in PackageFS.directories(in: root, recursive: false) {
                    let path = canonical(sub)
                    if isProfile(path), let p = profile(browser, user.uid, path, flags) { out.append(p) }
                }
            }
        }
        return out
    }

    /// The extension directories a preferences document names (`extensions.settings.*.path`).
    static func referencedPaths(_ preferences: JSONValue, profile: String) -> [(id: String, path: String, settings: JSONValue)] {
        guard let settings = PTree.child(preferences, "extensions.settings") ?? PTree.child(preferences, "extensions.opsettings") else { return [] }
        var out: [(String, String, JSONValue)] = []
        for (id, entry) in PTree.children(settings) {
            guard let node = PTree.child(entry, "path") else { continue }
            let value = PTree.data(node)
            let absolute = value.hasPrefix("/") ? value : profile + "/Extensions/" + value
            out.append((id, canonical(absolute), entry))
        }
        return out
    }

    static func profile(_ browser: String, _ uid: Int64, _ path: String, _ flags: Flags) -> Profile? {
        // osquery needs both files readable, and at least one not empty.
        guard let preferencesText = PackageFS.text(path + "/Preferences", flags: flags),
              let secureText = PackageFS.text(path + "/Secure Preferences", flags: flags),
              !(preferencesText.isEmpty && secureText.isEmpty) else { return nil }
        guard let preferences = try? JSONValue.parse(preferencesText), let secure = try? JSONValue.parse(secureText) else {
            StatusLog.error("Failed to parse the following profile: \(path)")
            return nil
        }
        var result = Profile(browser: browser, uid: uid, path: path)
        let name = PTree.child(preferences, "profile").flatMap { PTree.child($0, "name") }.map(PTree.data) ?? ""
        let secureName = PTree.child(secure, "profile").flatMap { PTree.child($0, "name") }.map(PTree.data) ?? ""
        result.name = name.isEmpty ? secureName : name
        if result.name.isEmpty && browser != "opera" {
            StatusLog.error("Failed to acquire the name of the following profile: \(path)")
            return nil
        }
        var unreferenced: [String: [UInt8]] = [:]
        for idDirectory in PackageFS.directories(in: path + "/Extensions", recursive: false) {
            for versionDirectory in PackageFS.directories(in: idDirectory, recursive: false) {
                let extensionPath = canonical(versionDirectory)
                if let manifest = BoundedFile.read(extensionPath + "/manifest.json", limit: flags[.readMax]) {
                    unreferenced[extensionPath] = manifest
                }
            }
        }
        var referenced: [String: [UInt8]] = [:]
        let named = referencedPaths(preferences, profile: path) + referencedPaths(secure, profile: path)
        for (_, extensionPath, _) in named where referenced[extensionPath] == nil {
            if let manifest = unreferenced.removeValue(forKey: extensionPath) {
                referenced[extensionPath] = manifest
            } else if let manifest = BoundedFile.read(extensionPath + "/manifest.json", limit: flags[.readMax]) {
                referenced[extensionPath] = manifest
            }
        }
        for (extensionPath, manifest) in unreferenced.sorted(by: { $0.key < $1.key }) {
            if let e = parseExtension(extensionPath, manifest, flags: flags) { result.extensions.append(e) }
        }
        for (extensionPath, manifest) in referenced.sorted(by: { $0.key < $1.key }) {
            guard var e = parseExtension(extensionPath, manifest, flags: flags) else { continue }
            // The settings entry of this extension: the Preferences' first, else the Secure Preferences'.
            let entry = referencedPaths(preferences, profile: path).first { $0.path == extensionPath }
                ?? referencedPaths(secure, profile: path).first { $0.path == extensionPath }
            if let entry {
                e.settings["referenced_identifier"] = entry.id
                for key in ["from_webstore", "state", "install_time"] {
                    if let node = PTree.child(entry.settings, key) { e.settings[key] = PTree.data(node) }
                }
            }
            e.referenced = true
            result.extensions.append(e)
        }
        return result
    }

    /// The manifest's properties (localized), content scripts, compact JSON, hash and the
    /// identifier its `key` gives; nil when the manifest is not JSON.
    static func parseExtension(_ path: String, _ manifest: [UInt8], flags: Flags) -> Extension? {
        var e = Extension(path: path)
        e.manifestHash = SHA256.hash(data: manifest).map { hexByte($0) }.joined()
        guard let document = try? JSONValue.parse(String(decoding: manifest, as: UTF8.self)) else {
            StatusLog.error("Failed to process the following extension: \(path)")
            return nil
        }
        for name in ["name", "update_url", "version", "author", "default_locale", "current_locale", "description", "key"] {
            if let node = PTree.child(document, name) { e.properties[name] = PTree.data(node) }
        }
        if let node = PTree.child(document, "background.persistent") { e.properties["persistent"] = PTree.data(node) }
        for name in ["permissions", "optional_permissions"] {
            guard let node = PTree.child(document, name) else { continue }
            var list = ""
            for (_, child) in PTree.children(node) {
                if !list.isEmpty { list += ", " }
                list += PTree.data(child)
            }
            e.properties[name] = list
            if let json = PTree.write(node) { e.properties[name + "_json"] = json }
        }
        localize(&e, flags: flags)
        if let scripts = PTree.child(document, "content_scripts") {
            for (_, entry) in PTree.children(scripts) {
                guard let matches = PTree.child(entry, "matches"), let js = PTree.child(entry, "js") else { continue }
                for (_, match) in PTree.children(matches) {
                    for (_, script) in PTree.children(js) { e.contentScripts.append((PTree.data(script), PTree.data(match))) }
                }
            }
        }
        e.manifestJSON = PTree.write(document) ?? ""
        e.identifier = identifier(fromKey: e.properties["key"])
        return e
    }

    /// `__MSG_name__` values from `_locales/<default_locale|current_locale|en>/messages.json`.
    static func localize(_ e: inout Extension, flags: Flags) {
        guard e.properties.values.contains(where: { $0.hasPrefix("__MSG_") }) else { return }
        let locale = e.properties["default_locale"] ?? e.properties["current_locale"] ?? "en"
        guard let messages = readJSONFile(e.path + "/_locales/" + locale + "/messages.json", flags: flags) else { return }
        for (name, value) in e.properties where value.hasPrefix("__MSG_") {
            let bytes = Array(value.utf8)
            guard bytes.count >= 8 else { continue }
            let key = String(decoding: bytes[6..<(bytes.count - 2)], as: UTF8.self)
            if let node = PTree.child(messages, key + ".message") { e.properties[name] = PTree.data(node) }
        }
    }

    /// Chromium's extension id: the first 128 bits of SHA-256 of the public key, each hex digit
    /// written as a letter a–p.
    static func identifier(fromKey key: String?) -> String? {
        guard let key, let decoded = base64Decode(key), !decoded.isEmpty else { return nil }
        let hex = SHA256.hash(data: decoded).map { hexByte($0) }.joined()
        return String(hex.prefix(32).map { c -> Character in
            let v = c.hexDigitValue ?? 0
            return Character(Unicode.Scalar(UInt8(97 + v)))
        })
    }

    /// osquery's base64 decode: newlines and trailing `=` dropped, nil on a character outside
    /// the alphabet, a trailing partial byte dropped.
    static func base64Decode(_ text: String) -> [UInt8]? {
        var chars = Array(text.utf8).filter { $0 != 0x0A && $0 != 0x0D }
        while chars.last == UInt8(ascii: "=") { chars.removeLast() }
        var out: [UInt8] = []
        var bits: UInt32 = 0, count = 0
        for c in chars {
            let v: UInt32
            switch c {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): v = UInt32(c - 65)
            case UInt8(ascii: "a")...UInt8(ascii: "z"): v = UInt32(c - 97 + 26)
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = UInt32(c - 48 + 52)
            case UInt8(ascii: "+"): v = 62
            case UInt8(ascii: "/"): v = 63
            default: return nil
            }
            bits = bits << 6 | v
            count += 6
            if count >= 8 {
                count -= 8
                out.append(UInt8((bits >> UInt32(count)) & 0xFF))
            }
        }
        return out
    }

    static func hexByte(_ b: UInt8) -> String {
        let digits = Array("0123456789abcdef")
        return String([digits[Int(b >> 4)], digits[Int(b & 15)]])
    }
}

/// A JSON document as Boost.PropertyTree holds it: keys compared without case, array
/// elements as children with empty keys, every value a string (containers have "").
enum PTree {
    static func children(_ v: JSONValue) -> [(String, JSONValue)] {
        switch v {
        case .object(let members): members
        case .array(let elements): elements.map { ("", $0) }
        default: []
        }
    }

    /// The node at a `.`-separated path, the first child of each name.
    static func child(_ v: JSONValue, _ path: String) -> JSONValue? {
        var node = v
        for part in path.split(separator: ".", omittingEmptySubsequences: false) {
            let wanted = part.lowercased()
            guard let next = children(node).first(where: { $0.0.lowercased() == wanted }) else { return nil }
            node = next.1
        }
        return node
    }

    static func data(_ v: JSONValue) -> String {
        switch v {
        case .string(let s), .number(let s): s
        case .bool(let b): b ? "true" : "false"
        case .null: "null"
        case .array, .object: ""
        }
    }

    /// `write_json(stream, node, false)`: compact, every leaf a string, an empty container as
    /// `""`, and a newline; nil where Boost refuses (a leaf with a value at the root).
    static func write(_ v: JSONValue) -> String? {
        if children(v).isEmpty, !data(v).isEmpty { return nil }
        var out = ""
        writeNode(v, &out)
        return out + "\n"
    }

    private static func writeNode(_ v: JSONValue, _ out: inout String) {
        let kids = children(v)
        if kids.isEmpty {
            out += "\""
            escape(data(v), &out)
            out += "\""
        } else if kids.allSatisfy({ $0.0.isEmpty }) {
            out += "["
            for (i, kid) in kids.enumerated() {
                if i > 0 { out += "," }
                writeNode(kid.1, &out)
            }
            out += "]"
        } else {
            out += "{"
            for (i, kid) in kids.enumerated() {
                if i > 0 { out += "," }
                out += "\""
                escape(kid.0, &out)
                out += "\":"
                writeNode(kid.1, &out)
            }
            out += "}"
        }
    }

    /// Boost's `create_escapes`: `"`, `\`, `/` and control characters escaped, other bytes as they are.
    private static func escape(_ s: String, _ out: inout String) {
        let hex = Array("0123456789ABCDEF")
        var bytes: [UInt8] = []
        bytes.reserveCapacity(s.utf8.count)
        for c in s.utf8 {
            switch c {
            case 0x20, 0x21, 0x23...0x2E, 0x30...0x5B, 0x5D...0xFF: bytes.append(c)
            case 0x08: bytes += Array("\\b".utf8)
            case 0x0C: bytes += Array("\\f".utf8)
            case 0x0A: bytes += Array("\\n".utf8)
            case 0x0D: bytes += Array("\\r".utf8)
            case 0x09: bytes += Array("\\t".utf8)
            case 0x2F: bytes += Array("\\/".utf8)
            case 0x22: bytes += Array("\\\"".utf8)
            case 0x5C: bytes += Array("\\\\".utf8)
            default: bytes += Array("\\u00".utf8) + [UInt8(hex[Int(c >> 4)].asciiValue!), UInt8(hex[Int(c & 15)].asciiValue!)]
            }
        }
        out += String(decoding: bytes, as: UTF8.self)
    }
}

extension PackageTables {
    /// Firefox profile parents under a home directory (kFirefoxPaths).
    static let firefoxRoots = ["/.mozilla/firefox/", "/snap/firefox/common/.mozilla/firefox/", "/.config/mozilla/firefox/"]

    static func firefoxAddons(flags: Flags, users: @escaping Users = { ContextUsers.fromContext($0, table: "firefox_addons") }) -> FunctionTable {
        table("firefox_addons", [
            col("uid", .bigint, [.additional, .optimized]), col("name", .text), col("identifier", .text, .index),
            col("creator", .text), col("type", .text), col("version", .text, .collateVersion), col("description", .text),
            col("source_url", .text), col("visible", .integer), col("active", .integer), col("disabled", .integer),
            col("autoupdate", .integer), col("location", .text), col("path", .text),
        ], attributes: .userBased) { context, schema in
            var rows = TableRows(schema: schema)
            var found = false
            for user in users(context) {
                var profiles: [String] = []
                for root in firefoxRoots {
                    let base = user.directory.hasSuffix("/") ? String(user.directory.dropLast()) + root : user.directory + root
                    profiles += PackageFS.directories(in: base, recursive: false)
                }
                for profile in profiles where !profile.hasSuffix("Crash Reports") && !profile.hasSuffix("Pending Pings") {
                    found = true
                    addFirefoxProfile(profile, uid: user.uid, flags: flags, to: &rows)
                }
            }
            if !found { OnceLog.shared.info("firefox_addons: no Firefox profile in the users' home directories") }
            return rows
        }
    }

    static func addFirefoxProfile(_ profile: String, uid: Int64, flags: Flags, to rows: inout TableRows) {
        let path = profile + "/extensions.json"
        guard FileIO.exists(path) else { return }
        guard let document = readJSONFile(path, flags: flags), document.isObject else {
            OnceLog.shared.info("firefox_addons: Failed to parse to JSON the extensions file at: \(path)")
            return
        }
        guard let addons = document.firstMember("addons")?.array else { return }
        let columns: [(String, String)] = [
            ("defaultLocale.name", "name"), ("id", "identifier"), ("defaultLocale.creator", "creator"), ("type", "type"),
            ("version", "version"), ("defaultLocale.description", "description"), ("sourceURI", "source_url"),
            ("visible", "visible"), ("active", "active"), ("applyBackgroundUpdates", "autoupdate"), ("location", "location"),
            ("path", "path"),
        ]
        for addon in addons where addon.isObject {
            var fields: [String: String] = [:]
            for (key, column) in columns {
                var node: JSONValue? = addon
                for part in key.split(separator: ".") { node = node?.isObject == true ? node?.firstMember(String(part)) : nil }
                if let node, let text = rapidjsonString(node) { fields[column] = text }
            }
            let disabled = ["softDisable", "appDisabled", "userDisabled"].contains { addon.firstMember($0).map(rapidjsonBool) ?? false }
            rows.append(.integer(uid))
            for column in ["name", "identifier", "creator", "type", "version", "description", "source_url"] {
                rows.append(fields[column].map { .text($0) } ?? .null)
            }
            for column in ["visible", "active"] { rows.append(fields[column].map { Int64($0).map { .integer($0) } ?? .null } ?? .null) }
            rows.append(.integer(disabled ? 1 : 0))
            rows.append(fields["autoupdate"].map { Int64($0).map { .integer($0) } ?? .null } ?? .null)
            rows.append(fields["location"].map { .text($0) } ?? .null)
            rows.append(fields["path"].map { .text($0) } ?? .null)
        }
    }

    /// osquery's `JSON::valueToString`: booleans as 1/0, integers in decimal, other numbers as
    /// `%f`, null as "null"; containers have none.
    static func rapidjsonString(_ v: JSONValue) -> String? {
        switch v {
        case .bool(let b): return b ? "1" : "0"
        case .string(let s): return s
        case .null: return "null"
        case .number(let text):
            if let i = Int64(text) { return String(i) }
            if let u = UInt64(text) { return String(u) }
            guard let d = Double(text) else { return nil }
            var buffer = [CChar](repeating: 0, count: 512)
            _ = withVaList([d]) { vsnprintf(&buffer, buffer.count, "%f", $0) }
            return cString(buffer)
        case .array, .object: return nil
        }
    }

    /// osquery's `JSON::valueToBool`.
    static func rapidjsonBool(_ v: JSONValue) -> Bool {
        switch v {
        case .bool(let b): return b
        case .string(let s): return s.lowercased() == "true" || s.lowercased() == "t"
        case .number(let text): return (Int64(text) ?? Double(text).map { Int64(exactly: $0.rounded(.towardZero)) ?? 1 } ?? 0) != 0
        default: return false
        }
    }
}

extension PackageTables {
    /// VS Code and its forks: the home directory each keeps its extensions under, and the
    /// edition osquery names (KPathList).
    static let vscodeRoots: [(String, String)] = [
        (".vscode-server", "vscode"), (".vscode", "vscode"), (".vscode-server-insiders", "vscode_insiders"),
        (".vscode-insiders", "vscode_insiders"), (".vscode-oss", "vscodium"), (".vscodium-server", "vscodium"),
        (".vscodium-insiders", "vscodium_insiders"), (".vscodium-server-insiders", "vscodium_insiders"),
        (".cursor", "cursor"), (".cursor-server", "cursor"), (".windsurf", "windsurf"), (".windsurf-server", "windsurf"),
        (".devin", "windsurf"), (".trae", "trae"), (".trae-server", "trae"),
    ]

    static func vscodeExtensions(flags: Flags, users: @escaping Users = { ContextUsers.fromContext($0, table: "vscode_extensions") }) -> FunctionTable {
        table("vscode_extensions", [
            col("name", .text), col("uuid", .text, .collateNocase), col("version", .text, .collateVersion), col("path", .text),
            col("publisher", .text), col("publisher_id", .text), col("installed_at", .bigint), col("prerelease", .integer),
            col("uid", .bigint, [.additional, .optimized]), col("vscode_edition", .text),
        ], attributes: .userBased) { context, schema in
            var rows = TableRows(schema: schema)
            // osquery walks a set ordered by (uid text, path, edition).
            var seen = Set<String>()
            var places: [(uid: Int64, path: String, edition: String)] = []
            for user in users(context) {
                for (directory, edition) in vscodeRoots {
                    let path = (user.directory.hasSuffix("/") ? user.directory : user.directory + "/") + directory
                    if seen.insert("\(user.uid)\u{0}\(path)\u{0}\(edition)").inserted { places.append((user.uid, path, edition)) }
                }
            }
            places.sort { (String($0.uid), $0.path, $0.edition) < (String($1.uid), $1.path, $1.edition) }
            var found = false
            defer { if !found { OnceLog.shared.info("vscode_extensions: no VS Code (or fork) extensions.json in the users' home directories") } }
            for place in places {
                let file = place.path + "/extensions/extensions.json"
                guard FileIO.exists(file) else { continue }
                found = true
                guard let document = readJSONFile(file, flags: flags), let list = document.array else {
                    OnceLog.shared.info("vscode_extensions: Could not parse vscode extensions.json from \(file)")
                    continue
                }
                for e in list {
                    guard e.isObject, let identifier = e.firstMember("identifier"), let metadata = e.firstMember("metadata"),
                          let location = e.firstMember("location"), identifier.isObject, metadata.isObject, location.isObject else { continue }
                    func text(_ v: JSONValue?) -> SQLValue { v?.stringValue.map { .text($0) } ?? .null }
                    var installed: SQLValue = .null
                    if case .number(let t)? = metadata.firstMember("installedTimestamp"), let v = Int64(t) { installed = .integer(v) }
                    var prerelease: SQLValue = .null
                    if case .bool(let b)? = metadata.firstMember("isPreReleaseVersion") { prerelease = .integer(b ? 1 : 0) }
                    rows.appendRow([
                        text(identifier.firstMember("id")), text(metadata.firstMember("id")), text(e.firstMember("version")),
                        text(location.firstMember("path")), text(metadata.firstMember("publisherDisplayName")),
                        text(metadata.firstMember("publisherId")), installed, prerelease, .integer(place.uid), .text(place.edition),
                    ])
                }
            }
            return rows
        }
    }
}
