// A table osquery does not have: Linux pressure-stall information (PSI) from /proc/pressure.
import OsqueryExtension
import Foundation

let pressure = Table(
    "pressure_stall",
    columns: [
        .text("resource", .index, description: "cpu, memory or io"),
        .text("kind", description: "some (at least one task stalled) or full (all non-idle tasks stalled)"),
        .double("avg10", description: "Percent of time stalled, 10 s average"),
        .double("avg60", description: "Percent of time stalled, 60 s average"),
        .double("avg300", description: "Percent of time stalled, 300 s average"),
        .bigint("total_us", description: "Total stall time in microseconds"),
    ],
    documentation: TableDocumentation(
        description: "Linux pressure-stall information (/proc/pressure).",
        examples: ["select * from pressure_stall where resource = 'memory'"])
) { context in
    // Only read the files the query asks for (`resource = …` / `IN (…)`).
    let wanted = context["resource"].equals
    let resources = wanted.isEmpty ? ["cpu", "memory", "io"] : wanted
    var rows: [Row] = []
    for resource in resources {
        guard let text = try? String(contentsOfFile: "/proc/pressure/\(resource)", encoding: .utf8) else { continue }
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            guard let kind = parts.first else { continue }
            var values: [String: String] = [:]
            for p in parts.dropFirst() {
                let kv = p.split(separator: "=", maxSplits: 1)
                if kv.count == 2 { values[String(kv[0])] = String(kv[1]) }
            }
            rows.append([
                "resource": resource, "kind": String(kind),
                "avg10": values["avg10"].flatMap(Double.init), "avg60": values["avg60"].flatMap(Double.init),
                "avg300": values["avg300"].flatMap(Double.init), "total_us": values["total"].flatMap(Int64.init),
            ])
        }
    }
    return rows
}

await Extension("pressure_stall", version: "1.0.0", plugins: [pressure]).run()
