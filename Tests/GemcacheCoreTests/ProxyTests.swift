import Foundation
import GemcacheCore
import GemcacheTestSupport
import GeminiMock
import Hummingbird
import Synchronization
import Testing

/// The proxy's behaviour through its router (no socket): the mock upstream answers in process, the
/// store is a real LMDB in a temporary directory, and time moves only when a test advances it.
@Suite(.timeLimit(.minutes(1)))
struct ProxyTests {
    let path = "/v1beta/models/gemini-2.5-flash:generateContent"

    @Test func missThenHitMakesOneUpstreamCall() async throws {
        try await withInProcessProxyBehindMock { proxy, recorder, _ in
            let body = generateBody("Why is the sky blue?")
            let miss = try await proxy.send(path: path, body: body, headers: ["x-goog-api-key": testKey])
            let hit = try await proxy.send(path: path, body: body, headers: ["x-goog-api-key": testKey])
            #expect(miss.status == 200)
            #expect(miss.header("x-gemcache") == "MISS")
            #expect(miss.header("cache-status")?.contains("stored") == true)
            #expect(hit.status == 200)
            #expect(hit.header("x-gemcache") == "HIT")
            #expect(hit.body == miss.body)
            #expect(hit.header("content-type") == miss.header("content-type"))
            #expect(hit.header("age") != nil)
            #expect(hit.header("x-gemcache-key") == miss.header("x-gemcache-key"))
            #expect(hit.header("x-gemcache-key")?.count == 64)
            #expect(hit.header("cache-status")?.hasPrefix("gemcache; hit; ttl=") == true)
            #expect(hit.header("transfer-encoding") == nil)
            #expect(recorder.requests(path: path) == 1)
        }
    }

    @Test func equivalentBodiesShareOneEntry() async throws {
        try await withInProcessProxyBehindMock { proxy, recorder, _ in
            let first = #"{"contents":[{"role":"user","parts":[{"text":"Hello"}]}],"generationConfig":{"temperature":1.0}}"#
            let variant =
                "{\"generation_config\": {\"temperature\": 1},\r\n \"contents\": [{\"parts\": [{\"text\": \"  Hello\\r\\n\"}], \"role\": \"user\"}]}"
            let miss = try await proxy.send(path: path, body: first, headers: ["x-goog-api-key": testKey])
            let hit = try await proxy.send(path: path, body: variant, headers: ["x-goog-api-key": testKey])
            #expect(miss.header("x-gemcache") == "MISS")
            #expect(hit.header("x-gemcache") == "HIT")
            #expect(recorder.totalRequests == 1)
            let other = try await proxy.send(path: path, body: generateBody("Hello there"), headers: ["x-goog-api-key": testKey])
            #expect(other.header("x-gemcache") == "MISS")
            #expect(recorder.totalRequests == 2)
        }
    }

