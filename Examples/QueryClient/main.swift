// A pure client: runs one query against a running core and prints the rows as JSON lines.
//   example-query --socket /var/osquery/osquery.em "select pid, name from processes limit 3"
import OsqueryClient
#if canImport(Glibc)
import Glibc
#endif

var socket = "/var/osquery/osquery.em"
var sql: String?
var arguments = CommandLine.arguments.dropFirst()
while let arg = arguments.popFirst() {
    if arg == "--socket", let v = arguments.popFirst() { socket = v }
    else if arg.hasPrefix("--socket=") { socket = String(arg.dropFirst("--socket=".count)) }
    else { sql = arg }
}
guard let sql else {
    print("usage: example-query [--socket PATH] \"SELECT …\"")
    exit(2)
}


func quote(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        default:
            if u.value < 0x20 { out += "\\u00" + (u.value < 16 ? "0" : "") + String(u.value, radix: 16) } else { out.unicodeScalars.append(u) }
        }
    }
    return out + "\""
}

do {
    let core = try await OsqueryClient.connect(socket: socket, timeout: .seconds(3))
    for row in try await core.query(sql) {
        let fields = row.sorted { $0.key < $1.key }.map { quote($0.key) + ":" + quote($0.value) }
        print("{" + fields.joined(separator: ",") + "}")
    }
} catch {
    var message = "example-query: \(error)\n"
    message.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    exit(1)
}
