@testable import GemcacheCore
import Testing

/// The stored record of an entry: every field survives encoding, and records of version 1 (written
/// before entries kept their scope) are still read, by the slow path and by the fast path's reader.
struct EntryRecordTests {
    static let entry = CacheEntry(
        status: 200, headerBlock: CacheEntry.headerBlock([("Content-Type", "application/json; charset=UTF-8")]),
        body: Array(#"{"candidates":[]}"#.utf8), storedAt: 1_800_000_000_000, expiresAt: 1_800_000_060_000,
        model: "gemini-2.5-flash", namespace: "team-a", endpoint: "generateContent", promptTokens: 3, totalTokens: 10, scope: .shared
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
