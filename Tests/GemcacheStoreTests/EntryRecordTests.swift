import GemcacheTestSupport
import Testing

@testable import GemcacheStore

/// The stored record of an entry: every field survives encoding, records of versions 1 (written
/// before entries kept their scope) and 2 (before the checksum) are still read, by the slow path and
/// by the fast path's reader, a version 3 record whose bytes changed is refused by its checksum, and a
/// recorded entry's canonical request is kept in a version 4 record.
struct EntryRecordTests {

    static func versionOneRecord(_ entry: CacheEntry) -> [UInt8] {
        #expect(EntryRecord.fixedSize(version: 3) == 32 && EntryRecord.checksumOffset == 28)
        return RecordSamples.olderRecord(entry, version: 1)
    }

    @Test(arguments: [CacheEntry.Scope.shared, .perKey, nil])
    func everyFieldSurvivesARoundTrip(scope: CacheEntry.Scope?) {
        var entry = RecordSamples.entry
        entry.scope = scope
        let record = EntryRecord.encode(entry)
        #expect(record.withUnsafeBytes { EntryRecord.decode($0) } == entry)
        let times = record.withUnsafeBytes { EntryRecord.times($0) }
        #expect(times?.storedAt == entry.storedAt && times?.expiresAt == entry.expiresAt)
    }

