import Foundation
public import GemcacheStore
import Synchronization

/// What a request on a cached route came to (the `X-Gemcache` value).
public enum CacheOutcome: String, Sendable, CaseIterable {
    case hit = "HIT"
    case miss = "MISS"
    case coalesced = "COALESCED"
    case refresh = "REFRESH"
    case bypass = "BYPASS"
    case stale = "STALE"
    case partial = "PARTIAL"
}

/// Token counts of an answer (`usageMetadata`).
///
/// Counts read from an answer are clamped to ``range`` where they are parsed (``count(_:)``): they come
/// from the upstream (or whatever answers in its place), and a stored record keeps each in 32 bits.
public struct TokenUsage: Sendable, Equatable {
    public var prompt: Int
    public var total: Int

    public init(prompt: Int, total: Int) {
        self.prompt = prompt
        self.total = total
    }

    public static let zero = TokenUsage(prompt: 0, total: 0)

    /// The counts one answer may report: what a record's 32-bit field holds.
    public static let range: ClosedRange<Int> = EntryRecord.tokenCounts

    /// A count as an answer's JSON gives it: a whole number, clamped to ``range``; anything else (absent,
    /// not a number, fractional, NaN or infinite) is 0.
    static func count(_ value: Any?) -> Int {
        // `doubleValue` holds any JSON number; `intValue` turns one past Int into a wrong (even negative) count.
        guard let number = (value as? NSNumber)?.doubleValue, number.isFinite, number == number.rounded(.towardZero) else { return 0 }
        return number >= Double(range.upperBound) ? range.upperBound : max(range.lowerBound, Int(number))
    }
}

/// Counts what the proxy does (SPEC §6, §7), persistently: the counters live in the store and add
/// up across every process that shares it. Recording only touches memory; the store maintenance
/// service flushes every second.
///
/// Besides the totals it keeps, per model, namespace and client, all-time counters (`model/<id>/…`,
/// `ns/<namespace>/…`, `client/<fingerprint>/…`); a copy of each by the minute (`minute/<epoch
/// minute>/<name>`, kept ``keptMinutes``, also what the dashboard charts) and of the totals and the
/// models' by the hour (`hour/<epoch hour>/<name>`, kept ``keptHours``), which the stats of a window
/// add up; and counters for the quota day (`day/<yyyy-MM-dd>/model/<id>/…`, the day in
/// America/Los_Angeles). ``prune()`` drops minutes, hours and days that no report reads any more.
public final class Ledger: Sendable {
    let store: CacheStore
    /// With a shared tier, the counters of every instance are read from it (while it is healthy).
    let shared: SharedTier?
    /// What `store.on_corrupt: salvage` did at start-up, if it ran.
    let salvage: StartupSalvage?
    /// Free-tier limits by model (`limits.models`); a model missing here has unknown limits.
    let limits: [String: ProxyConfiguration.ModelLimits]
    /// USD per million tokens by model (`prices`).
    let prices: [String: ProxyConfiguration.ModelPrice]
    /// Unix time in milliseconds.
    let now: @Sendable () -> Int64
    /// The Prometheus registry of this ledger: the latency histograms, and the counters at each scrape.
    let metrics = ProxyMetrics()
    private let day: Mutex<QuotaDay>
    /// When counting began in the store, once read.
    private let countingSince = Mutex<Int64?>(nil)
    /// The namespaces and clients counted by name.
    let countedNames = CountedNames()

    /// How many minutes the dashboard charts.
    public static let historyMinutes = 24 * 60
    /// How many minutes of per-minute counters are kept (for windows and the chart).
    public static let keptMinutes = 48 * 60
    /// How many hours of per-hour counters (totals and models) are kept (for longer windows).
    public static let keptHours = 90 * 24
    /// How many quota days of per-day counters are kept.
    static let keptDays = 35

    /// - Parameters:
    ///   - store: Where the counters live.
    ///   - shared: The shared tier, which sums the counters of every instance.
    ///   - salvage: What `store.on_corrupt: salvage` did at start-up, for the stats.
    ///   - configuration: Supplies `limits.models` and `prices`.
    ///   - now: Unix time in milliseconds; tests inject their own.
    public init(
        store: CacheStore,
        shared: SharedTier? = nil,
        salvage: StartupSalvage? = nil,
        configuration: ProxyConfiguration,
        now: @escaping @Sendable () -> Int64 = CacheStore.wallClock
    ) {
        self.store = store
        self.shared = shared
        self.salvage = salvage
        self.limits = configuration.limits.models
        self.prices = configuration.prices
        self.now = now
        self.day = Mutex(QuotaDay(containing: Date(milliseconds: now())))
    }

