import GemcacheStore
import GemcacheTestSupport
import NIOCore
import Testing

@testable import GemcacheCore

/// The fast path's hit, written from a stored record read in place (``EntryRecord``).
struct HitAnswerTests {
    static let date = Array("Thu, 01 Jan 1970 00:00:00 GMT".utf8)

    /// The answer `record` is written as at `now`, or nil when it is no fast hit.
    static func answer(_ record: [UInt8], now: Int64) throws -> String? {
        try record.withUnsafeBytes { bytes in
            guard let hit = HitAnswer(record: try EntryRecord(bytes)) else { return nil }
            var buffer = ByteBuffer()
            [UInt8](repeating: 0xAB, count: 32).withUnsafeBytes { hit.write(key: $0, now: now, date: date, into: &buffer) }
            return String(buffer: buffer)
        }
    }

    @Test func theFastPathFindsTheSameHeadersAndBodyInEveryVersion() throws {
        let older = [UInt8(1), 2].map { RecordSamples.olderRecord(RecordSamples.entry, version: $0) }
        for record in [EntryRecord.encode(RecordSamples.entry)] + older {
            let text = try #require(try Self.answer(record, now: RecordSamples.entry.storedAt + 5000))
            #expect(text.hasPrefix("HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=UTF-8\r\nAge: 5\r\n"))
            #expect(text.hasSuffix("\r\nContent-Length: 17\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n" + #"{"candidates":[]}"#))
        }
    }

    @Test func anAnswerOfAnotherStatusIsLeftToTheSlowPath() throws {
        var notFound = RecordSamples.entry
        notFound.status = 404
        #expect(try Self.answer(EntryRecord.encode(notFound), now: RecordSamples.entry.storedAt) == nil)
    }

    /// `Age` and `ttl` of a fast hit are checked arithmetic: a clock at either end of Int64 writes a
    /// bounded number, never traps.
    @Test func aHitsAgeAndTTLNeverTrapWhateverTheClock() throws {
        let record = EntryRecord.encode(RecordSamples.entry)
        for now in [Int64.min, -1, 0, RecordSamples.entry.storedAt + 5000, .max] {
            let text = try #require(try Self.answer(record, now: now))
            let age = try #require(text.firstMatch(of: /\r\nAge: (\d+)\r\n/)).1
            let ttl = try #require(text.firstMatch(of: /ttl=(\d+);/)).1
            if now == RecordSamples.entry.storedAt + 5000 { #expect(age == "5" && ttl == "55") }
            if now == .min { #expect(age == "0") }
            if now == .max { #expect(ttl == "0") }
        }
    }
}
