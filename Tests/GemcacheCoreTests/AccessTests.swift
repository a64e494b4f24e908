import Foundation
import GemcacheCore
import GemcacheTestSupport
import GeminiMock
import Testing

/// Access control (SPEC §8) through the router: managed mode, shared-scope verification, admin actions.
@Suite(.timeLimit(.minutes(1)))
struct AccessTests {
    let path = "/v1beta/models/gemini-2.5-flash:generateContent"

    private func withStack<R: Sendable>(
        validKeys: Set<String>? = nil,
        environment: [String: String] = [:],
        configure: @Sendable (inout ProxyConfiguration) -> Void = { _ in },
        _ body: @Sendable (_ proxy: InProcessProxy, _ recorder: MockUpstreamRecorder, _ dir: TemporaryDirectory) async throws -> R
    ) async throws -> R {
        try await withInProcessProxyBehindMock(.init(validKeys: validKeys), environment: environment, configure: configure, body)
    }

    @Test func managedModeAdmitsProxyTokensAndSpendsTheUpstreamKeysInTurn() async throws {
        let environment = ["GEMINI_API_KEY": "upstream-one, upstream-two", "GEMCACHE_CLIENT_TOKENS": "team-token"]
        try await withStack(
            validKeys: ["upstream-one", "upstream-two"],
            environment: environment,
            configure: {
                $0.auth.mode = .managed
                $0.upstream.retry.attempts = 1
            }
        ) { proxy, recorder, _ in
            let none = try await proxy.send(path: path, body: generateBody("hello"))
            #expect(none.status == 401)
            #expect(none.body.contains("\"status\":\"UNAUTHENTICATED\""))
            let wrong = try await proxy.send(path: path, body: generateBody("hello"), headers: ["x-goog-api-key": "upstream-one"])
            #expect(wrong.status == 401, "an upstream key is not a proxy token")
            #expect(recorder.totalRequests == 0)

            let first = try await proxy.send(path: path + "?key=team-token", body: generateBody("first"))
            #expect(first.status == 200)
            #expect(recorder.lastHeaders["x-goog-api-key"] == "upstream-one")
            let second = try await proxy.send(path: path, body: generateBody("second"), headers: ["authorization": "Bearer team-token"])
            #expect(second.status == 200)
            #expect(recorder.lastHeaders["x-goog-api-key"] == "upstream-two")
            #expect(recorder.lastHeaders["authorization"] == nil)

            // Shared scope by default in managed mode: any client with a token gets the entry.
            let again = try await proxy.send(path: path, body: generateBody("first"), headers: ["x-goog-api-key": "team-token"])
            #expect(again.header("x-gemcache") == "HIT")

            let limited = try await proxy.send(
                path: path,
                body: generateBody("out of quota [[fault:429]]"),
                headers: ["x-goog-api-key": "team-token"]
            )
            #expect(limited.status == 429)
            #expect(recorder.lastHeaders["x-goog-api-key"] == "upstream-one")
            for text in ["after one", "after two"] {
                let answer = try await proxy.send(path: path, body: generateBody(text), headers: ["x-goog-api-key": "team-token"])
                #expect(answer.status == 200)
                #expect(recorder.lastHeaders["x-goog-api-key"] == "upstream-two", "the key answered 429 rests")
            }

            let passed = try await proxy.send("GET", path: "/v1beta/cachedContents?key=team-token")
            #expect(passed.header("x-gemcache") == "PASS")
            #expect(recorder.lastHeaders["x-goog-api-key"]?.hasPrefix("upstream-") == true)

            let stats = try await proxy.send("GET", path: "/_gemcache/stats")
            let document = try #require(try JSONSerialization.jsonObject(with: Data(stats.body.utf8)) as? [String: Any])
            let keys = try #require(document["keys"] as? [String: [String: Int]])
            #expect(keys.count == 2)
            #expect(keys.values.map { $0["upstream_requests"] ?? 0 }.reduce(0, +) == 6)
            #expect(!stats.body.contains("upstream-one") && !stats.body.contains("team-token"))
        }
    }

    @Test func sharedScopeServesHitsOnlyToKeysTheUpstreamAccepted() async throws {
        try await withStack(validKeys: ["good-one", "good-two"], configure: { $0.cache.scope = .shared }) { proxy, recorder, _ in
            let body = generateBody("shared answer")
            let first = try await proxy.send(path: path, body: body, headers: ["x-goog-api-key": "good-one"])
            #expect(first.header("x-gemcache") == "MISS")
            let madeUp = try await proxy.send(path: path, body: body, headers: ["x-goog-api-key": "made-up"])
            #expect(madeUp.status == 400, "a made-up key never gets a cached answer")
            #expect(madeUp.body.contains("API key not valid"))
            let unverified = try await proxy.send(path: path, body: body, headers: ["x-goog-api-key": "good-two"])
            #expect(unverified.header("x-gemcache") == "MISS", "a key the upstream has not vouched for goes upstream once")
            let verified = try await proxy.send(path: path, body: body, headers: ["x-goog-api-key": "good-two"])
            #expect(verified.header("x-gemcache") == "HIT")
            #expect(verified.body == first.body)
            #expect(recorder.totalRequests == 3)
        }
    }

    @Test func purgeNeedsTheAdminToken() async throws {
        try await withStack(environment: ["GEMCACHE_ADMIN_TOKEN": "admin-secret"]) { proxy, _, _ in
            let key = ["x-goog-api-key": testKey]
            _ = try await proxy.send(path: path, body: generateBody("one"), headers: key)
            _ = try await proxy.send(path: "/v1beta/models/gemini-2.5-pro:generateContent", body: generateBody("two"), headers: key)
            let anonymous = try await proxy.send(path: "/_gemcache/purge", body: #"{"all": true}"#)
            #expect(anonymous.status == 403)
            let wrong = try await proxy.send(path: "/_gemcache/purge", body: #"{"all": true}"#, headers: ["authorization": "Bearer guess"])
            #expect(wrong.status == 403)
            let admin = ["authorization": "Bearer admin-secret"]
            let dryRun = try await proxy.send(path: "/_gemcache/purge", body: #"{"model": "gemini-2.5-pro", "dry_run": true}"#, headers: admin)
            #expect(dryRun.body.contains("\"deleted\":1"))
            let byModel = try await proxy.send(path: "/_gemcache/purge", body: #"{"model": "gemini-2.5-pro"}"#, headers: admin)
            #expect(byModel.body.contains("\"deleted\":1"))
            let empty = try await proxy.send(path: "/_gemcache/purge", body: "{}", headers: admin)
            #expect(empty.status == 400)
            let all = try await proxy.send(path: "/_gemcache/purge", body: #"{"all": true}"#, headers: admin)
            #expect(all.body.contains("\"deleted\":1"))
            let after = try await proxy.send(path: path, body: generateBody("one"), headers: key)
            #expect(after.header("x-gemcache") == "MISS")
        }
        try await withStack { proxy, _, _ in
            let unconfigured = try await proxy.send(path: "/_gemcache/purge", body: #"{"all": true}"#, headers: ["authorization": "Bearer "])
            #expect(unconfigured.status == 403)
        }
    }
}
