import Foundation
import HTTPTypes
import Synchronization

/// The quota guard (`limits.enforce`, SPEC §6): never sends more upstream calls than a model's
/// free-tier limits allow. A call that would exceed RPM or TPM waits for room (up to
/// `limits.max_wait`) or is answered 429; RPD exhaustion is answered 429 at once. It learns from the
/// upstream: a 429's `RetryInfo` pauses the model until the delay has passed, and a `QuotaFailure`'s
/// limit value replaces the configured one. Hits never pass through here.
///
/// Quota is per Google project (SPEC §6), so counts, pauses and learned limits are kept per
/// ``Ticket/partition``: the upstream key in managed mode, the credential's salted tag in passthrough
/// mode. One client's traffic or 429 never pauses another's key, calls the upstream refused for the
/// credential (400, 401, 403) are given back, and learned limits end with the quota day.
///
/// Counts are this process's (several processes on one store each guard their own calls).
final class QuotaGuard: Sendable {
    /// Whose quota a call counts against: a model within a partition.
    struct Ticket: Hashable, Sendable {
        let model: String
        /// The upstream key's fingerprint (managed) or the credential's salted tag (passthrough).
        let partition: String
    }

    private struct ModelState {
        /// Upstream calls and their tokens in the last minute, oldest first.
        var recent: [(at: ContinuousClock.Instant, tokens: Int)] = []
        var day = ""
        var today = 0
        var pausedUntil: ContinuousClock.Instant?
        var learned = ProxyConfiguration.ModelLimits()
    }

    private let enforce: Bool
    private let maxWait: Duration
    private let limits: [String: ProxyConfiguration.ModelLimits]
    private let states = Mutex<[Ticket: ModelState]>([:])
    /// Unix time in milliseconds, which picks the quota day.
    private let now: @Sendable () -> Int64
    /// Past this many partitions and models, idle ones are forgotten (made-up keys cannot grow the map).
    static let maxStates = 10_000

    init(configuration: ProxyConfiguration.Limits, now: @escaping @Sendable () -> Int64) {
        self.now = now
        enforce = configuration.enforce
        maxWait = configuration.maxWait
        limits = configuration.models
    }

    /// Waits until a call fits the ticket's limits and counts it.
    /// - Throws: 429 in Google's envelope, with `RetryInfo` and `Retry-After`, when it would not fit in time.
    func admit(_ ticket: Ticket) async throws(ProxyError) {
        guard enforce else { return }
        let deadline = ContinuousClock.now + maxWait
        while true {
            let day = QuotaDay(containing: Date(milliseconds: self.now()))
            let now = ContinuousClock.now
            let verdict: Verdict = states.withLock { states in
                if states[ticket] == nil && states.count >= Self.maxStates { Self.forgetIdle(&states, now: now) }
                var state = states[ticket, default: ModelState()]
                defer { states[ticket] = state }
                return decide(&state, model: ticket.model, now: now, day: day)
            }
            switch verdict {
            case .go: return
            case .refuse(let message, let retryAfter):
                throw .quotaExceeded(message, retryAfter: max(1, Int(retryAfter.components.seconds)))
            case .wait(let until, let message):
                guard until <= deadline else {
                    throw .quotaExceeded(message, retryAfter: max(1, Int((until - now).components.seconds) + 1))
                }
                try? await Task.sleep(until: until, clock: .continuous)
            }
        }
    }

    private enum Verdict {
        case go
        case wait(until: ContinuousClock.Instant, message: String)
        case refuse(message: String, retryAfter: Duration)
    }

    private func decide(_ state: inout ModelState, model: String, now: ContinuousClock.Instant, day: QuotaDay) -> Verdict {
        let configured = limits[model] ?? .init()
        let rpm = state.learned.rpm ?? configured.rpm
        let rpd = state.learned.rpd ?? configured.rpd
        let tpm = state.learned.tpm ?? configured.tpm
        if state.day != day.id {
            state.day = day.id
            state.today = 0
            state.learned = .init()
        }
        state.recent.removeAll { now - $0.at >= .seconds(60) }
        if let paused = state.pausedUntil, paused > now {
            return .wait(until: paused, message: "\(model) is paused: the upstream asked to retry later.")
        }
        if let rpd, state.today >= rpd {
            let untilReset = Duration.seconds(max(1, day.resetsAt.timeIntervalSinceNow))
            return .refuse(
                message:
                    "Quota exceeded for \(model): \(rpd) requests per day (limits.models). The quota day resets at midnight America/Los_Angeles.",
                retryAfter: untilReset
            )
        }
        if let rpm, state.recent.count >= rpm, let oldest = state.recent.first {
            return .wait(until: oldest.at + .seconds(60), message: "Quota exceeded for \(model): \(rpm) requests per minute (limits.models).")
        }
        if let tpm, let oldest = state.recent.first, state.recent.reduce(0, { $0 + $1.tokens }) >= tpm {
            return .wait(until: oldest.at + .seconds(60), message: "Quota exceeded for \(model): \(tpm) tokens per minute (limits.models).")
        }
        state.recent.append((now, 0))
        state.today += 1
        return .go
    }

    /// Drops states that hold nothing to remember: no call this minute or day, no pause.
    private static func forgetIdle(_ states: inout [Ticket: ModelState], now: ContinuousClock.Instant) {
        states = states.filter { _, state in
            state.today > 0 || state.recent.contains { now - $0.at < .seconds(60) } || state.pausedUntil.map { $0 > now } == true
        }
    }

    /// Gives back an admitted call that the upstream refused for its credential (400, 401, 403):
    /// it used no quota of the project.
    func refund(_ ticket: Ticket) {
        guard enforce else { return }
        states.withLock { states in
            guard var state = states[ticket], state.today > 0 else { return }
            state.today -= 1
            if !state.recent.isEmpty { state.recent.removeLast() }
            states[ticket] = state
        }
    }

    /// Adds an answered call's tokens to the minute's count (for TPM).
    func recordTokens(_ ticket: Ticket, tokens: Int) {
        guard enforce, tokens > 0 else { return }
        states.withLock { states in
            guard let index = states[ticket]?.recent.indices.last else { return }
            states[ticket]?.recent[index].tokens += min(tokens, Int(Int32.max))
        }
    }

    /// Learns from an upstream 429: pauses the model for its `RetryInfo` delay and takes the limit
    /// values of its `QuotaFailure` violations.
    func learn(_ ticket: Ticket, status: Int, body: [UInt8]) {
        guard enforce, status == 429 else { return }
        let delay = UpstreamErrorDetails.retryDelay(in: body)
        let violations = UpstreamErrorDetails.quotaViolations(in: body)
        states.withLock { states in
            var state = states[ticket, default: ModelState()]
            if let delay { state.pausedUntil = max(state.pausedUntil ?? .now, .now + delay) }
            for (quotaID, value) in violations {
                if quotaID.contains("PerDay") && quotaID.contains("Requests") { state.learned.rpd = value }
                if quotaID.contains("PerMinute") && quotaID.contains("Requests") { state.learned.rpm = value }
                if quotaID.contains("PerMinute") && quotaID.contains("Tokens") { state.learned.tpm = value }
            }
            states[ticket] = state
        }
    }
}
