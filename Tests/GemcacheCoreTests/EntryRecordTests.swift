import NIOCore
import Testing

@testable import GemcacheCore

/// The stored record of an entry: every field survives encoding, and records of version 1 (written
/// before entries kept their scope) are still read, by the slow path and by the fast path's reader.
struct EntryRecordTests {
    static let entry = CacheEntry(
        status: 200,
        headerBlock: CacheEntry.headerBlock([("Content-Type", "application/json; charset=UTF-8")]),
        body: Array(#"{"candidates":[]}"#.utf8),
        storedAt: 1_800_000_000_000,
        expiresAt: 1_800_000_060_000,
        model: "gemini-2.5-flash",
        namespace: "team-a",
        endpoint: "generateContent",
        promptTokens: 3,
        totalTokens: 10,
        scope: .shared
    )

    /// The record `entry` had in version 1: the same layout without the scope byte.
    static func versionOneRecord(_ entry: CacheEntry) -> [UInt8] {
        var record = EntryRecord.encode(entry)
        #expect(record[0] == 2 && EntryRecord.fixedSize(version: 2) == 28)
        record.remove(at: 27)
        record[0] = 1
        return record
    }

    @Test(arguments: [CacheEntry.Scope.shared, .perKey, nil])
    func everyFieldSurvivesARoundTrip(scope: CacheEntry.Scope?) {
        var entry = Self.entry
        entry.scope = scope
        let record = EntryRecord.encode(entry)
        #expect(record.withUnsafeBytes { EntryRecord.decode($0) } == entry)
        let times = record.withUnsafeBytes { EntryRecord.times($0) }
        #expect(times?.storedAt == entry.storedAt && times?.expiresAt == entry.expiresAt)
    }

    @Test func aVersionOneRecordIsReadWithAnUnknownScope() {
        let record = Self.versionOneRecord(Self.entry)
        var expected = Self.entry
        expected.scope = nil
        #expect(record.withUnsafeBytes { EntryRecord.decode($0) } == expected)
        let times = record.withUnsafeBytes { EntryRecord.times($0) }
        #expect(times?.storedAt == expected.storedAt && times?.expiresAt == expected.expiresAt)
    }

    @Test func theFastPathFindsTheSameHeadersAndBodyInBothVersions() throws {
        for record in [EntryRecord.encode(Self.entry), Self.versionOneRecord(Self.entry)] {
            let answer = try #require(record.withUnsafeBytes { HitAnswer(record: $0) })
            #expect(Array(record[answer.headerBlock]) == Self.entry.headerBlock)
            #expect(Array(record[answer.body]) == Self.entry.body)
            #expect(answer.storedAt == Self.entry.storedAt && answer.expiresAt == Self.entry.expiresAt && answer.totalTokens == 10)
        }
    }

    @Test func aRecordOfAnUnknownVersionIsNotRead() {
        var record = EntryRecord.encode(Self.entry)
        record[0] = 3
        #expect(record.withUnsafeBytes { EntryRecord.decode($0) } == nil)
        #expect(record.withUnsafeBytes { EntryRecord.times($0) } == nil)
        #expect(record.withUnsafeBytes { HitAnswer(record: $0) } == nil)
    }
}

/// The one validation of a stored record (``EntryRecord/Layout``): a record that fails it is a miss for
/// every reader (the store's decode, the fast path's ``HitAnswer``) and refused by ``EntryRecord/validate(_:)``
/// (the import), with the fault named.
struct RecordValidationTests {
    /// A valid entry with `change` applied.
    static func entry(_ change: (inout CacheEntry) -> Void) -> CacheEntry {
        var entry = EntryRecordTests.entry
        change(&entry)
        return entry
    }

    static let headerSplit = Array(
        "Content-Type: application/json\r\nx: y\r\n\r\nHTTP/1.1 200 OK\r\nSet-Cookie: a=b\r\nContent-Length: 2\r\n\r\nhi".utf8
    )

    static let damaged: [(String, CacheEntry, RecordProblem)] = [
        ("a status of 1000", entry { $0.status = 1000 }, .status(1000)),
        ("a status without content", entry { $0.status = 204 }, .status(204)),
        ("an informational status", entry { $0.status = 101 }, .status(101)),
        ("stored_at -2^63", entry { $0.storedAt = .min }, .times(storedAt: .min, expiresAt: 1_800_000_060_000)),
        ("expires_at 2^63-1", entry { $0.expiresAt = .max }, .times(storedAt: 1_800_000_000_000, expiresAt: .max)),
        ("expiry before storage", entry { $0.expiresAt = $0.storedAt - 1 }, .times(storedAt: 1_800_000_000_000, expiresAt: 1_799_999_999_999)),
        ("a second answer in the header block", entry { $0.headerBlock = headerSplit }, .header(line: 3)),
        ("a value holding CR LF", entry { $0.headerBlock = Array("x: y\r\nSet-Cookie: a=b".utf8) }, .unstoredHeader(line: 2)),
        ("a line without its CR LF", entry { $0.headerBlock = Array("x: y\r\nX-Other: a=b".utf8) }, .header(line: 2)),
        ("a bare LF in a value", entry { $0.headerBlock = Array("x: y\nSet-Cookie: a=b\r\n".utf8) }, .header(line: 1)),
        ("a bare CR in a value", entry { $0.headerBlock = Array("x: y\rz\r\n".utf8) }, .header(line: 1)),
        ("a NUL in a value", entry { $0.headerBlock = Array("x: y\0z\r\n".utf8) }, .header(line: 1)),
        ("a name with a space", entry { $0.headerBlock = Array("Content Type: x\r\n".utf8) }, .header(line: 1)),
        ("a line without a colon", entry { $0.headerBlock = Array("Content-Type\r\n".utf8) }, .header(line: 1)),
        ("an empty name", entry { $0.headerBlock = Array(": x\r\n".utf8) }, .header(line: 1)),
        ("a stored Content-Length", entry { $0.headerBlock = Array("Vary: Origin\r\ncontent-LENGTH: 0\r\n".utf8) }, .unstoredHeader(line: 2)),
        ("a stored Transfer-Encoding", entry { $0.headerBlock = Array("Transfer-Encoding: chunked\r\n".utf8) }, .unstoredHeader(line: 1)),
        ("a stored Connection", entry { $0.headerBlock = Array("Connection: close\r\n".utf8) }, .unstoredHeader(line: 1)),
        ("a Set-Cookie line", entry { $0.headerBlock = Array("x: y\r\nSet-Cookie: a=b\r\n".utf8) }, .unstoredHeader(line: 2)),
    ]

