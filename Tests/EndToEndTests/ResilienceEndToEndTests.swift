import Foundation
import GemcacheCore
import GemcacheTestSupport
import GeminiMock
import Testing

/// Retries, timeouts and unreachable upstreams (SPEC §6), against the mock upstream's fault triggers.
@Suite(.timeLimit(.minutes(1)))
struct ResilienceEndToEndTests {
    let path = "/v1beta/models/gemini-2.5-flash:generateContent"
    let key = ["x-goog-api-key": testKey]

    private func withStack<R: Sendable>(
        configure: @Sendable (inout ProxyConfiguration) -> Void = { _ in },
        _ body: @Sendable (_ port: Int, _ recorder: MockUpstreamRecorder) async throws -> R
    ) async throws -> R {
        try await withProxyBehindMock(configure: configure) { port, recorder, _ in try await body(port, recorder) }
    }

    @Test func aPassingFailureIsRetriedAndTheAnswerStored() async throws {
        try await withStack { port, recorder in
            let body = generateBody("flaky [[fault:once-500]]")
            let first = try await send(port: port, path: path, body: body, headers: key)
            #expect(first.status == 200)
            #expect(first.header("x-gemcache") == "MISS")
            #expect(recorder.totalRequests == 2)
            let second = try await send(port: port, path: path, body: body, headers: key)
            #expect(second.header("x-gemcache") == "HIT")
            #expect(recorder.totalRequests == 2)
        }
    }

    @Test func afterTheLastAttemptTheClientGetsTheUpstreamsOwnError() async throws {
        try await withStack { port, recorder in
            let answer = try await send(port: port, path: path, body: generateBody("down [[fault:503]]"), headers: key)
            #expect(answer.status == 503)
            #expect(answer.body.contains("The model is overloaded"))
            #expect(recorder.totalRequests == 3)
        }
    }

    @Test func aRetryDelayBeyondTheBudgetIsNotWaitedFor() async throws {
        try await withStack(configure: { $0.upstream.retry.budget = .seconds(1) }) { port, recorder in
            let answer = try await send(port: port, path: path, body: generateBody("quota [[fault:429]]"), headers: key)
            #expect(answer.status == 429)
            #expect(answer.body.contains("google.rpc.RetryInfo"))
            #expect(recorder.totalRequests == 1, "the 2 s RetryInfo delay does not fit the 1 s budget: no retry")
        }
    }

    @Test func aSlowUpstreamGetsA504InGooglesEnvelope() async throws {
        try await withStack(configure: {
            $0.upstream.timeout = .milliseconds(300)
            $0.upstream.retry.attempts = 1
        }) { port, _ in
            let answer = try await send(port: port, path: path, body: generateBody("take your time [[fault:slow:3000]]"), headers: key)
            #expect(answer.status == 504)
            #expect(answer.body.contains("\"status\":\"DEADLINE_EXCEEDED\""))
        }
    }

    @Test func anUnreachableUpstreamGetsA502Promptly() async throws {
        try await withTemporaryDirectory { dir in
            var configuration = ProxyConfiguration.testing(upstreamURL: "http://127.0.0.1:9", dataDirectory: dir.path)
            configuration.upstream.retry.budget = .seconds(1)
            try await withProxy(configuration) { port in
                let started = ContinuousClock.now
                let answer = try await send(port: port, path: path, body: generateBody("anyone there?"), headers: key)
                #expect(answer.status == 502)
                #expect(answer.body.contains("\"status\":\"UNAVAILABLE\""))
                #expect(ContinuousClock.now - started < .seconds(15), "promptly: not the 20 s request timeout")
            }
        }
    }

    @Test func anExpiredEntryIsServedStaleWhenTheUpstreamFails() async throws {
        try await withTemporaryDirectory { dir in
            let body = generateBody("keep me around")
            let configuration = try await withMockUpstream { upstreamPort, _ in
                var configuration = ProxyConfiguration.testing(upstreamURL: "http://127.0.0.1:\(upstreamPort)", dataDirectory: dir.path)
                configuration.cache.staleIfError = .seconds(60)
                configuration.upstream.retry.budget = .milliseconds(200)
                let stored = try await withProxy(configuration) { port in
                    try await send(port: port, path: path, body: body, headers: key.merging(["x-gemcache-ttl": "1"]) { $1 })
                }
                #expect(stored.header("cache-status")?.contains("stored") == true)
                return configuration
            }
            try await Task.sleep(for: .milliseconds(1100))
            // The mock upstream is gone now: every call fails to connect.
            try await withProxy(configuration) { port in
                let stale = try await send(port: port, path: path, body: body, headers: key)
                #expect(stale.status == 200)
                #expect(stale.header("x-gemcache") == "STALE")
                #expect(stale.header("cache-status")?.contains("ttl=-") == true)
                let other = try await send(port: port, path: path, body: generateBody("never stored"), headers: key)
                #expect(other.status == 502)
            }
            var strict = configuration
            strict.cache.staleIfError = .zero
            try await withProxy(strict) { port in
                let failed = try await send(port: port, path: path, body: body, headers: key)
                #expect(failed.status == 502)
            }
        }
    }
}
