import Foundation
import GemcacheCore
import GemcacheKey
import GemcacheTestSupport
import GeminiMock
import NIOCore
import Testing

/// Every cached surface of SPEC §2 through the proxy's router in front of the mock upstream. Streams as the
/// client receives them, chunk by chunk or abandoned, are tested over sockets (SurfaceEndToEndTests).
@Suite(.timeLimit(.minutes(1)))
struct SurfaceTests {
    let key = ["x-goog-api-key": testKey]

    private func withStack<R: Sendable>(
        _ mock: MockUpstreamConfiguration = .init(chunkDelay: .milliseconds(5)),
        _ body: @Sendable (_ proxy: InProcessProxy, _ recorder: MockUpstreamRecorder) async throws -> R
    ) async throws -> R {
        try await withInProcessProxyBehindMock(mock) { proxy, recorder, _ in try await body(proxy, recorder) }
    }

    @Test func truncatedStreamsAreNotStored() async throws {
        try await withStack { proxy, recorder in
            let path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
            let body = generateBody("cut short [[fault:truncate]]")
            let first = try await proxy.send(path: path, body: body, headers: key)
            let second = try await proxy.send(path: path, body: body, headers: key)
            #expect(first.header("x-gemcache") == "MISS")
            #expect(second.header("x-gemcache") == "MISS")
            #expect(recorder.totalRequests == 2)
        }
    }

