public import Foundation

/// The day Google counts requests-per-day quota in: midnight to midnight America/Los_Angeles, so 23
/// hours long on the spring-forward Sunday and 25 on the fall-back one (gemini-api.md §7.1).
public struct QuotaDay: Sendable, Equatable {
    /// The calendar date in Los Angeles, `yyyy-MM-dd`.
    public let id: String
    /// The midnight that began this day.
    public let start: Date
    /// The next midnight, when the daily quota resets.
    public let resetsAt: Date

    /// The quota day that contains `date`.
    public init(containing date: Date) {
        let calendar = Self.calendar
        start = calendar.startOfDay(for: date)
        resetsAt = calendar.date(byAdding: .day, value: 1, to: start) ?? start.addingTimeInterval(86_400)
        let parts = calendar.dateComponents([.year, .month, .day], from: start)
        id = Self.pad(parts.year ?? 0, 4) + "-" + Self.pad(parts.month ?? 0, 2) + "-" + Self.pad(parts.day ?? 0, 2)
    }

    /// The zone Google resets quotas in.
    public static let timeZone = TimeZone(identifier: "America/Los_Angeles")!

    private static let calendar: Calendar = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        return calendar
    }()

    private static func pad(_ value: Int, _ width: Int) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}
