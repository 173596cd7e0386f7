import Testing
@testable import OsqueryConfig
@testable import OsqueryDaemon

@Suite struct ResultFormatTests {
    let context = LogContext(
        hostIdentifier: "web01", unixTime: 1_412_123_850, calendarTime: "Wed Oct  1 00:37:30 2014 UTC",
        decorations: ["host_uuid": "abc", "b": "x"])
    var header: ResultFormat.Header { ResultFormat.Header(name: "pack_it_mounts", context: context, epoch: 0, counter: 3) }
    let legacy = #""name":"pack_it_mounts","hostIdentifier":"web01","calendarTime":"Wed Oct  1 00:37:30 2014 UTC","unixTime":1412123850,"epoch":0,"counter":3"#

    @Test func calendarTimeIsAsctime() {
        #expect(CalendarTime.string(unixTime: 1_412_123_850) == "Wed Oct  1 00:37:30 2014 UTC")
        #expect(CalendarTime.string(unixTime: 1_796_017_052) == "Mon Nov 30 05:37:32 2026 UTC")
        #expect(CalendarTime.string(unixTime: 0) == "Thu Jan  1 00:00:00 1970 UTC")
        #expect(CalendarTime.string(unixTime: 1_730_610_000) == "Sun Nov  3 05:00:00 2024 UTC")
    }

    @Test func eventLinesRemovedFirst() {
        let lines = ResultFormat.diffLines(
            header: header, removed: [["path": "/old", "device": "/dev/sdb1"]],
            added: [["path": "/", "device": "/dev/sda1"]], numericColumns: [], options: .init())
        #expect(lines == [
            "{" + legacy + #","numerics":false,"decorations":{"b":"x","host_uuid":"abc"},"columns":{"device":"/dev/sdb1","path":"/old"},"action":"removed"}"#,
            "{" + legacy + #","numerics":false,"decorations":{"b":"x","host_uuid":"abc"},"columns":{"device":"/dev/sda1","path":"/"},"action":"added"}"#,
        ])
    }

    @Test func noDecorationsKeyWhenEmpty() {
        var h = header
        h.context.decorations = [:]
        let lines = ResultFormat.diffLines(header: h, removed: [], added: [["a": "1"]], numericColumns: [], options: .init())
        #expect(lines == ["{" + legacy + #","numerics":false,"columns":{"a":"1"},"action":"added"}"#])
    }

    @Test func topLevelDecorations() {
        let options = ResultFormat.Options(decorationsTopLevel: true)
        let event = ResultFormat.diffLines(header: header, removed: [], added: [["a": "1"]], numericColumns: [], options: options)
        #expect(event == ["{" + legacy + #","numerics":false,"b":"x","host_uuid":"abc","columns":{"a":"1"},"action":"added"}"#])
        let batch = ResultFormat.diffLines(
            header: header, removed: [], added: [["a": "1"]], numericColumns: [],
            options: .init(eventType: false, decorationsTopLevel: true))
        #expect(batch == [#"{"diffResults":{"removed":[],"added":[{"a":"1"}]},"# + legacy + #","numerics":false,"b":"x","host_uuid":"abc"}"#])
    }

    @Test func numerics() {
        let options = ResultFormat.Options(numerics: true)
        let row: ResultRow = ["pid": "42", "ratio": "0.5", "neg": "-3", "empty": "", "name": "7", "hex": "0x1f", "exp": "1e+30"]
        let lines = ResultFormat.diffLines(
            header: header, removed: [], added: [row], numericColumns: ["pid", "ratio", "neg", "empty", "hex", "exp"],
            options: options)
        #expect(lines == [
            "{" + legacy
                + #","numerics":true,"decorations":{"b":"x","host_uuid":"abc"},"columns":{"empty":"","exp":1e+30,"hex":"0x1f","name":"7","neg":-3,"pid":42,"ratio":0.5},"action":"added"}"#
        ])
    }

    @Test func batchFormat() {
        var h = header
        h.context.decorations = [:]
        let lines = ResultFormat.diffLines(
            header: h, removed: [["a": "0"]], added: [["a": "1"], ["a": "2"]], numericColumns: [], options: .init(eventType: false))
        #expect(lines == [#"{"diffResults":{"removed":[{"a":"0"}],"added":[{"a":"1"},{"a":"2"}]},"# + legacy + #","numerics":false}"#])
        let empty = ResultFormat.diffLines(header: h, removed: [], added: [], numericColumns: [], options: .init(eventType: false))
        #expect(empty == [#"{"diffResults":{"removed":[],"added":[]},"# + legacy + #","numerics":false}"#])
    }

    @Test func snapshotFormats() {
        var h = header
        h.counter = 0
        h.context.decorations = ["d": "1"]
        let legacy0 = legacy.replacingOccurrences(of: "\"counter\":3", with: "\"counter\":0")
        let rows: [ResultRow] = [["a": "1", "b": "x"], ["a": "2", "b": "y"]]
        let batch = ResultFormat.snapshotLines(header: h, rows: rows, numericColumns: [], options: .init())
        #expect(batch == [
            #"{"snapshot":[{"a":"1","b":"x"},{"a":"2","b":"y"}],"action":"snapshot","# + legacy0 + #","numerics":false,"decorations":{"d":"1"}}"#
        ])
        let events = ResultFormat.snapshotLines(header: h, rows: rows, numericColumns: ["a"], options: .init(snapshotEventType: true, numerics: true))
        #expect(events == [
            "{" + legacy0 + #","numerics":true,"decorations":{"d":"1"},"columns":{"a":1,"b":"x"},"action":"snapshot"}"#,
            "{" + legacy0 + #","numerics":true,"decorations":{"d":"1"},"columns":{"a":2,"b":"y"},"action":"snapshot"}"#,
        ])
        #expect(ResultFormat.snapshotLines(header: h, rows: [], numericColumns: [], options: .init(snapshotEventType: true)).isEmpty)
    }

    @Test func stringsEscapedAsRapidJSON() {
        var h = header
        h.context.decorations = [:]
        h.name = "q\"1"
        let lines = ResultFormat.diffLines(
            header: h, removed: [], added: [["k": "a/b \\ \"c\" \n\t\u{1}\u{7f} é \\x41"]], numericColumns: [], options: .init())
        #expect(lines[0].contains(#""name":"q\"1""#))
        #expect(lines[0].contains(#""columns":{"k":"a/b \\ \"c\" \n\t\u0001"# + "\u{7f} é " + #"\\x41"}"#))
    }

    @Test func columnsSortedBytewise() {
        var h = header
        h.context.decorations = [:]
        let lines = ResultFormat.diffLines(
            header: h, removed: [], added: [["b": "1", "B": "2", "a": "3", "_": "4", "é": "5"]], numericColumns: [], options: .init())
        #expect(lines[0].contains(#""columns":{"B":"2","_":"4","a":"3","b":"1","é":"5"}"#))
    }

    @Test func jsonNumberCheck() {
        for good in ["0", "-0", "12", "1.5", "-1.25e-3", "1E5", "3.0"] { #expect(ResultFormat.isJSONNumber(good), "\(good)") }
        for bad in ["", "-", "01", "1.", ".5", "+1", "1e", "inf", "nan", "0x10", "1 ", " 1"] {
            #expect(!ResultFormat.isJSONNumber(bad), "\(bad)")
        }
    }
}
