import Foundation
import HTTPTypes
import Synchronization

/// The quota guard (`limits.enforce`, SPEC §6): never sends more upstream calls than a model's
/// free-tier limits allow. A call that would exceed RPM or TPM waits for room (up to
/// `limits.max_wait`) or is answered 429; RPD exhaustion is answered 429 at once. It learns from the
/// upstream: a 429's `RetryInfo` pauses the model until the delay has passed, and a `QuotaFailure`'s
/// limit value replaces the configured one. Hits never pass through here.
///
/// Counts are this process's (several processes on one store each guard their own calls).
final class QuotaGuard: Sendable {
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
    private let models = Mutex<[String: ModelState]>([:])

    init(configuration: ProxyConfiguration.Limits) {
        enforce = configuration.enforce
        maxWait = configuration.maxWait
        limits = configuration.models
    }

    /// Waits until a call to `model` fits the limits and counts it.
    /// - Throws: 429 in Google's envelope, with `RetryInfo` and `Retry-After`, when it would not fit in time.
    func admit(model: String) async throws(ProxyError) {
        guard enforce else { return }
        let deadline = ContinuousClock.now + maxWait
        while true {
            let now = ContinuousClock.now
            let day = QuotaDay(containing: Date())
            let verdict: Verdict = models.withLock { models in
                var state = models[model, default: ModelState()]
                defer { models[model] = state }
                return decide(&state, model: model, now: now, day: day)
            }
            switch verdict {
            case .go: return
            case .refuse(let message, let retryAfter):
                throw ProxyError(.tooManyRequests, "RESOURCE_EXHAUSTED", message, retryAfter: max(1, Int(retryAfter.components.seconds)))
            case .wait(let until, let message):
                guard until <= deadline else {
                    throw ProxyError(.tooManyRequests, "RESOURCE_EXHAUSTED", message, retryAfter: max(1, Int((until - now).components.seconds) + 1))
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
        }
        state.recent.removeAll { now - $0.at >= .seconds(60) }
        if let paused = state.pausedUntil, paused > now {
            return .wait(until: paused, message: "\(model) is paused: the upstream asked to retry later.")
        }
        if let rpd, state.today >= rpd {
            let untilReset = Duration.seconds(max(1, day.resetsAt.timeIntervalSinceNow))
            return .refuse(message: "Quota exceeded for \(model): \(rpd) requests per day (limits.models). The quota day resets at midnight America/Los_Angeles.", retryAfter: untilReset)
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

    /// Adds an answered call's tokens to the minute's count (for TPM).
    func recordTokens(model: String, tokens: Int) {
        guard enforce, tokens > 0 else { return }
        models.withLock { models in
            guard let index = models[model]?.recent.indices.last else { return }
            models[model]?.recent[index].tokens += tokens
        }
    }

    /// Learns from an upstream 429: pauses the model for its `RetryInfo` delay and takes the limit
    /// values of its `QuotaFailure` violations.
    func learn(model: String, status: Int, body: [UInt8]) {
        guard status == 429 else { return }
        let delay = UpstreamErrorDetails.retryDelay(in: body)
        let violations = UpstreamErrorDetails.quotaViolations(in: body)
        models.withLock { models in
            var state = models[model, default: ModelState()]
            if let delay { state.pausedUntil = max(state.pausedUntil ?? .now, .now + delay) }
            for (quotaID, value) in violations {
                if quotaID.contains("PerDay") && quotaID.contains("Requests") { state.learned.rpd = value }
                if quotaID.contains("PerMinute") && quotaID.contains("Requests") { state.learned.rpm = value }
                if quotaID.contains("PerMinute") && quotaID.contains("Tokens") { state.learned.tpm = value }
            }
            models[model] = state
        }
    }
}