    @Test(arguments: damaged.indices)
    func aDamagedRecordIsAMissForEveryReaderAndNamedForTheImport(index: Int) throws {
        let (name, entry, problem) = Self.damaged[index]
        let record = EntryRecord.encode(entry)
        record.withUnsafeBytes { bytes in
            #expect(EntryRecord.decode(bytes) == nil, "\(name): the store's read")
            #expect(HitAnswer(record: bytes) == nil, "\(name): the fast path's read")
            #expect(throws: problem, "\(name)") { try EntryRecord.Layout(bytes) }
        }
        #expect(throws: problem, "\(name): the import's check") { try EntryRecord.validate(entry) }
    }

    /// Lengths that run past the record, flags out of range: cut or bent bytes of a real record.
    @Test func aCutOrBentRecordIsAMissNeverATrap() throws {
        let record = EntryRecord.encode(EntryRecordTests.entry)
        let headerLengthAt = record.count - EntryRecordTests.entry.body.count - EntryRecordTests.entry.headerBlock.count - 4
        var bent: [(String, [UInt8], RecordProblem)] = [
            ("empty", [], .truncated),
            ("no model length", Array(record.prefix(28)), .truncated),
            ("unknown scope", record, .scope(9)),
            ("a namespace flag of 7", record, .truncated),
            ("a header length past the end", record, .truncated),
        ]
        bent[2].1[27] = 9
        bent[3].1[28 + 2 + EntryRecordTests.entry.model.utf8.count] = 7
        bent[4].1.replaceSubrange(headerLengthAt..<(headerLengthAt + 4), with: [0xFF, 0xFF, 0xFF, 0xFF])
        // Every cut before the body ends inside a field or a length.
        let bodyAt = record.count - EntryRecordTests.entry.body.count
        for cut in 0..<bodyAt { bent.append(("cut at \(cut)", Array(record.prefix(cut)), .truncated)) }
        for (name, bytes, problem) in bent {
            bytes.withUnsafeBytes { bytes in
                #expect(EntryRecord.decode(bytes) == nil, "\(name)")
                #expect(HitAnswer(record: bytes) == nil, "\(name)")
                #expect(throws: problem, "\(name)") { try EntryRecord.Layout(bytes) }
            }
        }
    }

    @Test func wellFormedHeadersOfEveryKindPass() throws {
        let blocks =
            [
                "", "Content-Type: application/json\r\n", "X-Empty:\r\n", "X-Tab: a\tb\r\n",
                "!#$%&'*+-.^_`|~09azAZ: v\r\n", "X-Te: trailers\r\nX-Content-Length-Note: 5\r\n",
            ].map { Array($0.utf8) } + [[0x58, 0x3A, 0x20, 0xFF, 0x80, 0x0D, 0x0A]]  // bytes ≥ 0x80 in a value
        for block in blocks {
            let entry = Self.entry { $0.headerBlock = block }
            try EntryRecord.validate(entry)
            #expect(EntryRecord.encode(entry).withUnsafeBytes { EntryRecord.decode($0) } == entry)
        }
        // The edges of the time range and the statuses a stored answer may have.
        for (storedAt, expiresAt) in [(EntryRecord.times.lowerBound, EntryRecord.times.lowerBound), (0, EntryRecord.times.upperBound)] {
            try EntryRecord.validate(Self.entry { ($0.storedAt, $0.expiresAt) = (storedAt, expiresAt) })
        }
        for status in [200, 203, 206, 404, 429, 500, 599] { try EntryRecord.validate(Self.entry { $0.status = status }) }
    }

    /// `Age` and `ttl` of a fast hit are checked arithmetic: a clock at either end of Int64 writes a
    /// bounded number, never traps.
    @Test func aHitsAgeAndTTLNeverTrapWhateverTheClock() throws {
        let record = EntryRecord.encode(EntryRecordTests.entry)
        try record.withUnsafeBytes { bytes in
            let hit = try #require(HitAnswer(record: bytes))
            let key = [UInt8](repeating: 0xAB, count: 32)
            for now in [Int64.min, -1, 0, EntryRecordTests.entry.storedAt + 5000, .max] {
                var buffer = ByteBuffer()
                key.withUnsafeBytes { hit.write(record: bytes, key: $0, now: now, date: Array("Thu, 01 Jan 1970 00:00:00 GMT".utf8), into: &buffer) }
                let text = String(buffer: buffer)
                let age = try #require(text.firstMatch(of: /\r\nAge: (\d+)\r\n/)).1
                let ttl = try #require(text.firstMatch(of: /ttl=(\d+);/)).1
                if now == EntryRecordTests.entry.storedAt + 5000 { #expect(age == "5" && ttl == "55") }
                if now == .min { #expect(age == "0") }
                if now == .max { #expect(ttl == "0") }
            }
        }
    }
}
