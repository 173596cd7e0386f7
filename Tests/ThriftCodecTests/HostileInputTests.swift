import Testing
import ThriftCodec

/// Feeds `bytes` to a framer in the given chunk sizes, like reads off a socket.
func frame(_ bytes: [UInt8], chunks: [Int], limits: ThriftLimits = .default) throws -> Int? {
    var framer = MessageFramer(limits: limits)
    var received = 0
    var chunkIndex = 0
    while received < bytes.count {
        let step = chunks.isEmpty ? 1 : max(1, chunks[chunkIndex % chunks.count])
        chunkIndex += 1
        received = min(bytes.count, received + step)
        let result = try bytes[0..<received].withUnsafeBytes { try framer.scan($0) }
        if let length = result { return length }
    }
    return nil
}

func scanOnce(_ bytes: [UInt8], limits: ThriftLimits = .default) throws -> Int? {
    var framer = MessageFramer(limits: limits)
    return try bytes.withUnsafeBytes { try framer.scan($0) }
}

/// A deterministic generator so failures reproduce.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite struct FramingTests {
    @Test func wholeMessageIsOneFrame() throws {
        let message = everyTypeMessage()
        #expect(try scanOnce(message) == message.count)
        #expect(try scanOnce(pingCallBytes) == pingCallBytes.count)
    }

    @Test func trailingBytesAreNotPartOfTheFrame() throws {
        let two = pingCallBytes + everyTypeMessage()
        #expect(try scanOnce(two) == pingCallBytes.count)
    }

    @Test func splitAtEveryOffsetFramesTheSame() throws {
        let message = everyTypeMessage()
        for cut in 1..<message.count {
            // Two reads: the first `cut` bytes, then the rest.
            var framer = MessageFramer()
            let first = try message[0..<cut].withUnsafeBytes { try framer.scan($0) }
            #expect(first == nil, "a prefix of \(cut) bytes must ask for more")
            let second = try message.withUnsafeBytes { try framer.scan($0) }
            #expect(second == message.count, "cut at \(cut)")
        }
        #expect(try frame(message, chunks: [1]) == message.count)  // byte by byte
        var rng = SplitMix(state: 1)
        for _ in 0..<200 {
            let chunks = (0..<8).map { _ in Int.random(in: 1...40, using: &rng) }
            #expect(try frame(message, chunks: chunks) == message.count)
        }
    }

    /// Rows (`list<map<string,string>>`) are walked by a fast path that must frame exactly as
    /// the general one: split anywhere, with empty maps, maps of other types and a big value.
    @Test func rowListsSplitAnywhereFrameTheSame() throws {
        var w = ThriftWriter()
        w.writeMessageBegin(MessageHeader(name: "query", type: .reply, sequenceID: 9))
        w.writeFieldBegin(.list, id: 0)
        w.writeListBegin(element: .map, count: 7)
        w.writeStringMap(["a": "row1", "b": "1"])
        w.writeMapBegin(key: .i32, value: .bool, count: 0)  // empty: its types do not matter
        w.writeStringMap(["": ""])
        w.writeMapBegin(key: .string, value: .i32, count: 2)  // not strings: the general path
        w.writeString("x")
        w.writeI32(1)
        w.writeString("y")
        w.writeI32(2)
        w.writeStringMap(["big": ThriftString(String(repeating: "v", count: 300))])
        w.writeStringMap(["a": "last", "b": "2", "c": "3"])
        w.writeStringMap([:])
        w.writeFieldStop()
        let message = w.bytes
        #expect(try scanOnce(message) == message.count)
        for cut in 1..<message.count {
            var framer = MessageFramer()
            #expect(try message[0..<cut].withUnsafeBytes { try framer.scan($0) } == nil, "prefix \(cut)")
            #expect(try message.withUnsafeBytes { try framer.scan($0) } == message.count, "cut at \(cut)")
        }
        #expect(try frame(message, chunks: [1]) == message.count)
        var rng = SplitMix(state: 7)
        for _ in 0..<200 {
            let chunks = (0..<8).map { _ in Int.random(in: 1...60, using: &rng) }
            #expect(try frame(message, chunks: chunks) == message.count)
        }
        // Past the size limit inside a row: the limit's error, however the bytes arrive.
        let small = ThriftLimits(maxMessageSize: message.count - 10)
        #expect(throws: ThriftError.self) { try scanOnce(message, limits: small) }
        #expect(throws: ThriftError.self) { try frame(message, chunks: [7], limits: small) }
        // A negative length inside a row is rejected, not skipped.
        var bad = message
        let at = bad.firstIndex(of: UInt8(ascii: "r"))! - 4  // the length of "row1"
        bad.replaceSubrange(at..<(at + 4), with: [0xFF, 0xFF, 0xFF, 0xFE])
        #expect(throws: ThriftError.self) { try scanOnce(bad) }
    }

    /// The framer reports a reply's rows list once it has checked all of it (decoders then skip
    /// their own walk): the same span however the bytes arrive, and none for a list holding a map
    /// of other types, or for a message without rows.
    @Test func checkedRowsListIsReported() throws {
        func reply(_ body: (inout ThriftWriter) -> Void) -> (bytes: [UInt8], listStart: Int, listEnd: Int) {
            var w = ThriftWriter()
            w.writeMessageBegin(MessageHeader(name: "call", type: .reply, sequenceID: 3))
            w.writeFieldBegin(.struct, id: 0)
            w.writeFieldBegin(.struct, id: 1)  // status
            w.writeFieldBegin(.i32, id: 1)
            w.writeI32(0)
            w.writeFieldStop()
            w.writeFieldBegin(.list, id: 2)
            let start = w.byteCount
            body(&w)
            let end = w.byteCount
            w.writeFieldStop()
            w.writeFieldStop()
            return (w.bytes, start, end)
        }
        func lists(_ bytes: [UInt8], chunks: [Int]) throws -> MessageFramer.StringMapList? {
            var framer = MessageFramer()
            var received = 0
            var i = 0
            while received < bytes.count {
                received = min(bytes.count, received + max(1, chunks[i % chunks.count]))
                i += 1
                if try bytes[0..<received].withUnsafeBytes({ try framer.scan($0) }) != nil { return framer.lastStringMapList }
            }
            Issue.record("never framed")
            return nil
        }
        let rows = reply { w in
            w.writeListBegin(element: .map, count: 4)
            w.writeStringMap(["a": "row1", "b": "1"])
            w.writeMapBegin(key: .i32, value: .bool, count: 0)  // empty: its types do not matter
            w.writeStringMap(["big": ThriftString(String(repeating: "v", count: 300))])
            w.writeStringMap([:])
        }
        let expected = MessageFramer.StringMapList(start: rows.listStart, end: rows.listEnd, count: 4)
        var rng = SplitMix(state: 11)
        for chunks in [[rows.bytes.count], [1], [5], [13]] + (0..<50).map({ _ in (0..<6).map { _ in Int.random(in: 1...50, using: &rng) } }) {
            #expect(try lists(rows.bytes, chunks: chunks) == expected, "\(chunks)")
        }
        let mixed = reply { w in
            w.writeListBegin(element: .map, count: 2)
            w.writeStringMap(["a": "row1"])
            w.writeMapBegin(key: .string, value: .i32, count: 1)  // not rows
            w.writeString("x")
            w.writeI32(1)
        }
        for chunks in [[mixed.bytes.count], [1], [7]] { #expect(try lists(mixed.bytes, chunks: chunks) == nil, "\(chunks)") }
        // A message without rows reports none, even after one with rows.
        var framer = MessageFramer()
        #expect(try rows.bytes.withUnsafeBytes { try framer.scan($0) } == rows.bytes.count)
        #expect(framer.lastStringMapList == expected)
        #expect(try pingCallBytes.withUnsafeBytes { try framer.scan($0) } == pingCallBytes.count)
        #expect(framer.lastStringMapList == nil)
    }

    @Test func truncationAtEveryOffsetIsDetected() throws {
        let message = everyTypeMessage()
        for cut in 0..<message.count {
            let prefix = Array(message[0..<cut])
            // The framer waits for more bytes rather than guessing...
            #expect(try scanOnce(prefix) == nil)
            // ...and a decoder given only the prefix reports truncation, never crashes.
            #expect(throws: ThriftError.truncated) { try decodeMessage(prefix) }
        }
    }

    @Test func largeMessageInSmallReadsIsWalkedOnce() throws {
        // 100 000 rows of a map: the framer must resume, not restart, or this is quadratic.
        var w = ThriftWriter()
        w.writeMessageBegin(MessageHeader(name: "query", type: .reply, sequenceID: 1))
        w.writeFieldBegin(.list, id: 0)
        w.writeListBegin(element: .map, count: 100_000)
        for i in 0..<100_000 { w.writeStringMap(["i": ThriftString(String(i))]) }
        w.writeFieldStop()
        let message = w.bytes
        #expect(try frame(message, chunks: [4096]) == message.count)
    }
}

