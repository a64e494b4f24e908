import AsyncHTTPClient
import Foundation
import GemcacheCore
import GemcacheTestSupport
import GeminiMock
import NIOCore
import NIOHTTP1
import Testing

/// The newer routes, which are never cached (SPEC §2): each family through the proxy gives the mock's
/// own answer, bytes and headers, marked `X-Gemcache: PASS`, and streams arrive as the mock sends them.
@Suite(.timeLimit(.minutes(1)))
struct PassThroughRoutesEndToEndTests {
    let key = ["x-goog-api-key": testKey]

    /// The mock, and the proxy in front of it; `body` gets both ports, so a test can ask either.
    private func withMockAndProxy(
        _ body: @escaping @Sendable (_ proxy: Int, _ mock: Int, _ recorder: MockUpstreamRecorder) async throws -> Void
    ) async throws {
        try await withTemporaryDirectory { directory in
            try await withMockUpstream(.init(chunkDelay: .milliseconds(5))) { mockPort, recorder in
                try await withProxy(.testing(upstreamURL: "http://127.0.0.1:\(mockPort)", dataDirectory: directory.path)) { port in
                    try await body(port, mockPort, recorder)
                }
            }
        }
    }

    /// The same request to the proxy and to the mock: the proxy's answer is the mock's, unchanged.
    private func expectSameThroughTheProxy(
        _ path: String,
        method: String = "POST",
        body: String? = nil,
        headers: [String: String] = [:],
        proxy: Int,
        mock: Int
    ) async throws -> TestResponse {
        let headers = key.merging(headers) { $1 }
        let proxied = try await send(method, port: proxy, path: path, body: body, headers: headers)
        let direct = try await send(method, port: mock, path: path, body: body, headers: headers)
        Self.expectPassedUnchanged(proxied, direct)
        return proxied
    }

    /// Status, body and every header of `direct` (but the date and framing) arrive in `proxied`, with PASS.
    static func expectPassedUnchanged(_ proxied: TestResponse, _ direct: TestResponse, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(proxied.status == direct.status, sourceLocation: sourceLocation)
        #expect(proxied.body == direct.body, sourceLocation: sourceLocation)
        for (name, value) in direct.headers where !["date", "connection", "transfer-encoding"].contains(name) {
            #expect(proxied.headers[name] == value, "\(name)", sourceLocation: sourceLocation)
        }
        #expect(proxied.header("x-gemcache") == "PASS", sourceLocation: sourceLocation)
        #expect(proxied.header("cache-status") == "gemcache; fwd=bypass", sourceLocation: sourceLocation)
    }

