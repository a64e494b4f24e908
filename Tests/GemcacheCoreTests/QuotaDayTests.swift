import Foundation
import GemcacheCore
import Testing

/// The quota day follows midnight in America/Los_Angeles, daylight saving included.
struct QuotaDayTests {
    private func utc(_ text: String) throws -> Date {
        try #require(ISO8601DateFormatter().date(from: text))
    }

    @Test func theSpecExampleResetsAtEightUTCInWinter() throws {
        let day = QuotaDay(containing: try utc("2026-11-30T06:00:00Z"))
        #expect(day.id == "2026-11-29")
        #expect(day.start == (try utc("2026-11-29T08:00:00Z")))
        #expect(day.resetsAt == (try utc("2026-11-30T08:00:00Z")))
    }

    @Test func springForwardDayIsTwentyThreeHours() throws {
        // 2026-03-08: clocks go from 02:00 PST to 03:00 PDT.
        let day = QuotaDay(containing: try utc("2026-03-08T20:00:00Z"))
        #expect(day.id == "2026-03-08")
        #expect(day.start == (try utc("2026-03-08T08:00:00Z")))
        #expect(day.resetsAt == (try utc("2026-03-09T07:00:00Z")))
        #expect(day.resetsAt.timeIntervalSince(day.start) == 23 * 3600)
        #expect(QuotaDay(containing: try utc("2026-03-09T06:59:59Z")).id == "2026-03-08")
        #expect(QuotaDay(containing: try utc("2026-03-09T07:00:00Z")).id == "2026-03-09")
    }

    @Test func fallBackDayIsTwentyFiveHours() throws {
        // 2026-11-01: clocks go from 02:00 PDT back to 01:00 PST.
        let day = QuotaDay(containing: try utc("2026-11-01T12:00:00Z"))
        #expect(day.id == "2026-11-01")
        #expect(day.start == (try utc("2026-11-01T07:00:00Z")))
        #expect(day.resetsAt == (try utc("2026-11-02T08:00:00Z")))
        #expect(day.resetsAt.timeIntervalSince(day.start) == 25 * 3600)
        #expect(QuotaDay(containing: try utc("2026-11-01T06:59:59Z")).id == "2026-10-31")
        #expect(QuotaDay(containing: try utc("2026-11-02T07:59:59Z")).id == "2026-11-01")
    }

    @Test func summerDayResetsAtSevenUTC() throws {
        let day = QuotaDay(containing: try utc("2026-07-04T03:00:00Z"))
        #expect(day.id == "2026-07-03")
        #expect(day.resetsAt == (try utc("2026-07-04T07:00:00Z")))
    }
}