    @Test func concurrentIdenticalMissesMakeOneUpstreamCall() async throws {
        try await withInProcessProxyBehindMock(.init(latency: .milliseconds(800))) { proxy, recorder, _ in
            let body = generateBody("fifty at once")
            let results = try await withThrowingTaskGroup(of: TestResponse.self) { group in
                for _ in 0..<50 {
                    group.addTask { try await proxy.send(path: path, body: body, headers: ["x-goog-api-key": testKey]) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(results.count == 50)
            #expect(results.allSatisfy { $0.status == 200 && $0.body == results[0].body })
            #expect(results.filter { $0.header("x-gemcache") == "MISS" }.count == 1)
            // Requests that arrive after the answer was stored are hits (a loaded machine may be slow to send all 50).
            #expect(results.filter { ["COALESCED", "HIT"].contains($0.header("x-gemcache")) }.count == 49)
            #expect(results.contains { $0.header("x-gemcache") == "COALESCED" })
            #expect(recorder.totalRequests == 1)
        }
    }

    @Test(arguments: ["[[fault:500]]", "[[fault:503]]", "[[fault:429]]", "[[fault:safety]]", "[[fault:blocked]]", "[[fault:truncate]]"])
    func incompleteOrFailedAnswersAreNotStored(fault: String) async throws {
        try await withInProcessProxyBehindMock(configure: { $0.upstream.retry.attempts = 1 }) { proxy, recorder, _ in
            let body = generateBody("trouble \(fault)")
            let first = try await proxy.send(path: path, body: body, headers: ["x-goog-api-key": testKey])
            let second = try await proxy.send(path: path, body: body, headers: ["x-goog-api-key": testKey])
            #expect(first.header("x-gemcache") == "MISS")
            #expect(second.header("x-gemcache") == "MISS")
            #expect(first.status == second.status)
            #expect(first.header("cache-status")?.contains("stored") == false)
            #expect(recorder.totalRequests == 2)
            if first.status >= 400 {
                let error = try JSONSerialization.jsonObject(with: Data(first.body.utf8)) as? [String: Any]
                #expect((error?["error"] as? [String: Any])?["code"] as? Int == first.status)
            }
        }
    }

    @Test func requestControls() async throws {
        try await withInProcessProxyBehindMock { proxy, recorder, _ in
            let key = ["x-goog-api-key": testKey]
            let body = generateBody("controls")
            let onlyCached = try await proxy.send(
                path: path,
                body: body,
                headers: key.merging(["cache-control": "only-if-cached"]) { $1 }
            )
            #expect(onlyCached.status == 504)
            #expect(onlyCached.body.contains("\"status\":\"DEADLINE_EXCEEDED\""))
            #expect(recorder.totalRequests == 0)

            let bypass = try await proxy.send(path: path, body: body, headers: key.merging(["cache-control": "no-store"]) { $1 })
            #expect(bypass.header("x-gemcache") == "BYPASS")
            let miss = try await proxy.send(path: path, body: body, headers: key)
            #expect(miss.header("x-gemcache") == "MISS")
            let refresh = try await proxy.send(path: path, body: body, headers: key.merging(["cache-control": "no-cache"]) { $1 })
            #expect(refresh.header("x-gemcache") == "REFRESH")
            #expect(refresh.header("cache-status")?.contains("stored") == true)
            let hit = try await proxy.send(path: path, body: body, headers: key.merging(["cache-control": "only-if-cached"]) { $1 })
            #expect(hit.header("x-gemcache") == "HIT")
            #expect(recorder.totalRequests == 3)

            let namespaced = try await proxy.send(
                path: path,
                body: body,
                headers: key.merging(["x-gemcache-namespace": "team-a"]) { $1 }
            )
            #expect(namespaced.header("x-gemcache") == "MISS")
            #expect(namespaced.header("x-gemcache-key") != hit.header("x-gemcache-key"))

            let short = generateBody("short-lived")
            _ = try await proxy.send(path: path, body: short, headers: key.merging(["x-gemcache-ttl": "1"]) { $1 })
            proxy.clock.advance(by: .milliseconds(1001))
            let expired = try await proxy.send(path: path, body: short, headers: key)
            #expect(expired.header("x-gemcache") == "MISS")

            let stale = try await proxy.send(path: path, body: body, headers: key.merging(["cache-control": "max-age=0"]) { $1 })
            #expect(stale.header("x-gemcache") == "MISS")

            let badTTL = try await proxy.send(path: path, body: body, headers: key.merging(["x-gemcache-ttl": "soon"]) { $1 })
            #expect(badTTL.status == 400)
        }
    }

    /// `cache.default_ttl` is the TTL of every kind that `cache.ttl` does not name (SPEC §1): the stored
    /// entry's TTL, as a hit's `Cache-Status` gives it, comes from there; a named kind keeps its own.
    @Test func aKindThatCacheTTLDoesNotNameIsStoredForTheDefaultTTL() async throws {
        let file = TemporaryDirectory()
        defer { file.remove() }
        FileManager.default.createFile(atPath: file.path + "/proxy.conf", contents: Data("cache: {default_ttl: 2h, ttl: {generate: 3h}}".utf8))
        let cache = try await ProxyConfiguration.load(filePath: file.path + "/proxy.conf", environment: [:]).cache
        try await withInProcessProxyBehindMock(configure: { $0.cache = cache }) { proxy, recorder, _ in
            func hitTTL(_ method: String, _ path: String, _ body: String?) async throws -> Int {
                _ = try await proxy.send(method, path: path, body: body, headers: ["x-goog-api-key": testKey])
                let hit = try await proxy.send(method, path: path, body: body, headers: ["x-goog-api-key": testKey])
                #expect(hit.header("x-gemcache") == "HIT", "\(path)")
                let ttl = try #require(hit.header("cache-status")?.firstMatch(of: /ttl=(\d+);/)?.1)
                return try #require(Int(ttl))
            }
            let hours = { (hours: Int) in (hours * 3600 - 10)...(hours * 3600) }
            let countTokens = try await hitTTL("POST", "/v1beta/models/gemini-2.5-flash:countTokens", generateBody("count me"))
            let model = try await hitTTL("GET", "/v1beta/models/gemini-2.5-flash", nil)
            let generate = try await hitTTL("POST", path, generateBody("keep me"))
            #expect(hours(2).contains(countTokens), "countTokens: not named, default_ttl")
            #expect(hours(2).contains(model), "models.get: not named, default_ttl")
            #expect(hours(3).contains(generate), "generateContent: its own TTL")
            #expect(recorder.totalRequests == 3)
        }
    }

    @Test func perKeyScopeSeparatesClients() async throws {
        try await withInProcessProxyBehindMock { proxy, recorder, _ in
            let body = generateBody("whose answer")
            let first = try await proxy.send(path: path, body: body, headers: ["x-goog-api-key": "key-one"])
            let second = try await proxy.send(path: path + "?key=key-two", body: body)
            let again = try await proxy.send(path: path, body: body, headers: ["authorization": "Bearer key-two"])
            #expect(first.header("x-gemcache") == "MISS")
            #expect(second.header("x-gemcache") == "MISS")
            #expect(again.header("x-gemcache") == "HIT")
            #expect(recorder.totalRequests == 2)
        }
    }

    @Test func badRequestsNeverReachUpstream() async throws {
        try await withInProcessProxyBehindMock(configure: { $0.limits.maxBody = 4096 }) { proxy, recorder, _ in
            let noKey = try await proxy.send(path: path, body: generateBody("x"))
            #expect(noKey.status == 403)
            #expect(noKey.body.contains("PERMISSION_DENIED"))
            let malformed = try await proxy.send(path: path, body: "{\"contents\": [", headers: ["x-goog-api-key": testKey])
            #expect(malformed.status == 400)
            #expect(malformed.body.contains("\"status\":\"INVALID_ARGUMENT\""))
            let tooBig = try await proxy.send(
                path: path,
                body: generateBody(String(repeating: "a", count: 5000)),
                headers: ["x-goog-api-key": testKey]
            )
            #expect(tooBig.status == 413)
            let trick = try await proxy.send(
                path: "/v1beta/models/..%2F..%2Fx:generateContent",
                body: generateBody("x"),
                headers: ["x-goog-api-key": testKey]
            )
            #expect(trick.status == 400)
            #expect(recorder.totalRequests == 0)
        }
    }

    @Test func otherRoutesPassThroughStreaming() async throws {
        try await withInProcessProxyBehindMock { proxy, recorder, _ in
            let payload = String(repeating: "0123456789", count: 300_000)
            let upload = try await proxy.send(path: "/upload/v1beta/files", body: payload, headers: ["x-goog-api-key": testKey])
            #expect(upload.status == 200)
            #expect(upload.header("x-gemcache") == "PASS")
            #expect(upload.header("cache-status") == "gemcache; fwd=bypass", "every proxied answer says what the cache did (SPEC §4)")
            let file = try JSONSerialization.jsonObject(with: Data(upload.body.utf8)) as? [String: [String: String]]
            #expect(file?["file"]?["sizeBytes"] == "3000000")
            let missing = try await proxy.send("GET", path: "/v1beta/cachedContents/abc", headers: ["x-goog-api-key": testKey])
            #expect(missing.status == 404)
            #expect(missing.header("x-gemcache") == "PASS")
            #expect(recorder.lastHeaders["x-goog-api-key"] == testKey)
            #expect(recorder.totalRequests == 2)
        }
    }

    @Test func entriesSurviveRestartAndKeysNeverReachTheStore() async throws {
        try await withTemporaryDirectory { dir in
            let recorder = MockUpstreamRecorder()
            let upstream = InProcessUpstream(recorder: recorder)
            let configuration = ProxyConfiguration.testing(upstreamURL: InProcessUpstream.url, dataDirectory: dir.path)
            let body = generateBody("remember me")
            let secret = ["AI", "za"].joined() + "TEST-secret-credential-0123456789"
            let first = try await withInProcessProxy(configuration, upstream: upstream) { proxy in
                try await proxy.send(path: path + "?key=\(secret)", body: body)
            }
            let second = try await withInProcessProxy(configuration, upstream: upstream) { proxy in
                try await proxy.send(path: path, body: body, headers: ["x-goog-api-key": secret])
            }
            #expect(first.header("x-gemcache") == "MISS")
            #expect(second.header("x-gemcache") == "HIT")
            #expect(second.body == first.body)
            #expect(recorder.totalRequests == 1)
            let stored = dir.allBytes()
            #expect(!stored.isEmpty)
            #expect(stored.firstRange(of: Array(secret.utf8)) == nil)
            #expect(stored.firstRange(of: Array(secret.prefix(12).utf8)) == nil)
        }
    }

    @Test func statsCountWhatClientsSaw() async throws {
        try await withInProcessProxyBehindMock { proxy, _, _ in
            let key = ["x-goog-api-key": testKey]
            _ = try await proxy.send(path: path, body: generateBody("a"), headers: key)
            _ = try await proxy.send(path: path, body: generateBody("a"), headers: key)
            _ = try await proxy.send(path: path, body: generateBody("a"), headers: key)
            _ = try await proxy.send(path: path, body: generateBody("b"), headers: key)
            _ = try await proxy.send(path: path, body: generateBody("c"), headers: key.merging(["cache-control": "no-store"]) { $1 })
            _ = try await proxy.send(path: path, body: "not json", headers: key)
            let stats = try await proxy.statsDocument()
            #expect(stats["requests"] as? Int == 6)
            #expect(stats["hits"] as? Int == 2)
            #expect(stats["misses"] as? Int == 2)
            #expect(stats["bypassed"] as? Int == 1)
            #expect(stats["errors"] as? Int == 1)
            #expect(stats["upstream_requests"] as? Int == 3)
            #expect(stats["saved_requests"] as? Int == 2)
            #expect(stats["entries"] as? Int == 2)
            #expect(stats["hit_ratio"] as? Double == 0.5)
            #expect((stats["saved_tokens"] as? Int ?? 0) > 0)
            #expect((stats["store_bytes"] as? Int ?? 0) > 0)
            let health = try await proxy.send("GET", path: "/healthz")
            #expect(health.status == 200)
        }
    }

    @Test func anExpiredEntryIsServedStaleWhenTheUpstreamFails() async throws {
        try await withTemporaryDirectory { dir in
            let key = ["x-goog-api-key": testKey]
            let body = generateBody("keep me around")
            let upstream = InProcessUpstream(recorder: MockUpstreamRecorder())
            let clock = ManualClock()
            var configuration = ProxyConfiguration.testing(upstreamURL: InProcessUpstream.url, dataDirectory: dir.path)
            configuration.cache.staleIfError = .seconds(60)
            configuration.upstream.retry.budget = .milliseconds(200)
            let stored = try await withInProcessProxy(configuration, upstream: upstream, clock: clock) { proxy in
                try await proxy.send(path: path, body: body, headers: key.merging(["x-gemcache-ttl": "1"]) { $1 })
            }
            #expect(stored.header("cache-status")?.contains("stored") == true)
            clock.advance(by: .milliseconds(1001))
            // The upstream is gone now: every call fails to connect.
            upstream.isReachable = false
            try await withInProcessProxy(configuration, upstream: upstream, clock: clock) { proxy in
                let stale = try await proxy.send(path: path, body: body, headers: key)
                #expect(stale.status == 200)
                #expect(stale.header("x-gemcache") == "STALE")
                #expect(stale.header("cache-status")?.contains("ttl=-") == true)
                let other = try await proxy.send(path: path, body: generateBody("never stored"), headers: key)
                #expect(other.status == 502)
            }
            var strict = configuration
            strict.cache.staleIfError = .zero
            try await withInProcessProxy(strict, upstream: upstream, clock: clock) { proxy in
                let failed = try await proxy.send(path: path, body: body, headers: key)
                #expect(failed.status == 502)
            }
        }
    }

    @Test func staleAnswersGoToVerifiedCredentialsOnly() async throws {
        // The upstream answers the first request on each path, then fails every later one.
        let answered = Mutex(Set<String>())
        let upstream = InProcessUpstream(respond: { request in
            guard answered.withLock({ $0.insert(request.uri.path).inserted }) else {
                return Response(
                    status: .serviceUnavailable,
                    headers: [.contentType: "application/json"],
                    body: .init(byteBuffer: .init(string: #"{"error":{"code":503,"message":"down","status":"UNAVAILABLE"}}"#))
                )
            }
            let answer =
                #"{"candidates":[{"content":{"parts":[{"text":"hi"}],"role":"model"},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":1,"totalTokenCount":2}}"#
            if request.uri.path.hasSuffix(":streamGenerateContent") {
                return Response(
                    status: .ok,
                    headers: [.contentType: "text/event-stream"],
                    body: .init(byteBuffer: .init(string: "data: \(answer)\r\n\r\n"))
                )
            }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: .init(string: answer)))
        })
        try await withTemporaryDirectory { directory in
            var configuration = ProxyConfiguration.testing(upstreamURL: InProcessUpstream.url, dataDirectory: directory.path)
            configuration.cache.scope = .shared
            configuration.cache.staleIfError = .seconds(3600)
            configuration.upstream.retry.attempts = 1
            try await withInProcessProxy(configuration, upstream: upstream) { proxy in
                let stream = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
                for route in [path, stream] {
                    let first = try await proxy.send(
                        path: route,
                        body: generateBody("stale"),
                        headers: ["x-goog-api-key": testKey, "x-gemcache-ttl": "1"]
                    )
                    #expect(first.header("x-gemcache") == "MISS", "\(route)")
                }
                proxy.clock.advance(by: .milliseconds(1001))
                for route in [path, stream] {
                    let madeUp = try await proxy.send(path: route, body: generateBody("stale"), headers: ["x-goog-api-key": "made-up-key"])
                    #expect(madeUp.status == 503, "\(route): a made-up key gets the upstream's failure, not the stale answer")
                    #expect(madeUp.header("x-gemcache") != "STALE", "\(route)")
                    let verified = try await proxy.send(path: route, body: generateBody("stale"), headers: ["x-goog-api-key": testKey])
                    #expect(verified.header("x-gemcache") == "STALE", "\(route)")
                }
            }
        }
    }

    // MARK: - Retries (SPEC §6), against the mock's fault triggers

    @Test func aPassingFailureIsRetriedAndTheAnswerStored() async throws {
        try await withInProcessProxyBehindMock { proxy, recorder, _ in
            let body = generateBody("flaky [[fault:once-500]]")
            let first = try await proxy.send(path: path, body: body, headers: ["x-goog-api-key": testKey])
            #expect(first.status == 200)
            #expect(first.header("x-gemcache") == "MISS")
            #expect(recorder.totalRequests == 2)
            let second = try await proxy.send(path: path, body: body, headers: ["x-goog-api-key": testKey])
            #expect(second.header("x-gemcache") == "HIT")
            #expect(recorder.totalRequests == 2)
        }
    }

    @Test func afterTheLastAttemptTheClientGetsTheUpstreamsOwnError() async throws {
        try await withInProcessProxyBehindMock { proxy, recorder, _ in
            let answer = try await proxy.send(path: path, body: generateBody("down [[fault:503]]"), headers: ["x-goog-api-key": testKey])
            #expect(answer.status == 503)
            #expect(answer.body.contains("The model is overloaded"))
            #expect(recorder.totalRequests == 3)
        }
    }

    @Test func aRetryDelayBeyondTheBudgetIsNotWaitedFor() async throws {
        try await withInProcessProxyBehindMock(configure: { $0.upstream.retry.budget = .seconds(1) }) { proxy, recorder, _ in
            let answer = try await proxy.send(path: path, body: generateBody("quota [[fault:429]]"), headers: ["x-goog-api-key": testKey])
            #expect(answer.status == 429)
            #expect(answer.body.contains("google.rpc.RetryInfo"))
            #expect(recorder.totalRequests == 1, "the 2 s RetryInfo delay does not fit the 1 s budget: no retry")
        }
    }
}
