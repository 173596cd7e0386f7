import Foundation
import OsqueryEngine
import ProtocolFixture
import Testing

@Suite struct SQLFunctionTests {
    let db: Database
    init() throws { db = try makeDatabase([]) }

    func one(_ sql: String) throws -> SQLValue {
        let r = try db.execute("SELECT " + sql)
        return r[0, 0]
    }

    @Test func strings() throws {
        #expect(try one("concat('a', NULL, 'b', 1)") == "ab1")
        #expect(try one("concat_ws('-', 'a', NULL, 'b', 2)") == "a-b-2")
        #expect(try one("split('a,b;;c', ',;', 2)") == "c")
        #expect(try one("split('a,b', ',', 5)") == nil)
        #expect(try one("regex_split('a1b22c', '[0-9]+', 1)") == "b")
        #expect(try one("regex_match('user=alice id=7', 'id=([0-9]+)', 1)") == "7")
        #expect(try one("regex_match('user=alice id=7', 'id=([0-9]+)', 0)") == "id=7")
        #expect(try one("regex_match('abc', 'z', 0)") == nil)
        #expect(try one("'alpha' REGEXP '^al'") == 1)
        #expect(throws: EngineError.self) { try one("regex_match('a', '(', 0)") }
    }

    @Test func network() throws {
        #expect(try one("inet_aton('192.168.1.2')") == .integer(3_232_235_778))
        #expect(try one("inet_aton('300.1.1.1')") == nil)
        #expect(try one("in_cidr_block('10.0.0.0/8', '10.2.3.4')") == 1)
        #expect(try one("in_cidr_block('10.0.0.0/8', '11.2.3.4')") == 0)
        #expect(try one("in_cidr_block('192.168.0.0/23', '192.168.1.200')") == 1)
        #expect(try one("in_cidr_block('2001:db8::/32', '2001:db8:1::1')") == 1)
        #expect(try one("in_cidr_block('2001:db8::/32', '2001:db9::1')") == 0)
        #expect(try one("in_cidr_block('10.0.0.0/8', '2001:db8::1')") == 0)
        #expect(try one("in_cidr_block('bogus', '10.0.0.1')") == nil)
    }

    @Test func hashes() throws {
        #expect(try one("md5('abc')") == "900150983cd24fb0d6963f7d28e17f72")
        #expect(try one("sha1('abc')") == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(try one("sha256('abc')") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(try one("md5(NULL)") == nil)
        #expect(try one("md5('')") == "d41d8cd98f00b204e9800998ecf8427e")
        #expect(try one("sha256('')") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    /// The engine's own digests (no swift-crypto) against the coreutils tools, at every padding
    /// boundary (55/56/64 bytes) and over several blocks.
    @Test func digestsAgreeWithCoreutils() async throws {
        let lengths = [1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000]
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("digests-\(getpid())-\(UInt64.random(in: 0...UInt64.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for n in lengths {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            let file = dir.appendingPathComponent("\(n)")
            try Data(bytes).write(to: file)
            for (tool, digest) in [("md5sum", Digest.md5), ("sha1sum", Digest.sha1), ("sha256sum", Digest.sha256)] {
                let (status, out, _) = try await runToCompletion("/usr/bin/env", [tool, file.path])
                #expect(status == 0)
                #expect(out.split(separator: " ").first.map(String.init) == Hex.lowercase(digest(bytes)), "\(tool), \(n) bytes")
            }
        }
        // A million bytes: the 64-bit bit length crosses 2^23.
        let million = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        #expect(Hex.lowercase(Digest.md5(million)) == "7707d6ae4e027c70eea2a935c2296f21")
        #expect(Hex.lowercase(Digest.sha1(million)) == "34aa973cd4c4daa4f61eeb2bdbad27316534016f")
        #expect(Hex.lowercase(Digest.sha256(million)) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test func base64() throws {
        #expect(try one("to_base64('hello!?')") == "aGVsbG8hPw==")
        #expect(try one("from_base64('aGVsbG8hPw==')") == "hello!?")
        #expect(try one("from_base64('***')") == "")
        #expect(try one("conditional_to_base64('plain text')") == "plain text")
        #expect(try one("conditional_to_base64(char(1, 65))") == "AUE=")
        #expect(try one("from_base64(to_base64(x'00ff10'))") == .blob([0x00, 0xff, 0x10]))
    }

    @Test func versions() throws {
        #expect(try one("version_compare('1.2.10', '1.2.9')") == 1)
        #expect(try one("version_compare('1.2', '1.2.0')") == -1)
        #expect(try one("version_compare('2.0', '2.0')") == 0)
        #expect(try one("version_compare('1:1.0', '2.0', 'DPKG')") == 1)
        #expect(try one("version_compare('1.0~rc1', '1.0', 'DPKG')") == -1)
        #expect(try one("version_compare('1.0-2', '1.0-10', 'RHEL')") == -1)
        #expect(try one("version_compare('1.0a', '1.0', 'RHEL')") == 1)
        #expect(try one("version_compare('1:2.0-1', '2:1.0-1', 'ARCH')") == -1)
        #expect(throws: EngineError.self) { try one("version_compare('1', '2', 'NOPE')") }
        let sorted = try db.execute("WITH t(v) AS (VALUES ('1.10'), ('1.9'), ('1.2')) SELECT v FROM t ORDER BY v COLLATE VERSION")
        #expect(sorted.rows == [["1.2"], ["1.9"], ["1.10"]])
        let dpkg = try db.execute("SELECT v FROM (SELECT '1.0' AS v UNION SELECT '1.0~beta' UNION SELECT '1:0.1') ORDER BY v COLLATE VERSION_DPKG")
        #expect(dpkg.rows == [["1.0~beta"], ["1.0"], ["1:0.1"]])
    }

    @Test func math() throws {
        #expect(try one("sqrt(16)") == 4.0)
        #expect(try one("power(2, 10)") == 1024.0)
        #expect(try one("ceil(1.2)") == 2)
        #expect(try one("floor(-1.2)") == -2)
        #expect(try one("round(log(exp(2)), 6)") == 2.0)
        #expect(try one("log10(1000)") == 3.0)
        #expect(try one("round(pi(), 5)") == 3.14159)
        #expect(try one("round(degrees(pi()), 6)") == 180.0)
        #expect(try one("round(radians(180), 5)") == 3.14159)
        #expect(try one("round(sin(0) + cos(0) + tan(0), 6)") == 1.0)
        #expect(try one("round(cot(1), 6)") == 0.642093)
        #expect(try one("round(asin(1) + acos(1) + atan(0), 6)") == 1.570796)
        #expect(try one("sqrt(NULL)") == nil)
    }
}