    // MARK: - Recording

    /// A request on a cached route was answered, counted once (SPEC §7): in `requests` and in its
    /// outcome's counter, or in `errors` when the answer is an error (an upstream 400 is an error, not
    /// a miss), so that the outcome counters add up to `requests`, in total, per model, per namespace
    /// and per client. A hit or coalesced answer saved a call and `tokens`. With `count` > 1, that many
    /// answers alike, `tokens` their sum (the fast path's batches).
    func recordAnswer(model: String, outcome: CacheOutcome, status: Int, tokens: TokenUsage, attribution: Attribution, count: Int64 = 1) {
        if status >= 400 { return recordError(model: model, attribution: attribution, count: count) }
        let time = now()
        let counting = Counting(self, model: model, attribution: attribution, at: time)
        counting.add(.requests, count)
        counting.add(Counter(outcome), count)
        if outcome == .hit || outcome == .coalesced {
            let day = quotaDay(at: time).id
            counting.add(.savedTokens, Int64(tokens.total))
            store.increment([Counter.model(model, .savedPromptTokens)], by: Int64(tokens.prompt), copiesUnder: counting.periods)
            store.increment(Counter.day(day, model: model, .savedRequests), by: count)
            store.increment(Counter.day(day, model: model, .savedTokens), by: Int64(tokens.total))
        }
    }

    /// One call went upstream for `model` (it counts against the quota whatever its answer).
    func recordUpstreamCall(model: String, status: Int, tokens: TokenUsage, attribution: Attribution) {
        let time = now()
        let day = quotaDay(at: time).id
        let counting = Counting(self, model: model, attribution: attribution, at: time)
        counting.add(.upstreamRequests, 1)
        counting.add(.upstreamTokens, Int64(tokens.total))
        store.increment(Counter.day(day, model: model, .upstreamRequests))
        store.increment(Counter.day(day, model: model, .upstreamTokens), by: Int64(tokens.total))
    }

    /// A request on a cached route failed, or was answered with an error: counted once, in `requests`
    /// and `errors` (per model too, once the model is known: the OpenAI surface names it in the body).
    func recordError(model: String, attribution: Attribution, count: Int64 = 1) {
        let counting = Counting(self, model: model, attribution: attribution, at: now())
        counting.add(.requests, count)
        counting.add(.errors, count)
    }

    /// A request refused for its credential (SPEC §7): counted here only, with no per-model state.
    func recordRejected() {
        store.increment([Counter.total(.rejected)], by: 1, copiesUnder: Counter.periods(at: now()))
    }

    /// Adds to one request's counters: the total and the model's (all time, and copies by the minute and
    /// by the hour), its namespace's and its client's (all time, and copies by the minute).
    private struct Counting {
        let store: CacheStore
        let model: String
        let attribution: Attribution
        let periods: [String]

        init(_ ledger: Ledger, model: String, attribution: Attribution, at time: Int64) {
            store = ledger.store
            self.model = model
            self.attribution = ledger.countedNames.bounded(attribution, minute: Counter.epochMinute(time))
            periods = Counter.periods(at: time)
        }

        func add(_ kind: Counter, _ delta: Int64) {
            guard delta != 0 else { return }
            store.increment([Counter.total(kind), Counter.model(model, kind)], by: delta, copiesUnder: periods)
            store.increment(
                [Counter.namespace(attribution.namespace, kind), Counter.client(attribution.client, kind)],
                by: delta,
                copiesUnder: [periods[0]]
            )
        }
    }

    /// How long a request on a cached route took to answer, by outcome: `HIT` feeds the hit
    /// histogram; `MISS`, `REFRESH` and `BYPASS` the upstream one (the others are not timed).
    func recordLatency(outcome: CacheOutcome, duration: Duration) {
        metrics.record(outcome: outcome, duration: duration)
    }

    /// The quota day at `time` (cached until it resets).
    func quotaDay(at time: Int64) -> QuotaDay {
        day.withLock { day in
            let date = Date(milliseconds: time)
            if date >= day.resetsAt || date < day.start { day = QuotaDay(containing: date) }
            return day
        }
    }

    // MARK: - Reading

