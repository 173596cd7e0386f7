import Foundation
import Testing

/// The regression gate for per-row allocations: `alloc-count` (Benchmarks/AllocCount) counts the
/// heap allocations that grow with the rows on the two paths a query takes through an extension
/// table. Any allocation added per row costs 100 000 per 100 000 rows and trips these bounds;
/// timings are too noisy on CI's 2 cores to catch that, counts are exact. The same run counts the
/// allocations of one whole call (client and core), which the latency of a call follows.
@Suite struct AllocationCountTests {
    /// Per 100 000 rows, marginal (the call's fixed cost removed). Measured: about 70.
    static let countPathBound = 1_000
    /// Per 100 000 rows, marginal. Measured: about 3 700 (a few per 2048-row batch).
    static let selectStarPathBound = 10_000
    /// Per call, client and core together (debug build). Measured: about 53 for `ping` (79 through
    /// the client's event loop), about 123 for a one-row `query`.
    static let pingCallBound = 80
    static let queryCallBound = 185

    @Test func rowPathsDoNotAllocatePerRow() async throws {
        let dir = try #require(productsDir, "alloc-count not built")
        let child = try Child(dir + "/alloc-count", [])
        let status = await child.wait(timeout: .seconds(120))
        child.kill9()
        #expect(status == 0, "stderr: \(child.stderrText)")
        var perPath: [String: Int] = [:]
        var perCall: [String: Double] = [:]
        for line in child.stdoutText().split(separator: "\n") where line.hasPrefix("{") {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            if let call = object["call"] as? String {
                perCall[call] = try #require((object["allocations_per_call"] as? NSNumber)?.doubleValue)
                continue
            }
            let path = try #require(object["path"] as? String)
            perPath[path] = try #require(object["allocations_per_100k_rows"] as? Int)
        }
        let ping = try #require(perCall["ping"])
        let query = try #require(perCall["query_one_row"])
        #expect(ping <= Double(Self.pingCallBound), "ping: \(ping) allocations per call")
        #expect(query <= Double(Self.queryCallBound), "query: \(query) allocations per call")
        let count = try #require(perPath["core_count_through_extension"])
        let star = try #require(perPath["core_select_star_through_extension"])
        #expect(count >= 0 && count <= Self.countPathBound, "count(*) path: \(count) allocations per 100 000 rows")
        #expect(star >= 0 && star <= Self.selectStarPathBound, "select * path: \(star) allocations per 100 000 rows")
    }
}
