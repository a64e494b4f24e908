import Foundation
import GemcacheCore
import GemcacheTestSupport
import GeminiMock
import Testing

/// SPEC §7: every request on a cached route is counted once, in `requests` and in exactly one of the
/// outcome counters, so that they add up, in total and per model.
@Suite(.timeLimit(.minutes(1)))
struct RequestCountsEndToEndTests {
    static let outcomes = ["hits", "coalesced", "misses", "refreshed", "bypassed", "stale", "errors"]

    static func sum(_ counters: [String: Any]) -> Int {
        outcomes.reduce(0) { $0 + (counters[$1] as? Int ?? 0) }
    }

    @Test func hitsMissesBypassesAndUpstreamErrorsAddUpToTheRequests() async throws {
        // One attempt: an upstream 500 is answered as it came, not retried.
        try await withProxyBehindMock(configure: { $0.upstream.retry.attempts = 1 }) { port, _, _ in
            let key = ["x-goog-api-key": testKey]
            let generate = "/v1beta/models/gemini-2.5-flash:generateContent"
            let stream = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
            let chat = "/v1beta/openai/chat/completions"
            func statuses(_ requests: [(path: String, body: String, headers: [String: String])]) async throws -> [String] {
                var seen: [String] = []
                for request in requests {
                    let response = try await send(port: port, path: request.path, body: request.body, headers: key.merging(request.headers) { $1 })
                    seen.append("\(response.status) \(response.header("x-gemcache") ?? "-")")
                }
                return seen
            }
            let chatBody = #"{"model":"gemini-2.5-pro","messages":[{"role":"user","content":"count me"}]}"#
            let seen = try await statuses([
                (generate, generateBody("counted"), [:]),
                (generate, generateBody("counted"), [:]),
                (generate, generateBody("counted"), ["cache-control": "no-store"]),
                (generate, generateBody("counted"), ["cache-control": "no-cache"]),
                (stream, generateBody("counted stream"), [:]),
                (stream, generateBody("counted stream"), [:]),
                (generate, #"{"contents":[]}"#, [:]),
                (generate, generateBody("fail [[fault:500]]"), [:]),
                (generate, "not json", [:]),
                (chat, chatBody, [:]),
                (chat, chatBody, [:]),
                (chat, #"{"model":"gemini-2.5-pro","messages":[]}"#, [:]),
            ])
            #expect(
                seen == [
                    "200 MISS", "200 HIT", "200 BYPASS", "200 REFRESH", "200 MISS", "200 HIT",
                    "400 MISS", "500 MISS", "400 -", "200 MISS", "200 HIT", "400 MISS",
                ]
            )
            let coalesced = try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<3 {
                    group.addTask {
                        try await send(port: port, path: generate, body: generateBody("together [[fault:slow:300]]"), headers: key).header(
                            "x-gemcache"
                        ) ?? "-"
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(coalesced.sorted() == ["COALESCED", "COALESCED", "MISS"])

            let stats = try await statsDocument(port: port) { $0["requests"] as? Int == 15 && Self.sum($0) == 15 }
            #expect(stats["requests"] as? Int == 15)
            #expect(Self.sum(stats) == 15, "each request counted once: \(stats.filter { Self.outcomes.contains($0.key) })")
            #expect(stats["errors"] as? Int == 4)
            #expect(stats["misses"] as? Int == 4)
            #expect(stats["hits"] as? Int == 3)
            let models = try #require(stats["models"] as? [String: [String: Any]])
            for (model, requests) in [("gemini-2.5-flash", 12), ("gemini-2.5-pro", 3)] {
                let counters = try #require(models[model])
                #expect(counters["requests"] as? Int == requests, "\(model)")
                #expect(Self.sum(counters) == requests, "\(model): \(counters.filter { Self.outcomes.contains($0.key) })")
            }
            #expect(models["gemini-2.5-pro"]?["errors"] as? Int == 1)
            #expect(models["gemini-2.5-flash"]?["errors"] as? Int == 3)
        }
    }
}
