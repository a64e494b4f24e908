/// The kinds of persistent counter (SPEC §7), the keys of the store's `counters` table. Every counter's
/// name is built here from its kind, whose raw value is the name stored since the first build: the
/// total's name, and the last component of the kind's other names. Totals have plain names; the rest
/// are paths whose byte order is time order (minutes are zero-padded), so old ones can be deleted as
/// one key range.
package enum Counter: String {
    case requests
    case hits
    case coalesced
    case misses
    case refreshed
    case bypassed
    case stale
    case errors
    case rejected
    case upstreamRequests = "upstream_requests"
    case upstreamTokens = "upstream_tokens"
    case savedRequests = "saved_requests"
    case savedTokens = "saved_tokens"
    case savedPromptTokens = "saved_prompt_tokens"
    case savedItems = "saved_items"
    /// Reads of a stored record that failed its checksum (served as a miss, never as a hit).
    case damaged
    /// Entries the store evicted to make room (kept, not reported).
    case evictions
    /// Times the store emptied its `aliases` table to make room (kept, not reported).
    case aliasDrops = "alias_drops"

    /// The totals, in the order reports list them.
    package static let totals: [Counter] = [
        .requests, .hits, .coalesced, .misses, .refreshed, .bypassed, .stale, .errors, .rejected, .upstreamRequests, .savedTokens, .savedItems,
        .damaged,
    ]

    package static let modelPrefix = "model/"
    package static let dayPrefix = "day/"
    package static let minutePrefix = "minute/"
    package static let hourPrefix = "hour/"
    /// `key/<fingerprint>/upstream_requests`: managed mode's calls per upstream key.
    package static let keyPrefix = "key/"
    /// `ns/<namespace>/<kind>`: per `X-Gemcache-Namespace` (`ns//<kind>` for requests without one).
    package static let namespacePrefix = "ns/"
    /// `client/<fingerprint>/<kind>`: per client, by a fingerprint of its credential's salted tag.
    package static let clientPrefix = "client/"

    /// `<kind>`: the all-time total.
    package static func total(_ kind: Counter) -> String { kind.rawValue }

    /// `model/<id>/<kind>`: all time.
    package static func model(_ model: String, _ kind: Counter) -> String { modelPrefix + model + "/" + kind.rawValue }

    /// `ns/<namespace>/<kind>`: all time.
    package static func namespace(_ namespace: String, _ kind: Counter) -> String { namespacePrefix + namespace + "/" + kind.rawValue }

    /// `client/<fingerprint>/<kind>`: all time.
    package static func client(_ client: String, _ kind: Counter) -> String { clientPrefix + client + "/" + kind.rawValue }

    /// `day/<yyyy-MM-dd>/model/<id>/<kind>`: one quota day.
    package static func day(_ day: String, model: String, _ kind: Counter) -> String { dayPrefix + day + "/" + Self.model(model, kind) }

    /// `minute/<epoch minute>/`: every counter of one minute.
    package static func minute(_ minute: Int64) -> String { minutePrefix + paddedPeriod(minute) + "/" }

    /// `hour/<epoch hour>/`: every counter of one hour that is kept by the hour (totals and models).
    package static func hour(_ hour: Int64) -> String { hourPrefix + paddedPeriod(hour) + "/" }

    /// `key/<fingerprint>/<kind>`: one upstream key (managed mode), by its fingerprint.
    package static func upstreamKey(_ fingerprint: String, _ kind: Counter) -> String { keyPrefix + fingerprint + "/" + kind.rawValue }

    package static func epochMinute(_ milliseconds: Int64) -> Int64 { milliseconds / 60_000 }

    package static func epochHour(_ milliseconds: Int64) -> Int64 { milliseconds / 3_600_000 }

    /// The prefixes of the minute and the hour holding `milliseconds`, under which counters kept by the
    /// minute and by the hour are copied.
    package static func periods(at milliseconds: Int64) -> [String] {
        [minute(epochMinute(milliseconds)), hour(epochHour(milliseconds))]
    }

    /// Adds two counts, never trapping: counters only grow, so a value below zero (only a damaged store
    /// or an older build's counter that wrapped holds one) counts as zero, and a sum past `Int64.max`
    /// stays there. Every sum of counter values (buffered deltas, stored counters, the shared tier's,
    /// the stats document's) goes through this.
    package static func sum(_ a: Int64, _ b: Int64) -> Int64 {
        let (total, overflow) = max(a, 0).addingReportingOverflow(max(b, 0))
        return overflow ? .max : total
    }

    /// A minute or an hour in ten digits: byte order equals numeric order until the year 20983.
    package static func paddedPeriod(_ period: Int64) -> String {
        let digits = String(period)
        return String(repeating: "0", count: max(0, 10 - digits.count)) + digits
    }

    /// `(model, field)` of a name below `prefix + "model/"`, e.g. `day/2026-11-29/model/m/hits`.
    package static func parseModel(_ name: String, after prefix: String) -> (model: String, field: String)? {
        guard name.hasPrefix(prefix + modelPrefix), let slash = name.lastIndex(of: "/") else { return nil }
        let start = name.index(name.startIndex, offsetBy: prefix.count + modelPrefix.count)
        guard start < slash else { return nil }
        return (String(name[start..<slash]), String(name[name.index(after: slash)...]))
    }

    /// `(name, field)` of `<prefix><name>/<field>`, e.g. `ns/team-a/hits` after `ns/`; the name may be
    /// empty or hold `/` (fields never do).
    package static func parseName(_ name: String, after prefix: String) -> (name: String, field: String)? {
        guard name.hasPrefix(prefix), let slash = name.lastIndex(of: "/") else { return nil }
        let start = name.index(name.startIndex, offsetBy: prefix.count)
        guard start <= slash else { return nil }
        return (String(name[start..<slash]), String(name[name.index(after: slash)...]))
    }

    /// `(minute, field)` of `minute/<epoch minute>/<field>`.
    package static func parseMinute(_ name: String) -> (minute: Int64, field: String)? {
        parsePeriod(name).flatMap { $0.unit == "minute" ? ($0.number, $0.field) : nil }
    }

    /// `(unit, number, name)` of `minute/<epoch minute>/<name>` or `hour/<epoch hour>/<name>`.
    package static func parsePeriod(_ name: String) -> (unit: Substring, number: Int64, field: String)? {
        let parts = name.split(separator: "/", maxSplits: 2)
        guard parts.count == 3, parts[0] == "minute" || parts[0] == "hour", let number = Int64(parts[1]) else { return nil }
        return (parts[0], number, String(parts[2]))
    }
}