    @Test func concurrentStreamMissesShareOneUpstreamStream() async throws {
        try await withStack(.init(latency: .milliseconds(500), chunkDelay: .milliseconds(50))) { proxy, recorder in
            let path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
            let body = generateBody("together")
            let results = try await withThrowingTaskGroup(of: TestResponse.self) { group in
                for _ in 0..<10 {
                    group.addTask { try await proxy.send(path: path, body: body, headers: key) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(results.allSatisfy { $0.status == 200 && $0.body == results[0].body })
            #expect(results.filter { $0.header("x-gemcache") == "MISS" }.count == 1)
            #expect(results.filter { ["COALESCED", "HIT"].contains($0.header("x-gemcache")) }.count == 9)
            #expect(results.contains { $0.header("x-gemcache") == "COALESCED" })
            #expect(recorder.totalRequests == 1)
        }
    }

    /// A client leaves a stream after its first event while the mock holds the rest back (SPEC §2,
    /// `cache.finish_aborted_streams`). The proxy notices at once (it counts the answer before the mock
    /// sends anything more); released, the stream is then read to its end and stored (on), or read no
    /// further, so that the mock's writes fail, and not stored (off).
    @Test(arguments: ["countTokens", "embedContent"])
    func tokenCountsAndEmbeddingsAreCached(operation: String) async throws {
        try await withStack { proxy, recorder in
            let path = "/v1/models/gemini-embedding-001:\(operation)"
            let body = operation == "embedContent" ? #"{"content":{"parts":[{"text":"embed me"}]}}"# : generateBody("count me")
            let miss = try await proxy.send(path: path, body: body, headers: key)
            let hit = try await proxy.send(path: path, body: body, headers: key)
            #expect(miss.status == 200)
            #expect(miss.header("x-gemcache") == "MISS")
            #expect(hit.header("x-gemcache") == "HIT")
            #expect(hit.body == miss.body)
            #expect(recorder.totalRequests == 1)
        }
    }

    @Test func batchEmbeddingsAreCachedPerItem() async throws {
        try await withStack { proxy, recorder in
            let path = "/v1beta/models/gemini-embedding-001:batchEmbedContents"
            func batch(_ texts: [String]) -> String {
                let items = texts.map { #"{"model":"models/gemini-embedding-001","content":{"parts":[{"text":"\#($0)"}]}}"# }
                return #"{"requests":[\#(items.joined(separator: ","))]}"#
            }
            func vectors(_ response: TestResponse) throws -> [[Double]] {
                let object = try #require(try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any])
                let embeddings = try #require(object["embeddings"] as? [[String: Any]])
                return embeddings.map { $0["values"] as? [Double] ?? [] }
            }
            let first = try await proxy.send(path: path, body: batch(["alpha", "beta"]), headers: key)
            #expect(first.header("x-gemcache") == "MISS")
            #expect(first.header("x-gemcache-items") == "hits=0, misses=2")
            let partial = try await proxy.send(path: path, body: batch(["gamma", "alpha"]), headers: key)
            #expect(partial.header("x-gemcache") == "PARTIAL")
            #expect(partial.header("x-gemcache-items") == "hits=1, misses=1")
            #expect(try vectors(partial)[1] == vectors(first)[0], "results merged in order")
            #expect(try vectors(partial)[0] != vectors(partial)[1])
            let all = try await proxy.send(path: path, body: batch(["beta", "gamma", "alpha"]), headers: key)
            #expect(all.header("x-gemcache") == "HIT")
            #expect(all.header("x-gemcache-items") == "hits=3, misses=0")
            #expect(try vectors(all) == [vectors(first)[1], vectors(partial)[0], vectors(first)[0]])
            #expect(recorder.totalRequests == 2)
            let document = try await proxy.statsDocument()
            #expect(document["saved_items"] as? Int == 4)
        }
    }

    @Test func modelListsAndModelsAreCachedByQuery() async throws {
        try await withStack { proxy, recorder in
            let list = try await proxy.send("GET", path: "/v1beta/models?pageSize=2", headers: key)
            let listAgain = try await proxy.send("GET", path: "/v1beta/models?pageSize=2&key=\(testKey)")
            let otherPage = try await proxy.send("GET", path: "/v1beta/models?pageSize=3", headers: key)
            let model = try await proxy.send("GET", path: "/v1/models/gemini-2.5-flash", headers: key)
            let modelAgain = try await proxy.send("GET", path: "/v1/models/gemini-2.5-flash", headers: key)
            #expect(list.status == 200)
            #expect(list.header("x-gemcache") == "MISS")
            #expect(listAgain.header("x-gemcache") == "HIT", "the credential is not part of the key")
            #expect(otherPage.header("x-gemcache") == "MISS")
            #expect(model.header("x-gemcache") == "MISS")
            #expect(modelAgain.header("x-gemcache") == "HIT")
            #expect(recorder.totalRequests == 3)
        }
    }

    @Test func theOpenAISurfaceIsCached() async throws {
        try await withStack { proxy, recorder in
            let bearer = ["authorization": "Bearer \(testKey)"]
            let chat = #"{"model":"gemini-2.5-flash","messages":[{"role":"user","content":"Hi there"}]}"#
            let chatMiss = try await proxy.send(path: "/v1beta/openai/chat/completions", body: chat, headers: bearer)
            let chatHit = try await proxy.send(path: "/v1beta/openai/chat/completions", body: chat, headers: bearer)
            #expect(chatMiss.header("x-gemcache") == "MISS")
            #expect(chatHit.header("x-gemcache") == "HIT")
            #expect(chatHit.body == chatMiss.body)

            let stream = #"{"model":"gemini-2.5-flash","stream":true,"messages":[{"role":"user","content":"Hi there"}]}"#
            let streamMiss = try await proxy.send(path: "/v1beta/openai/chat/completions", body: stream, headers: bearer)
            let streamHit = try await proxy.send(path: "/v1beta/openai/chat/completions", body: stream, headers: bearer)
            #expect(streamMiss.header("x-gemcache") == "MISS")
            #expect(streamHit.header("x-gemcache") == "HIT")
            #expect(streamHit.body.hasSuffix("data: [DONE]\n\n"))
            #expect(streamHit.body == streamMiss.body)

            let embed = #"{"model":"gemini-embedding-001","input":["one","two"]}"#
            let embedMiss = try await proxy.send(path: "/v1beta/openai/embeddings", body: embed, headers: bearer)
            let embedHit = try await proxy.send(path: "/v1beta/openai/embeddings", body: embed, headers: bearer)
            #expect(embedMiss.header("x-gemcache") == "MISS")
            #expect(embedHit.header("x-gemcache") == "HIT")
            #expect(recorder.totalRequests == 3)

            let malformed = try await proxy.send(path: "/v1beta/openai/chat/completions", body: "{", headers: bearer)
            #expect(malformed.status == 400)
            let envelope = try JSONSerialization.jsonObject(with: Data(malformed.body.utf8)) as? [[String: [String: Any]]]
            #expect(envelope?.first?["error"]?["status"] as? String == "INVALID_ARGUMENT", "wrapped in a one-element array, as Google does")
            #expect(recorder.totalRequests == 3)
        }
    }

    @Test func explainGivesTheKeyOfTheRealRequest() async throws {
        try await withStack { proxy, _ in
            let path = "/v1beta/models/gemini-2.5-flash:generateContent"
            let real = try await proxy.send(
                path: path,
                body: generateBody("explain me"),
                headers: key.merging(["x-gemcache-namespace": "docs"]) { $1 }
            )
            let request: [String: Any] = [
                "path": path, "headers": ["x-goog-api-key": testKey, "X-Gemcache-Namespace": "docs"],
                "body": ["contents": [["parts": [["text": "  explain me\r\n"]], "role": "user"]]],
            ]
            let explained = try await proxy.send(
                path: "/_gemcache/explain",
                body: String(decoding: try JSONSerialization.data(withJSONObject: request), as: UTF8.self)
            )
            let answer = try #require(try JSONSerialization.jsonObject(with: Data(explained.body.utf8)) as? [String: Any])
            #expect(answer["key"] as? String == real.header("x-gemcache-key"))
            #expect(answer["scope"] as? String == "per_key")
            #expect(answer["namespace"] as? String == "docs")
            #expect(answer["scheme_version"] as? Int == CacheKeyComponents.schemeVersion)
            #expect((answer["canonical"] as? String)?.contains(#""text":"explain me""#) == true)
            #expect(!explained.body.contains(testKey))
        }
    }
}
