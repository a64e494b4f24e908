public import Foundation
public import GemcacheStore

/// The span a windowed stats document adds up (`?since=` and `?until=` of `/_gemcache/stats`, `gemcache
/// stats --since/--until`, SPEC §7): whole minutes when it starts within the last
/// ``Ledger/keptMinutes``, else whole hours (totals and models only) up to ``Ledger/keptHours`` back.
public struct StatsWindow: Sendable, Equatable {
    public enum Resolution: String, Sendable {
        case minute
        case hour

        var milliseconds: Int64 { self == .minute ? 60_000 : 3_600_000 }
        var prefix: String { self == .minute ? Counter.minutePrefix : Counter.hourPrefix }
    }

    public let resolution: Resolution
    /// The first and the last period counted (Unix minutes or hours), both included.
    public let first: Int64
    public let last: Int64

    /// The window from `since` to `until` (each a duration back from now such as `15m`, or an RFC 3339
    /// time; `since` defaults to the oldest minute kept, `until` to now), widened to whole periods; nil
    /// when neither is given.
    /// - Throws: ``StatsWindowError`` naming the parameter that is malformed, too old, or after `until`.
    public static func parse(since: String?, until: String?, now: Int64) throws(StatsWindowError) -> StatsWindow? {
        guard since != nil || until != nil else { return nil }
        let oldestMinute = (Counter.epochMinute(now) - Int64(Ledger.keptMinutes) + 1) * 60_000
        let oldest = (Counter.epochHour(now) - Int64(Ledger.keptHours) + 1) * 3_600_000
        let start = try since.map { text throws(StatsWindowError) in try time(text, parameter: "since", now: now) } ?? oldestMinute
        let end = min(try until.map { text throws(StatsWindowError) in try time(text, parameter: "until", now: now) } ?? now, now)
        guard start >= oldest else {
            throw StatsWindowError(parameter: "since", problem: "is older than the \(Ledger.keptHours / 24) days of counts kept")
        }
        guard start <= end else { throw StatsWindowError(parameter: "since", problem: until == nil ? "is in the future" : "is after until") }
        let resolution: Resolution = start >= oldestMinute ? .minute : .hour
        let unit = resolution.milliseconds
        // The last period that starts before `end`; the current one when `end` is now.
        let last = end == now ? end / unit : (end + unit - 1) / unit - 1
        return StatsWindow(resolution: resolution, first: start / unit, last: max(last, start / unit - 1))
    }

    /// A duration back from `now` (`90s`, `15m`, `2h`, `7d`) or an RFC 3339 time, in Unix milliseconds.
    private static func time(_ text: String, parameter: String, now: Int64) throws(StatsWindowError) -> Int64 {
        if let duration = try? SettingValue.duration(text, positive: false) { return now - duration.milliseconds }
        for options: ISO8601DateFormatter.Options in [[.withInternetDateTime], [.withInternetDateTime, .withFractionalSeconds]] {
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = options
            if let date = formatter.date(from: text) { return Int64((date.timeIntervalSince1970 * 1000).rounded(.down)) }
        }
        throw StatsWindowError(
            parameter: parameter,
            problem: "expected a duration such as 15m or 2h, or an RFC 3339 time such as 2026-11-30T06:00:00Z, got \"\(text)\""
        )
    }

    /// When the first period begins.
    public var start: Date { Date(milliseconds: first * resolution.milliseconds) }
    /// When the last period ends.
    public var end: Date { Date(milliseconds: (last + 1) * resolution.milliseconds) }

    /// The counters of the window's periods.
    var counters: CounterRange {
        let name = resolution == .minute ? Counter.minute : Counter.hour
        return CounterRange(from: name(first), upTo: name(last + 1))
    }
}

/// A malformed or unusable `since` or `until`: one line naming the parameter.
public struct StatsWindowError: Error, CustomStringConvertible {
    public let parameter: String
    public let problem: String
    public var description: String { "\(parameter): \(problem)" }
}