    /// When counting began in this store (Unix milliseconds), read once.
    func since() async throws -> Int64 {
        if let known = countingSince.withLock({ $0 }) { return known }
        let stored = try await store.countersSince()
        countingSince.withLock { $0 = stored }
        return stored
    }

    /// The counters named in any of `ranges`, with this process's counts not stored yet: every
    /// instance's from the shared tier while it is healthy (`cluster` true), else the store's.
    func counterValues(_ ranges: [CounterRange]) async throws -> (values: [String: Int64], cluster: Bool) {
        if let shared, var values = await shared.counterValues(ranges) {
            values.merge(store.unflushedCounters(ranges), uniquingKeysWith: Counter.sum)
            return (values, true)
        }
        return (try await store.counterValues(ranges), false)
    }

    /// Learns the namespaces and clients already counted in the store, so that their bound holds across
    /// restarts and processes (at start-up, then with every ``prune()``).
    public func learnCountedNames() async {
        guard let values = try? await counterValues([Counter.namespacePrefix, Counter.clientPrefix].map(CounterRange.init(prefix:))).values
        else { return }
        countedNames.learn(
            namespaces: values.keys.compactMap { Counter.parseName($0, after: Counter.namespacePrefix)?.name },
            clients: values.keys.compactMap { Counter.parseName($0, after: Counter.clientPrefix)?.name }
        )
    }

    /// Hits (with coalesced answers) and misses per minute over the last ``historyMinutes`` minutes,
    /// oldest first; the last element is the current minute.
    public func history() async throws -> StatsHistory {
        let last = Counter.epochMinute(now())
        let first = last - Int64(Self.historyMinutes) + 1
        let range = CounterRange(from: Counter.minute(first), upTo: Counter.minute(last + 1))
        let values = try await counterValues([range]).values
        var history = StatsHistory(
            firstMinute: first,
            hits: Array(repeating: 0, count: Self.historyMinutes),
            misses: Array(repeating: 0, count: Self.historyMinutes)
        )
        for (name, value) in values {
            guard let (minute, field) = Counter.parseMinute(name), minute >= first, minute <= last else { continue }
            let index = Int(minute - first)
            switch Counter(rawValue: field) {
            case .hits, .coalesced: history.hits[index] = Counter.sum(history.hits[index], value)
            case .misses: history.misses[index] = Counter.sum(history.misses[index], value)
            default: break
            }
        }
        return history
    }

    /// Deletes per-minute counters older than ``keptMinutes``, per-hour ones older than ``keptHours``
    /// and per-day ones older than ``keptDays`` quota days; learns the names other processes counted.
    public func prune() async {
        let time = now()
        let oldestMinute = Counter.epochMinute(time) - Int64(Self.keptMinutes) + 1
        let oldestHour = Counter.epochHour(time) - Int64(Self.keptHours) + 1
        let oldestDay = QuotaDay(containing: Date(milliseconds: time).addingTimeInterval(-Double(Self.keptDays) * 86_400))
        let ranges = [
            (Counter.minutePrefix, Counter.minute(oldestMinute)), (Counter.hourPrefix, Counter.hour(oldestHour)),
            (Counter.dayPrefix, Counter.dayPrefix + oldestDay.id),
        ]
        for (start, end) in ranges {
            await store.deleteCounters(from: start, upTo: end)
            await shared?.deleteCounters(from: start, upTo: end)
        }
        await learnCountedNames()
    }
}

/// Hits and misses per minute, for the dashboard's chart (`GET /_gemcache/history`).
public struct StatsHistory: Sendable, Equatable {
    /// The Unix minute (seconds / 60) of the first element.
    public var firstMinute: Int64
    /// Hits and coalesced answers per minute.
    public var hits: [Int64]
    /// Misses per minute.
    public var misses: [Int64]

    /// `{"first_minute": …, "hits": […], "misses": […]}`.
    public var json: [String: Any] { ["first_minute": firstMinute, "hits": hits, "misses": misses] }
}

extension Date {
    init(milliseconds: Int64) {
        self.init(timeIntervalSince1970: Double(milliseconds) / 1000)
    }
}

extension Counter {
    /// The counter of answers with `outcome`.
    init(_ outcome: CacheOutcome) {
        switch outcome {
        case .hit: self = .hits
        case .coalesced: self = .coalesced
        case .miss, .partial: self = .misses
        case .refresh: self = .refreshed
        case .bypass: self = .bypassed
        case .stale: self = .stale
        }
    }
}
