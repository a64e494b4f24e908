import Foundation
import GemcacheCore
import GemcacheTestSupport
import GeminiMock
import Testing

/// The quota guard and model fallback (SPEC §6) against the mock upstream, through the router.
@Suite(.timeLimit(.minutes(1)))
struct QuotaGuardTests {
    let path = "/v1beta/models/gemini-2.5-flash:generateContent"
    let key = ["x-goog-api-key": testKey]

    private func withStack<R: Sendable>(
        configure: @Sendable (inout ProxyConfiguration) -> Void,
        _ body: @Sendable (_ proxy: InProcessProxy, _ recorder: MockUpstreamRecorder) async throws -> R
    ) async throws -> R {
        try await withInProcessProxyBehindMock(configure: { configuration in
            configuration.limits.enforce = true
            configuration.limits.maxWait = .zero
            configuration.upstream.retry.attempts = 1
            configure(&configuration)
        }) { proxy, recorder, _ in try await body(proxy, recorder) }
    }

    private func retryDelay(_ response: TestResponse) -> String? {
        let envelope = try? JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: [String: Any]]
        return (envelope?["error"]?["details"] as? [[String: Any]])?.first { ($0["@type"] as? String)?.hasSuffix("RetryInfo") == true }?["retryDelay"]
            as? String
    }

    @Test func rpmIsNeverExceededAndHitsAreStillServed() async throws {
        try await withStack(configure: { $0.limits.models["gemini-2.5-flash"] = .init(rpm: 2) }) { proxy, recorder in
            let first = try await proxy.send(path: path, body: generateBody("one"), headers: key)
            let second = try await proxy.send(path: path, body: generateBody("two"), headers: key)
            let third = try await proxy.send(path: path, body: generateBody("three"), headers: key)
            #expect(first.status == 200 && second.status == 200)
            #expect(third.status == 429)
            #expect(third.body.contains("RESOURCE_EXHAUSTED"))
            #expect(retryDelay(third) != nil)
            #expect(Int(third.header("retry-after") ?? "") ?? 0 > 0)
            #expect(recorder.totalRequests == 2)
            let hit = try await proxy.send(path: path, body: generateBody("one"), headers: key)
            #expect(hit.header("x-gemcache") == "HIT", "hits are always served")
        }
    }

    @Test func rpdExhaustionAnswers429AtOnce() async throws {
        try await withStack(configure: {
            $0.limits.models["gemini-2.5-flash"] = .init(rpd: 1)
            $0.limits.maxWait = .seconds(30)
        }) { proxy, recorder in
            _ = try await proxy.send(path: path, body: generateBody("today's only call"), headers: key)
            let started = ContinuousClock.now
            let refused = try await proxy.send(path: path, body: generateBody("one too many"), headers: key)
            #expect(refused.status == 429)
            #expect(ContinuousClock.now - started < .seconds(10), "no waiting (max_wait is 30 s) for a daily limit")
            #expect(refused.body.contains("per day"))
            #expect(recorder.totalRequests == 1)
        }
    }

    @Test func anUpstream429PausesTheModel() async throws {
        try await withStack(configure: { _ in }) { proxy, recorder in
            let limited = try await proxy.send(path: path, body: generateBody("quota [[fault:429]]"), headers: key)
            #expect(limited.status == 429)
            #expect(limited.body.contains("QuotaFailure"), "the upstream's own error, unchanged")
            let paused = try await proxy.send(path: path, body: generateBody("anything else"), headers: key)
            #expect(paused.status == 429)
            #expect(paused.body.contains("paused"))
            #expect(recorder.totalRequests == 1)
            // A model without built-in limits.
            let other = try await proxy.send(
                path: "/v1beta/models/gemini-3-flash-preview:generateContent",
                body: generateBody("other model"),
                headers: key
            )
            #expect(other.status == 200, "only that model pauses")
        }
    }

    @Test func aModelOutOfQuotaFallsBackAndIsNotStoredUnderItsKey() async throws {
        try await withStack(configure: {
            $0.limits.models["gemini-2.5-pro"] = .init(rpd: 0)
            $0.fallback = ["gemini-2.5-pro": "gemini-2.5-flash"]
        }) { proxy, recorder in
            let pro = "/v1beta/models/gemini-2.5-pro:generateContent"
            let first = try await proxy.send(path: pro, body: generateBody("fall back"), headers: key)
            #expect(first.status == 200)
            #expect(first.header("x-gemcache-fallback") == "gemini-2.5-flash")
            #expect(first.body.contains("\"modelVersion\": \"gemini-2.5-flash\"") || first.body.contains("\"modelVersion\":\"gemini-2.5-flash\""))
            let again = try await proxy.send(path: pro, body: generateBody("fall back"), headers: key)
            #expect(again.header("x-gemcache") == "MISS", "never stored under the first model's key")
            #expect(recorder.requests(path: "/v1beta/models/gemini-2.5-flash:generateContent") == 2)
            #expect(recorder.requests(path: pro) == 0)

            let stream = try await proxy.send(
                path: "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
                body: generateBody("fall back"),
                headers: key
            )
            #expect(stream.status == 200)
            #expect(stream.header("x-gemcache-fallback") == "gemini-2.5-flash")
            #expect(stream.body.hasPrefix("data: "))
        }
    }

    @Test func madeUpKeysAndOneClients429NeverSpendAnotherClientsQuota() async throws {
        try await withInProcessProxyBehindMock(
            .init(validKeys: [testKey, "second-key"]),
            configure: { configuration in
                configuration.limits.enforce = true
                configuration.limits.maxWait = .zero
                configuration.upstream.retry.attempts = 1
                configuration.limits.models["gemini-2.5-flash"] = .init(rpm: 2, rpd: 3)
            }
        ) { proxy, recorder, _ in
            for index in 0..<5 {
                let refused = try await proxy.send(
                    path: path,
                    body: generateBody("made up \(index)"),
                    headers: ["x-goog-api-key": "made-up-\(index % 2)"]
                )
                #expect(refused.status == 400, "Google refuses the key; the guard does not count the call")
            }
            let limited = try await proxy.send(path: path, body: generateBody("quota [[fault:429]]"), headers: ["x-goog-api-key": "second-key"])
            #expect(limited.status == 429)
            let paused = try await proxy.send(path: path, body: generateBody("after the 429"), headers: ["x-goog-api-key": "second-key"])
            #expect(paused.body.contains("paused"), "the client whose key was answered 429 waits")
            for index in 0..<2 {
                let answer = try await proxy.send(path: path, body: generateBody("mine \(index)"), headers: key)
                #expect(answer.status == 200, "another client's refused calls and 429 do not spend this key's quota")
            }
            let third = try await proxy.send(path: path, body: generateBody("mine 3"), headers: key)
            #expect(third.status == 429, "this key's own limit still holds")
            #expect(recorder.totalRequests == 8)
        }
    }
}