    /// A recorded entry (`cache.mode: record`) keeps its canonical request in a version 4 record; every
    /// other entry is still written as version 3, which older builds sharing the store read.
    @Test func aRecordedEntryKeepsItsRequestInAVersionFourRecord() {
        var recorded = RecordSamples.entry
        recorded.request = Array(#"{"body":{"contents":[]},"path":"/v1beta/models/m:generateContent"}"#.utf8)
        let record = EntryRecord.encode(recorded)
        #expect(record[0] == 4)
        #expect(record.withUnsafeBytes { EntryRecord.decode($0) } == recorded)
        #expect(EntryRecord.encode(RecordSamples.entry)[0] == 3)
        for index in 1..<record.count {
            var flipped = record
            flipped[index] ^= 0x10
            flipped.withUnsafeBytes { bytes in #expect(throws: RecordProblem.checksum, "byte \(index)") { try EntryRecord(bytes) } }
        }
    }

    @Test func aVersionOneRecordIsReadWithAnUnknownScope() {
        let record = Self.versionOneRecord(RecordSamples.entry)
        var expected = RecordSamples.entry
        expected.scope = nil
        #expect(record.withUnsafeBytes { EntryRecord.decode($0) } == expected)
        let times = record.withUnsafeBytes { EntryRecord.times($0) }
        #expect(times?.storedAt == expected.storedAt && times?.expiresAt == expected.expiresAt)
    }

    @Test func aVersionTwoRecordIsReadWithoutAChecksum() {
        let record = RecordSamples.olderRecord(RecordSamples.entry, version: 2)
        #expect(record.withUnsafeBytes { EntryRecord.decode($0) } == RecordSamples.entry)
    }

    /// A changed byte anywhere but the version byte (whose change reads the record as another version)
    /// is found by the checksum, before any other check: the header block, the body, the times, the
    /// checksum field itself.
    @Test func aFlippedByteAnywhereFailsTheChecksum() {
        let record = EntryRecord.encode(RecordSamples.entry)
        #expect(record[0] == 3)
        for index in 1..<record.count {
            var flipped = record
            flipped[index] ^= 0x10
            flipped.withUnsafeBytes { bytes in
                #expect(throws: RecordProblem.checksum, "byte \(index)") { try EntryRecord(bytes) }
                #expect(EntryRecord.decode(bytes) == nil, "byte \(index)")
            }
        }
    }

    @Test func theViewFindsTheSameFieldsInEveryVersion() throws {
        let versionTwo = RecordSamples.olderRecord(RecordSamples.entry, version: 2)
        for record in [EntryRecord.encode(RecordSamples.entry), versionTwo, Self.versionOneRecord(RecordSamples.entry)] {
            try record.withUnsafeBytes { bytes in
                let view = try EntryRecord(bytes)
                #expect(Array(view.headerBlock) == RecordSamples.entry.headerBlock)
                #expect(Array(view.body) == RecordSamples.entry.body)
                #expect(view.storedAt == RecordSamples.entry.storedAt && view.expiresAt == RecordSamples.entry.expiresAt && view.totalTokens == 10)
                #expect(String(decoding: view.model, as: UTF8.self) == RecordSamples.entry.model)
            }
        }
    }

    @Test func aRecordOfAnUnknownVersionIsNotRead() {
        var record = EntryRecord.encode(RecordSamples.entry)
        record[0] = 5
        #expect(record.withUnsafeBytes { EntryRecord.decode($0) } == nil)
        #expect(record.withUnsafeBytes { EntryRecord.times($0) } == nil)
        record.withUnsafeBytes { bytes in
            #expect(throws: RecordProblem.version(5)) { try EntryRecord(bytes) }
        }
    }
}

/// The one validation of a stored record (``EntryRecord/init(_:)``): a record that fails it is a miss for
/// every reader (the store's decode, the fast path's hit) and refused by ``EntryRecord/validate(_:)``
/// (the import), with the fault named.
struct RecordValidationTests {
    @Test(arguments: RecordSamples.damaged.indices)
    func aDamagedRecordIsAMissForEveryReaderAndNamedForTheImport(index: Int) throws {
        let (name, entry, problem) = RecordSamples.damaged[index]
        let record = EntryRecord.encode(entry)
        record.withUnsafeBytes { bytes in
            #expect(EntryRecord.decode(bytes) == nil, "\(name): the store's read")
            #expect(throws: problem, "\(name): the fast path's read") { try EntryRecord(bytes) }
        }
        #expect(throws: problem, "\(name): the import's check") { try EntryRecord.validate(entry) }
    }

    /// Lengths that run past the record, flags out of range: cut or bent bytes of a real record, sealed
    /// with a matching checksum (as a buggy writer or an edited export would make them) so that the
    /// checks after the checksum's are the ones that refuse them.
    @Test func aCutOrBentRecordIsAMissNeverATrap() throws {
        let record = EntryRecord.encode(RecordSamples.entry)
        let headerLengthAt = record.count - RecordSamples.entry.body.count - RecordSamples.entry.headerBlock.count - 4
        var bent: [(String, [UInt8], RecordProblem)] = [
            ("empty", [], .truncated),
            ("no model length", Array(record.prefix(32)), .truncated),
            ("unknown scope", record, .scope(9)),
            ("a namespace flag of 7", record, .truncated),
            ("a header length past the end", record, .truncated),
        ]
        bent[2].1[27] = 9
        bent[3].1[32 + 2 + RecordSamples.entry.model.utf8.count] = 7
        bent[4].1.replaceSubrange(headerLengthAt..<(headerLengthAt + 4), with: [0xFF, 0xFF, 0xFF, 0xFF])
        // Every cut before the body ends inside a field or a length.
        let bodyAt = record.count - RecordSamples.entry.body.count
        for cut in 0..<bodyAt { bent.append(("cut at \(cut)", Array(record.prefix(cut)), .truncated)) }
        for (name, original, problem) in bent {
            var bytes = original
            if bytes.count >= 32 { EntryRecord.seal(&bytes) }
            bytes.withUnsafeBytes { bytes in
                #expect(EntryRecord.decode(bytes) == nil, "\(name)")
                #expect(throws: problem, "\(name)") { try EntryRecord(bytes) }
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
            let entry = RecordSamples.entry { $0.headerBlock = block }
            try EntryRecord.validate(entry)
            #expect(EntryRecord.encode(entry).withUnsafeBytes { EntryRecord.decode($0) } == entry)
        }
        // The edges of the time range and the statuses a stored answer may have.
        for (storedAt, expiresAt) in [(EntryRecord.times.lowerBound, EntryRecord.times.lowerBound), (0, EntryRecord.times.upperBound)] {
            try EntryRecord.validate(RecordSamples.entry { ($0.storedAt, $0.expiresAt) = (storedAt, expiresAt) })
        }
        for status in [200, 203, 206, 404, 429, 500, 599] { try EntryRecord.validate(RecordSamples.entry { $0.status = status }) }
    }
}