@Suite struct HostileInputTests {
    /// A `string` field whose declared length is 2 GiB - 1.
    let hugeString: [UInt8] = {
        var w = ThriftWriter()
        w.writeMessageBegin(MessageHeader(name: "query", type: .call, sequenceID: 0))
        w.writeFieldBegin(.string, id: 1)
        w.writeI32(Int32.max)
        return w.bytes + [0x41, 0x41]
    }()

    @Test func twoGiBStringIsRefusedBeforeItArrives() throws {
        #expect(throws: ThriftError.sizeLimit(declared: Int64(Int32.max), limit: 100 * 1024 * 1024)) {
            try scanOnce(hugeString)
        }
        // The reader refuses it too, without allocating: it checks the limit first.
        #expect(throws: ThriftError.sizeLimit(declared: Int64(Int32.max), limit: 100 * 1024 * 1024)) {
            try ThriftReader.read(hugeString) { r in
                _ = try r.readMessageBegin()
                return try r.readValue(.struct)
            }
        }
    }

    @Test func smallerLimitsAreHonoured() throws {
        let limits = ThriftLimits(maxMessageSize: 1024, maxDepth: 64)
        var w = ThriftWriter()
        w.writeMessageBegin(MessageHeader(name: "q", type: .call, sequenceID: 0))
        w.writeFieldBegin(.string, id: 1)
        w.writeString(ThriftString(String(repeating: "x", count: 2000)))
        w.writeFieldStop()
        #expect(throws: ThriftError.self) { try scanOnce(w.bytes, limits: limits) }
        #expect(try scanOnce(w.bytes) == w.bytes.count)
    }

    @Test func negativeSizesAreRefused() throws {
        for body: [UInt8] in [
            [0x0B, 0x00, 0x01, 0xFF, 0xFF, 0xFF, 0xFF],  // string length -1
            [0x0F, 0x00, 0x01, 0x08, 0x80, 0x00, 0x00, 0x00],  // list count INT_MIN
            [0x0D, 0x00, 0x01, 0x0B, 0x0B, 0xFF, 0xFF, 0xFF, 0xFE],  // map count -2
        ] {
            let message = pingCallBytes.dropLast() + body
            #expect(throws: ThriftError.self) { try scanOnce(Array(message)) }
            #expect(throws: ThriftError.self) { try decodeMessage(Array(message)) }
        }
    }

    @Test func hugeContainerCountsAreRefusedWithoutAllocating() throws {
        // A billion i64s (8 GB) cannot fit in a 100 MiB message.
        let message = Array(pingCallBytes.dropLast()) + [0x0F, 0x00, 0x01, 0x0A, 0x3B, 0x9A, 0xCA, 0x00]
        #expect(throws: ThriftError.sizeLimit(declared: 8_000_000_000, limit: 100 * 1024 * 1024)) {
            try scanOnce(message)
        }
        #expect(throws: ThriftError.self) { try decodeMessage(message) }
    }

    @Test func unknownTypeIdsAreRefused() throws {
        for bad: UInt8 in [1, 5, 7, 9, 16, 0xFF] {
            let message = Array(pingCallBytes.dropLast()) + [bad, 0x00, 0x01, 0x00]
            #expect(throws: ThriftError.invalidType(bad)) { try scanOnce(message) }
            #expect(throws: ThriftError.invalidType(bad)) { try decodeMessage(message) }
        }
    }

    @Test func badHeadersAreRefused() throws {
        #expect(throws: ThriftError.badVersion(0x8002_0000)) { try scanOnce([0x80, 0x02, 0x00, 0x01] + [0, 0, 0, 0]) }
        #expect(throws: ThriftError.invalidMessageType(9)) { try scanOnce([0x80, 0x01, 0x00, 0x09, 0, 0, 0, 0]) }
        // An old-style header whose name length is 2 GiB.
        #expect(throws: ThriftError.self) { try scanOnce([0x7F, 0xFF, 0xFF, 0xFF, 0x41]) }
    }

    @Test func nestingDeeperThanTheLimitIsRefused() throws {
        // 100 nested lists inside the args struct.
        var message = Array(pingCallBytes.dropLast()) + [0x0F, 0x00, 0x01]
        for _ in 0..<100 { message += [0x0F, 0x00, 0x00, 0x00, 0x01] }
        message += [0x0F, 0x00, 0x00, 0x00, 0x00] + [0x00]
        #expect(throws: ThriftError.depthLimit(64)) { try scanOnce(message) }
        #expect(throws: ThriftError.depthLimit(64)) { try decodeMessage(message) }
    }

    /// Random bytes and mutated valid messages: every outcome is a frame, a
    /// request for more bytes, or a typed error — never a crash or a hang.
    @Test func fuzzRandomAndMutatedMessages() throws {
        var rng = SplitMix(state: 0xF00D)
        let seeds = [everyTypeMessage(), pingCallBytes, hugeString]
        var outcomes = (frames: 0, needMore: 0, errors: 0)
        for round in 0..<20_000 {
            var bytes: [UInt8]
            if round % 4 == 0 {
                bytes = (0..<Int.random(in: 0...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            } else {
                bytes = seeds[round % seeds.count]
                for _ in 0..<Int.random(in: 1...6, using: &rng) where !bytes.isEmpty {
                    let at = Int.random(in: 0..<bytes.count, using: &rng)
                    switch Int.random(in: 0..<3, using: &rng) {
                    case 0: bytes[at] = UInt8.random(in: 0...255, using: &rng)
                    case 1: bytes.remove(at: at)
                    default: bytes.insert(UInt8.random(in: 0...255, using: &rng), at: at)
                    }
                }
            }
            do {
                if let length = try scanOnce(bytes) {
                    outcomes.frames += 1
                    #expect(length <= bytes.count)
                    // A framed message decodes without error: framer and reader agree.
                    _ = try? decodeMessage(Array(bytes[0..<length]))
                } else {
                    outcomes.needMore += 1
                }
            } catch is ThriftError {
                outcomes.errors += 1
            }
            _ = try? decodeMessage(bytes)
        }
        #expect(outcomes.frames > 0 && outcomes.needMore > 0 && outcomes.errors > 0)
    }

    @Test func framerAndReaderAgreeOnFramedMessages() throws {
        // Whatever the framer accepts as one message, the reader can skip exactly.
        var rng = SplitMix(state: 7)
        var checked = 0
        for _ in 0..<5000 {
            var bytes = everyTypeMessage()
            let at = Int.random(in: 12..<bytes.count, using: &rng)
            bytes[at] = UInt8.random(in: 0...255, using: &rng)
            guard let length = try? scanOnce(bytes) else { continue }
            let skipped = try ThriftReader.read(Array(bytes[0..<length])) { r -> Int in
                _ = try r.readMessageBegin()
                try r.skip(.struct)
                return r.offset
            }
            #expect(skipped == length)
            checked += 1
        }
        #expect(checked > 100)
    }
}