    static func object(_ response: TestResponse) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any])
    }

    @Test func interactionsPassThroughAndTheirStreamArrivesEventByEvent() async throws {
        try await withMockAndProxy { port, mock, recorder in
            let created = try await expectSameThroughTheProxy(
                "/v1beta/interactions",
                body: #"{"model":"gemini-3-flash-preview","input":"Tell me a short story"}"#,
                proxy: port,
                mock: mock
            )
            let id = try #require(try Self.object(created)["id"] as? String)
            #expect(try Self.object(created)["status"] as? String == "completed")
            _ = try await expectSameThroughTheProxy("/v1beta/interactions/\(id)", method: "GET", proxy: port, mock: mock)

            // The mock sends the first event, then waits for the test: the client has it before the rest exists.
            let ask = #"{"model":"gemini-3-flash-preview","input":"Count slowly [[fault:hold]]","stream":true}"#
            let request = testRequest(url: "http://127.0.0.1:\(port)/v1beta/interactions", body: ask, headers: ["x-goog-api-key": testKey])
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
            #expect(response.headers.first(name: "x-gemcache") == "PASS")
            var parts = response.body.makeAsyncIterator()
            let first = String(buffer: try #require(try await parts.next()))
            #expect(first.hasPrefix("event: interaction.created\ndata: {") && first.hasSuffix("\n\n"))
            #expect(first.components(separatedBy: "\n\n").count == 2, "one event, the only one sent so far")
            recorder.release()
            var streamed = first
            while let part = try await parts.next() { streamed += String(buffer: part) }
            let direct = try await send(port: mock, path: "/v1beta/interactions", body: ask, headers: key)
            #expect(streamed == direct.body)
            #expect(streamed.hasSuffix("event: done\ndata: [DONE]\n\n"))
            #expect(response.headers.first(name: "content-type") == direct.header("content-type"))
        }
    }

    @Test func cachedContentsPassThroughAndAreNeverServedFromTheCache() async throws {
        try await withMockAndProxy { port, mock, recorder in
            let create =
                #"{"model":"models/gemini-2.5-flash","displayName":"docs","ttl":"600s","contents":[{"role":"user","parts":[{"text":"a long document"}]}]}"#
            let created = try await expectSameThroughTheProxy("/v1beta/cachedContents", body: create, proxy: port, mock: mock)
            let name = try #require(try Self.object(created)["name"] as? String)
            #expect(name.hasPrefix("cachedContents/"))
            _ = try await expectSameThroughTheProxy("/v1beta/\(name)", method: "GET", proxy: port, mock: mock)
            let list = try await expectSameThroughTheProxy("/v1beta/cachedContents", method: "GET", proxy: port, mock: mock)
            #expect(try (Self.object(list)["cachedContents"] as? [Any])?.count == 1)
            let deleted = try await send("DELETE", port: port, path: "/v1beta/\(name)", headers: key)
            #expect(deleted.status == 200 && deleted.header("x-gemcache") == "PASS")
            let gone = try await expectSameThroughTheProxy("/v1beta/\(name)", method: "GET", proxy: port, mock: mock)
            #expect(gone.status == 404)
            #expect(recorder.requests(path: "/v1beta/\(name)") == 5)
        }
    }

    /// gemini-api.md §1.3: the protocol's request headers reach the upstream and its answer headers
    /// (`X-Goog-Upload-URL`, `X-Goog-Upload-Status`) reach the client, unchanged.
    @Test func resumableUploadsKeepTheirProtocolHeadersBothWays() async throws {
        try await withMockAndProxy { port, mock, recorder in
            let content = Array(String(repeating: "gemcache uploads in pieces ", count: 800).utf8)
            let start = [
                "X-Goog-Upload-Protocol": "resumable", "X-Goog-Upload-Command": "start",
                "X-Goog-Upload-Header-Content-Length": String(content.count), "X-Goog-Upload-Header-Content-Type": "text/plain",
            ]
            let metadata = #"{"file":{"displayName":"notes"}}"#
            let started = try await send(port: port, path: "/upload/v1beta/files", body: metadata, headers: key.merging(start) { $1 })
            let arrived = recorder.lastHeaders
            for (name, value) in start {
                #expect(arrived[name.lowercased()] == value, "\(name) reached the upstream")
            }
            Self.expectPassedUnchanged(
                started,
                try await send(port: mock, path: "/upload/v1beta/files", body: metadata, headers: key.merging(start) { $1 })
            )
            #expect(started.header("x-goog-upload-status") == "active")
            let origin = "http://127.0.0.1:\(mock)"
            let url = try #require(started.header("x-goog-upload-url"))
            #expect(url.hasPrefix(origin + "/upload/v1beta/files?upload_id="), "the upstream's session URL, as it sent it")

            // As google-genai 3.6.1 does, the client keeps the session's path and query and sends them to its base URL.
            let session = String(url.dropFirst(origin.count))
            let cut = 12_000
            let first = try await send(
                port: port,
                path: session,
                body: String(decoding: content[..<cut], as: UTF8.self),
                headers: key.merging(["X-Goog-Upload-Command": "upload", "X-Goog-Upload-Offset": "0"]) { $1 }
            )
            #expect(first.status == 200 && first.header("x-gemcache") == "PASS")
            #expect(first.header("x-goog-upload-status") == "active")
            #expect(recorder.lastHeaders["x-goog-upload-offset"] == "0")
            let last = try await send(
                port: port,
                path: session,
                body: String(decoding: content[cut...], as: UTF8.self),
                headers: key.merging(["X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": String(cut)]) { $1 }
            )
            #expect(last.status == 200 && last.header("x-gemcache") == "PASS")
            #expect(last.header("x-goog-upload-status") == "final")
            let file = try #require(try Self.object(last)["file"] as? [String: Any])
            #expect(file["sizeBytes"] as? String == String(content.count))
            #expect(file["displayName"] as? String == "notes" && file["mimeType"] as? String == "text/plain")
            let name = try #require(file["name"] as? String)
            _ = try await expectSameThroughTheProxy("/v1beta/\(name)", method: "GET", proxy: port, mock: mock)
        }
    }

    @Test func batchesPassThrough() async throws {
        try await withMockAndProxy { port, mock, _ in
            let items = ["first", "second"].map { #"{"request":{"contents":[{"parts":[{"text":"\#($0) question"}]}]},"metadata":{"key":"\#($0)"}}"# }
            let batch = #"{"batch":{"displayName":"nightly","inputConfig":{"requests":{"requests":[\#(items.joined(separator: ","))]}}}}"#
            let created = try await expectSameThroughTheProxy(
                "/v1beta/models/gemini-2.5-flash:batchGenerateContent",
                body: batch,
                proxy: port,
                mock: mock
            )
            let name = try #require(try Self.object(created)["name"] as? String)
            #expect(try (Self.object(created)["metadata"] as? [String: Any])?["state"] as? String == "BATCH_STATE_PENDING")
            let done = try Self.object(try await expectSameThroughTheProxy("/v1beta/\(name)", method: "GET", proxy: port, mock: mock))
            #expect((done["metadata"] as? [String: Any])?["state"] as? String == "BATCH_STATE_SUCCEEDED")
            let output = (done["response"] as? [String: Any])?["inlinedResponses"] as? [String: Any]
            #expect((output?["inlinedResponses"] as? [Any])?.count == 2)
        }
    }
}
