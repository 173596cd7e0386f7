import Foundation

/// The outcome of one check.
public enum CheckStatus: String, Sendable {
    case pass = "PASS"
    case fail = "FAIL"
    case skip = "SKIP"
}

/// One line of the report: what was checked, against which osquery behaviour, and what happened.
public struct CheckResult: Sendable {
    public var id: String
    public var status: CheckStatus
    /// The osquery behaviour this check encodes: a section of docs/protocol.md, or its §6 check number.
    public var cite: String
    /// On failure: what was expected and what was seen. On a skip: why.
    public var detail: String
    /// Set when the target behaves as our deliberate deviation from osquery (docs/differences-from-osquery.md).
    public var differsOnPurpose: String?

    public init(id: String, status: CheckStatus, cite: String, detail: String = "", differsOnPurpose: String? = nil) {
        self.id = id
        self.status = status
        self.cite = cite
        self.detail = detail
        self.differsOnPurpose = differsOnPurpose
    }
}

/// All results of a run, in order.
public struct Report: Sendable {
    public var mode: String
    public var results: [CheckResult] = []

    public init(mode: String) { self.mode = mode }

    public var passed: Int { results.count { $0.status == .pass } }
    public var failed: Int { results.count { $0.status == .fail } }
    public var skipped: Int { results.count { $0.status == .skip } }
    /// Exit status: 0 only when nothing failed.
    public var exitCode: Int32 { failed == 0 ? 0 : 1 }

    public func result(_ id: String) -> CheckResult? { results.first { $0.id == id } }

    public var summary: String {
        var s = "\(passed) passed, \(failed) failed"
        if skipped > 0 { s += ", \(skipped) skipped" }
        return s
    }

    /// What the `§` citations are sections of: osquery's behaviour, with the osquery sources each
    /// fact was read from, in this repository's docs.
    public static let citedDocument = "docs/protocol.md"

    /// One line per check, then the summary line.
    public var text: String {
        var out = ""
        for r in results {
            var line = "\(r.id) \(r.status.rawValue) [\(Report.citedDocument) \(r.cite)]"
            if let why = r.differsOnPurpose { line += " (differs on purpose: \(why))" }
            if !r.detail.isEmpty { line += " \(r.detail)" }
            out += line.replacingOccurrences(of: "\n", with: "\\n") + "\n"
        }
        return out + summary + "\n"
    }

    /// The same, for machines.
    public var json: String {
        let checks: [[String: Any]] = results.map { r in
            var d: [String: Any] = ["id": r.id, "status": r.status.rawValue, "cite": r.cite, "detail": r.detail]
            if let why = r.differsOnPurpose { d["differs_on_purpose"] = why }
            return d
        }
        let object: [String: Any] = [
            "mode": mode, "cites": Report.citedDocument, "checks": checks, "passed": passed, "failed": failed, "skipped": skipped,
        ]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])) ?? Data()
        return String(decoding: data, as: UTF8.self) + "\n"
    }
}

/// Collects results while a mode runs.
final class Recorder: @unchecked Sendable {
    private let lock = NSLock()
    private var report: Report
    let echo: (@Sendable (CheckResult) -> Void)?

    init(mode: String, echo: (@Sendable (CheckResult) -> Void)?) {
        report = Report(mode: mode)
        self.echo = echo
    }

    var current: Report { lock.withLock { report } }

    func add(_ r: CheckResult) {
        lock.withLock { report.results.append(r) }
        echo?(r)
    }

    /// Records PASS when `ok`, otherwise FAIL with "expected …, saw …".
    func check(_ id: String, _ cite: String, _ ok: Bool, expected: @autoclosure () -> String, seen: @autoclosure () -> String,
               differs: String? = nil) {
        add(CheckResult(id: id, status: ok ? .pass : .fail, cite: cite,
                        detail: ok ? "" : "expected \(expected()); saw \(seen())", differsOnPurpose: ok ? differs : nil))
    }

    func skip(_ id: String, _ cite: String, _ why: String) {
        add(CheckResult(id: id, status: .skip, cite: cite, detail: why))
    }

    func fail(_ id: String, _ cite: String, _ why: String) {
        add(CheckResult(id: id, status: .fail, cite: cite, detail: why))
    }
}
