import AsyncHTTPClient
import Foundation
import GemcacheCore
import GemcacheKey
import GemcacheTestSupport
import GeminiMock
import NIOCore
import NIOHTTP1
import Testing

/// Streams through a real server as the client receives them: chunk by chunk, and abandoned. The other
/// cached surfaces of SPEC §2 are tested through the router (GemcacheCoreTests/SurfaceTests).
@Suite(.timeLimit(.minutes(1)))
struct SurfaceEndToEndTests {
    let key = ["x-goog-api-key": testKey]

    private func withStack<R: Sendable>(
        _ mock: MockUpstreamConfiguration = .init(chunkDelay: .milliseconds(5)),
        _ body: @Sendable (_ port: Int, _ recorder: MockUpstreamRecorder) async throws -> R
    ) async throws -> R {
        try await withProxyBehindMock(mock) { port, recorder, _ in try await body(port, recorder) }
    }

    @Test(arguments: ["?alt=sse", ""])
    func streamsAreRelayedRecordedAndReplayed(query: String) async throws {
        try await withStack(.init(chunkDelay: .milliseconds(40))) { port, recorder in
            let path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent\(query)"
            let body = generateBody("stream me")
            let (miss, parts) = try await sendCountingParts(port: port, path: path, body: body, headers: key)
            #expect(miss.header("x-gemcache") == "MISS")
            #expect(parts >= 3, "the answer reached the client chunk by chunk, not buffered")
            let hit = try await send(port: port, path: path, body: body, headers: key)
            #expect(hit.header("x-gemcache") == "HIT")
            #expect(hit.body == miss.body)
            #expect(hit.header("content-type") == miss.header("content-type"))
            if query.isEmpty {
                let array = try JSONSerialization.jsonObject(with: Data(hit.body.utf8)) as? [Any]
                #expect(array?.count == 3)
                #expect(hit.header("content-type")?.hasPrefix("application/json") == true)
            } else {
                #expect(hit.body.hasPrefix("data: "))
                #expect(hit.body.hasSuffix("\r\n\r\n"))
                #expect(hit.header("content-type")?.hasPrefix("text/event-stream") == true)
            }
            #expect(recorder.totalRequests == 1)

            let plain = try await send(port: port, path: "/v1beta/models/gemini-2.5-flash:generateContent", body: body, headers: key)
            #expect(plain.header("x-gemcache") == "MISS", "a stream and a non-stream request never share an entry")
        }
    }

    @Test(arguments: [true, false])
    func aStreamItsClientLeftIsFinishedAndStoredOnlyWhenTheSettingSaysSo(finish: Bool) async throws {
        try await withProxyBehindMock(configure: { $0.cache.finishAbortedStreams = finish }) { port, recorder, _ in
            let path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
            let body = generateBody("leave early [[fault:hold]]")
            try await abortAfterFirstChunk(port: port, path: path, body: body, headers: key)
            let counted = try await statsDocument(port: port) { $0["misses"] as? Int == 1 }
            #expect(counted["misses"] as? Int == 1, "the client's leaving is noticed before the upstream sends more")
            recorder.release()
            for _ in 0..<250 where recorder.streamsCompleted + recorder.streamsCut == 0 {
                // Real time is the subject: the mock notices the cut over a real socket.
                try await Task.sleep(for: .milliseconds(20))
            }
            if finish {
                #expect(recorder.streamsCompleted == 1)
                var replay: TestResponse?
                for _ in 0..<50 where replay?.status != 200 {
                    replay = try await send(port: port, path: path, body: body, headers: key.merging(["cache-control": "only-if-cached"]) { $1 })
                    // Real time is the subject: the recording's store write lands after the client's stream ended.
                    if replay?.status != 200 { try await Task.sleep(for: .milliseconds(50)) }
                }
                #expect(replay?.header("x-gemcache") == "HIT")
                #expect(replay?.body.hasSuffix("\r\n\r\n") == true)
                #expect(recorder.totalRequests == 1)
            } else {
                #expect(recorder.streamsCut == 1, "the upstream was read no further")
                let again = try await send(port: port, path: path, body: body, headers: key)
                #expect(again.header("x-gemcache") == "MISS")
                #expect(recorder.totalRequests == 2)
            }
        }
    }
}

/// Sends a request and counts the body parts as they arrive (more than one: the answer streamed).
func sendCountingParts(port: Int, path: String, body: String, headers: [String: String]) async throws -> (TestResponse, Int) {
    var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
    request.method = .POST
    for (name, value) in headers { request.headers.add(name: name, value: value) }
    request.body = .bytes(ByteBuffer(string: body))
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
    var parts = 0
    var text = ""
    for try await part in response.body {
        parts += 1
        text += String(buffer: part)
    }
    var fields: [String: String] = [:]
    for header in response.headers { fields[header.name.lowercased()] = header.value }
    return (TestResponse(status: Int(response.status.code), headers: fields, body: text), parts)
}

/// Reads the first chunk of a streamed answer, then drops the connection.
func abortAfterFirstChunk(port: Int, path: String, body: String, headers: [String: String]) async throws {
    var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
    request.method = .POST
    for (name, value) in headers { request.headers.add(name: name, value: value) }
    request.body = .bytes(ByteBuffer(string: body))
    let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup)
    let response = try await client.execute(request, timeout: .seconds(30))
    var iterator = response.body.makeAsyncIterator()
    _ = try await iterator.next()
    try await client.shutdown()
}
