import Foundation
import GeminiMock
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Synchronization
import Testing

@Suite(.timeLimit(.minutes(1)))
struct ServerTests {
    @Test func modelsPaging() async throws {
        try await withMock { client in
            var names: [String] = []
            var token: String? = nil
            repeat {
                let uri = "/v1beta/models?pageSize=3" + (token.map { "&pageToken=\($0)" } ?? "")
                let json = try #require(try await client.get(uri).object)
                let models = try #require(json["models"] as? [[String: Any]])
                #expect(models.count <= 3)
                names += models.compactMap { $0["name"] as? String }
                token = json["nextPageToken"] as? String
            } while token != nil
            #expect(names.count == 4 && Set(names).count == 4)
            #expect(names.contains("models/gemini-embedding-001"))
            let all = try await client.get("/v1/models").object
            #expect((all?["models"] as? [Any])?.count == 4 && all?["nextPageToken"] == nil)
            let one = try await client.get("/v1beta/models/gemini-2.5-flash").object
            #expect(one?["name"] as? String == "models/gemini-2.5-flash")
            #expect(try await client.get("/v1beta/models/gemini-0-none").status == .notFound)
            #expect(try await client.get("/v1beta/models?pageToken=bogus").status == .badRequest)
        }
    }

    @Test func uploadCountsBytes() async throws {
        try await withMock { client in
            let payload = ByteBuffer(repeating: 0x61, count: 300_000)
            let headers: HTTPFields = [HTTPField.Name("x-goog-api-key")!: "k", .contentType: "application/octet-stream"]
            for uri in ["/upload/v1beta/files", "/v1/files"] {
                let response = try await client.execute(uri: uri, method: .post, headers: headers, body: payload)
                #expect(response.status == .ok)
                let file = try #require(response.object?["file"] as? [String: Any])
                #expect(file["sizeBytes"] as? String == "300000")
                #expect((file["name"] as? String)?.hasPrefix("files/mock-") == true)
            }
        }
    }

    @Test func recorderCountsRequests() async throws {
        let recorder = MockUpstreamRecorder()
        try await withMock(recorder: recorder) { client in
            _ = try await client.post(generatePath, promptBody("a"))
            _ = try await client.post(generatePath + "?x=1", promptBody("b"))
            _ = try await client.post("/v1/models/m:countTokens", promptBody("c"), key: nil)
            _ = try await client.post("/nowhere", "{}")
            #expect(recorder.totalRequests == 4)
            #expect(recorder.requests(path: generatePath) == 2)
            #expect(recorder.requests(path: "/v1/models/m:countTokens") == 1)
            #expect(recorder.lastHeaders["x-goog-api-key"] == "test-key")
            #expect(recorder.lastHeaders["content-type"] == "application/json")
            let stats = try #require(try await client.execute(uri: "/_mock/stats", method: .get).object)
            #expect(stats["requests"] as? Int == 4)
            #expect((stats["paths"] as? [String: Any])?[generatePath] as? Int == 2)
            #expect(recorder.totalRequests == 4, "stats requests are not counted")
            recorder.reset()
            #expect(recorder.totalRequests == 0 && recorder.lastHeaders.isEmpty)
        }
    }

    @Test func reportsBoundPortAndLatency() async throws {
        let reported = Mutex<Int?>(nil)
        let app = buildMockUpstream(configuration: .init(latency: .milliseconds(200))) { port in
            reported.withLock { $0 = port }
        }
        try await app.test(.live) { client in
            #expect(reported.withLock { $0 } == client.port)
            let start = ContinuousClock.now
            let status = try await client.post(generatePath, promptBody("x")).status
            #expect(status == .ok)
            #expect(ContinuousClock.now - start >= .milliseconds(200))
        }
    }
}
