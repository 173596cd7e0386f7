package import OsqueryProtocol
package import ThriftCodec

/// A plugin's answer to one call: a status and rows, as osquery's `ExtensionResponse` carries
/// them. What an ``OsqueryClient`` `call` returns, and what a plugin's `handle` answers with.
///
/// ```swift
/// return .ok([["results": json]])          // success with rows
/// return .failure("unknown action \(a)")   // status 1 and the message the core reports
/// ```
public struct PluginResponse: Sendable, Hashable {
    /// The status code: 0 for success (a logger's `features` answer carries its features here).
    public var code: Int32
    /// The status message: `OK` on success, the reason on failure.
    public var message: String
    /// The rows, each a column (or key) → value map.
    public var rows: [[String: String]]

    /// A response with a status and rows.
    /// - Parameters:
    ///   - code: the status code; 0 is success.
    ///   - message: the status message.
    ///   - rows: the rows.
    public init(code: Int32 = 0, message: String = "OK", rows: [[String: String]] = []) {
        self.code = code
        self.message = message
        self.rows = rows
    }

    /// A success with rows.
    /// - Parameter rows: the reply's rows; none by default.
    /// - Returns: a response with status `{0, "OK"}` and `rows`.
    public static func ok(_ rows: [[String: String]] = []) -> PluginResponse { PluginResponse(rows: rows) }

    /// A failure with a message (code 1 by default).
    /// - Parameters:
    ///   - message: the status message the core reports.
    ///   - code: the status code.
    /// - Returns: a response with that status and no rows.
    public static func failure(_ message: String, code: Int32 = 1) -> PluginResponse {
        PluginResponse(code: code, message: message)
    }

    /// The wire value's status and rows (bytes that are not UTF-8 are replaced).
    package init(_ response: ExtensionResponse) {
        self.init(
            code: response.status.code, message: response.status.message.lossyString,
            rows: response.response.map(\.strings))
    }

    /// As the wire value: each row's keys in sorted order (as osquery's `std::map` sends them).
    package var wire: ExtensionResponse {
        ExtensionResponse(
            status: ExtensionStatus(code: code, message: ThriftString(message)), response: rows.map(StringMap.sorted))
    }
}

extension StringMap {
    /// The map as Swift strings (bytes that are not UTF-8 are replaced; the last of repeated
    /// keys counts).
    package var strings: [String: String] {
        var out: [String: String] = [:]
        for (k, v) in self { out[k.lossyString] = v.lossyString }
        return out
    }

    /// A row from a dictionary, its keys in sorted order (a dictionary's own order changes from
    /// run to run).
    package static func sorted(_ row: [String: String]) -> StringMap {
        var m = StringMap(minimumCapacity: row.count)
        for (k, v) in row.sorted(by: { $0.key < $1.key }) { m.append(ThriftString(k), ThriftString(v)) }
        return m
    }
}
