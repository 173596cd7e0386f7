// A distributed plugin: hands the core one query (with a discovery gate) and
// logs the results it gets back to standard error.
import OsqueryExtension

actor Inbox {
    var handedOut = false
    func next() -> DistributedQueries {
        if handedOut { return DistributedQueries() }
        handedOut = true
        return DistributedQueries(
            queries: ["swift_uptime": "select * from uptime"],
            discovery: ["swift_uptime": "select 1 from os_version where platform_like = 'debian' or 1"],
            accelerate: 60)
    }
}
let inbox = Inbox()

let distributed = DistributedPlugin(
    "swift_distributed",
    getQueries: { await inbox.next() },
    writeResults: { results in
        for (id, rows) in results.rows {
            let status = results.statuses[id] ?? 0
            let wall = results.stats[id]?.wallTimeMs ?? 0
            FileOutput.standardError("\(id): status \(status), \(rows.count) rows, \(wall) ms\n")
        }
    })

await Extension("swift_distributed", version: "1.0.0", plugins: [distributed]).run()
