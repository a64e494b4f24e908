import Foundation
import GemcacheCore
import GemcacheTestSupport
import GeminiMock
import Testing

/// Hits answered on the fast path look like the slow path's, count the same, and respect per-key scope.
@Suite(.timeLimit(.minutes(1)))
struct FastPathTests {
    let path = "/v1beta/models/gemini-2.5-flash:generateContent"

    @Test func fastHitsCarryTheSlowHitsHeadersAndCount() async throws {
        try await withTemporaryDirectory { dir in
            try await withMockUpstream { upstreamPort, recorder in
                try await withProxy(.testing(upstreamURL: "http://127.0.0.1:\(upstreamPort)", dataDirectory: dir.path)) { port in
                    let key = ["x-goog-api-key": testKey]
                    let variant = #"{"contents": [{"parts": [{"text": "Why is the sky blue?"}], "role": "user"}]}"#
                    let miss = try await send(port: port, path: path, body: generateBody("Why is the sky blue?"), headers: key)
                    // A variant is a canonical hit on the slow path (the only one with the Hummingbird
                    // pipeline's own headers); it records its raw key, so its repeat is a fast hit.
                    let slowHit = try await send(port: port, path: path, body: variant, headers: key)
                    await GeminiProxy.aliasWritesLanded()  // the alias is written without delaying the hit
                    let fastHit = try await send(port: port, path: path, body: variant, headers: key)
                    #expect(miss.header("x-gemcache") == "MISS")
                    for hit in [slowHit, fastHit] {
                        #expect(hit.status == 200)
                        #expect(hit.header("x-gemcache") == "HIT")
                        #expect(hit.body == miss.body)
                        #expect(hit.header("x-gemcache-key") == miss.header("x-gemcache-key"))
                        #expect(hit.header("cache-status")?.hasPrefix("gemcache; hit; ttl=") == true)
                        #expect(hit.header("cache-status")?.hasSuffix("key=\"\(miss.header("x-gemcache-key") ?? "")\"") == true)
                        #expect(hit.header("age") != nil)
                        #expect(hit.header("date") != nil)
                    }
                    #expect(Set(fastHit.headers.keys) == Set(slowHit.headers.keys))
                    #expect(fastHit.header("content-type") == slowHit.header("content-type"))
                    #expect(fastHit.header("content-length") == slowHit.header("content-length"))
                    #expect(recorder.totalRequests == 1)

                    // Another key never gets this key's entry, on either path.
                    let other = try await send(port: port, path: path, body: variant, headers: ["x-goog-api-key": "another-key"])
                    #expect(other.header("x-gemcache") == "MISS")
                    #expect(recorder.totalRequests == 2)

                    let document = try await statsDocument(port: port) { $0["hits"] as? Int == 2 }
                    #expect(document["hits"] as? Int == 2)
                    #expect(document["misses"] as? Int == 2)
                }
            }
        }
    }
}
