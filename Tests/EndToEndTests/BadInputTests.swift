import AsyncHTTPClient
import Foundation
import GemcacheCore
import GemcacheTestSupport
import GeminiMock
import NIOCore
import NIOHTTP1
import Testing

/// Bad input (issue 6, SPEC §8): every request that cannot be valid gets Google's error envelope or a
/// closed connection, never reaches the upstream and never stops the proxy; stalled clients are
/// disconnected.
@Suite(.timeLimit(.minutes(1)))
struct BadInputTests {
    let generate = "/v1beta/models/gemini-2.5-flash:generateContent"
    let key = ["x-goog-api-key": testKey]

    private func withStack<R: Sendable>(
        configure: @Sendable (inout ProxyConfiguration) -> Void = { _ in },
        _ body: @Sendable (_ port: Int, _ recorder: MockUpstreamRecorder) async throws -> R
    ) async throws -> R {
        try await withProxyBehindMock(configure: {
            $0.limits.maxBody = 4096
            configure(&$0)
        }) { port, recorder, _ in try await body(port, recorder) }
    }

    /// Google's envelope: `{"error": {"code", "message", "status"}}`, in a one-element array when `wrapped`.
    private func expectEnvelope(_ answer: TestResponse, code: Int, status: String, wrapped: Bool = false, _ what: String) throws {
        #expect(answer.status == code, "\(what)")
        let parsed = try JSONSerialization.jsonObject(with: Data(answer.body.utf8))
        let unwrapped: Any? = wrapped ? (parsed as? [Any])?.first : parsed
        let document = try #require(unwrapped as? [String: Any], "\(what): \(answer.body)")
        let error = try #require(document["error"] as? [String: Any], "\(what): \(answer.body)")
        #expect(error["code"] as? Int == code, "\(what)")
        #expect(error["status"] as? String == status, "\(what)")
        #expect((error["message"] as? String)?.isEmpty == false, "\(what)")
    }

    @Test func badBodiesGetGooglesErrorAndNoUpstreamCall() async throws {
        try await withStack { port, recorder in
            let bodies: [(String, [UInt8])] = [
                ("malformed JSON", Array(#"{"contents":["#.utf8)),
                ("an array", Array("[1,2]".utf8)),
                ("a string", Array(#""text""#.utf8)),
                ("an empty body", []),
                ("invalid UTF-8", Array(#"{"contents":[{"parts":[{"text":""#.utf8) + [0xFF, 0xFE, 0xC0] + Array(#""}]}]}"#.utf8)),
                ("deep nesting", Array((String(repeating: "[", count: 50_000) + String(repeating: "]", count: 50_000)).utf8).prefix(4000).map { $0 }),
                ("duplicate members", Array(#"{"contents":[],"contents":[]}"#.utf8)),
            ]
            let routes: [(path: String, wrapped: Bool)] = [
                (generate, false), ("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", false),
                ("/v1beta/models/gemini-2.5-flash:streamGenerateContent", true), ("/v1beta/openai/chat/completions", true),
                ("/v1/models/gemini-embedding-001:embedContent", false),
            ]
            for (what, body) in bodies {
                for route in routes {
                    let answer = try await sendBytes(port: port, path: route.path, body: body, headers: key)
                    try expectEnvelope(answer, code: 400, status: "INVALID_ARGUMENT", wrapped: route.wrapped, "\(what) on \(route.path)")
                }
            }
            let tooLarge = try await send(port: port, path: generate, body: generateBody(String(repeating: "a", count: 8192)), headers: key)
            try expectEnvelope(tooLarge, code: 413, status: "INVALID_ARGUMENT", "a body over limits.max_body")
            let badModel = try await send(
                port: port,
                path: "/v1beta/openai/chat/completions",
                body: #"{"model":"../../files","messages":[{"role":"user","content":"Hi"}]}"#,
                headers: key
            )
            try expectEnvelope(badModel, code: 400, status: "INVALID_ARGUMENT", wrapped: true, "a path trick in the OpenAI model")
            #expect(recorder.totalRequests == 0)
            #expect(try await send("GET", port: port, path: "/healthz").status == 200)
        }
    }

    @Test func pathTricksAndUnknownAltValuesNeverReachTheUpstream() async throws {
        try await withStack { port, recorder in
            let body = generateBody("Hi")
            let paths: [(String, Bool)] = [
                ("/v1beta/models/..%2F..%2Ffiles:generateContent", false),
                ("/v1beta/models/gemini-2.5-flash%2F..%2F..%2Fx:generateContent", false),
                ("/v1beta/models/../files:generateContent", false),
                ("/v1beta/models/./gemini-2.5-flash:generateContent", false),
                ("/v1beta/files/..%2e/..%2e/admin", false),
                ("/v1beta/cachedContents/%5c..%5cx", false),
                ("/v1beta/openai/../../v1/files", true),
                ("/v1beta/models/gemini 2.5:generateContent", false),
                ("/v1beta/models/gemini-2.5-flash%00:generateContent", false),
                ("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=xml", true),
                ("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&alt=media", true),  // the last alt decides the form
                ("/v1beta/models/gemini-2.5-flash:generateContent?$alt=proto", false),
            ]
            for (path, wrapped) in paths {
                let answer = try await sendBytes(port: port, path: path, body: Array(body.utf8), headers: key)
                try expectEnvelope(answer, code: 400, status: "INVALID_ARGUMENT", wrapped: wrapped, path)
            }
            #expect(recorder.totalRequests == 0)
            // The forms the proxy does serve still work.
            #expect(try await send(port: port, path: generate + "?alt=json", body: body, headers: key).status == 200)
            #expect(
                try await send(port: port, path: "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", body: body, headers: key).status
                    == 200
            )
        }
    }

    @Test func garbageOnTheWireGetsA400OrAClosedConnection() async throws {
        try await withStack { port, recorder in
            let head = "POST \(generate) HTTP/1.1\r\nHost: x\r\nx-goog-api-key: \(testKey)\r\n"
            let cases: [(String, [UInt8])] = [
                ("binary garbage", [0, 1, 2, 0xFF, 0x80] + Array("GARBAGE\r\n\r\n".utf8)),
                ("no HTTP version", Array("POST \(generate)\r\n\r\n".utf8)),
                ("an HTTP/2 preface", Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)),
                ("a bad Content-Length", Array((head + "Content-Length: 1x\r\n\r\n{}").utf8)),
                ("two Content-Lengths", Array((head + "Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}").utf8)),
                ("a negative Content-Length", Array((head + "Content-Length: -2\r\n\r\n{}").utf8)),
                ("a 200 KiB header", Array((head + "X-Big: " + String(repeating: "a", count: 200 << 10) + "\r\n\r\n").utf8)),
                ("a 100 KiB request line", Array(("GET /" + String(repeating: "a", count: 100 << 10) + " HTTP/1.1\r\n\r\n").utf8)),
                ("bare LF line ends", Array("GET /healthz HTTP/1.1\nHost: x\n\n".utf8)),
                ("a folded header", Array((head + "X-A: b\r\n c\r\nContent-Length: 2\r\n\r\n{}").utf8)),
                ("a NUL in a header", Array((head + "X-A: b\u{0}c\r\nContent-Length: 2\r\n\r\n{}").utf8)),
                ("chunked with a bad chunk size", Array((head + "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n").utf8)),
            ]
            for (what, bytes) in cases {
                let connection = try RawConnection(port: port)
                connection.send(bytes)
                let (text, closed) = await connection.readToEnd(timeout: .seconds(5))
                #expect(text.isEmpty || text.hasPrefix("HTTP/1.1 400"), "\(what): \(text.prefix(200))")
                #expect(closed, "\(what): the connection stayed open")
            }
            #expect(recorder.totalRequests == 0)

            // A valid request, a fast-path hit of it, then junk, pipelined on one connection.
            let body = generateBody("pipelined")
            let request = head + "Content-Length: \(body.utf8.count)\r\n\r\n" + body
            let first = try RawConnection(port: port)
            first.send(request + request)
            first.send("JUNK JUNK\r\n\r\n")
            let (text, closed) = await first.readToEnd(timeout: .seconds(5))
            #expect(text.components(separatedBy: "HTTP/1.1 200 OK").count == 3, "\(text.prefix(600))")
            #expect(text.contains("HTTP/1.1 400"))
            #expect(closed)
            let second = try RawConnection(port: port)
            second.send(request + "\u{0}\u{1}garbage")
            let (again, _) = await second.readToEnd(timeout: .seconds(5))
            #expect(again.hasPrefix("HTTP/1.1 200 OK"))
            #expect(again.contains("X-Gemcache: HIT"))
            #expect(recorder.totalRequests == 1)
            #expect(try await send("GET", port: port, path: "/healthz").status == 200)
        }
    }

    @Test func stalledClientsAreDisconnectedButSlowAnswersAreNot() async throws {
        try await withStack(configure: { $0.limits.clientTimeout = .seconds(1) }) { port, recorder in
            let head = "POST \(generate) HTTP/1.1\r\nHost: x\r\nx-goog-api-key: \(testKey)\r\n"
            let stalls = [
                ("nothing at all", ""),
                ("half a head", head + "Content-Le"),
                ("a promised body that never comes", head + "Content-Length: 999999\r\n\r\n{\"contents\""),
                ("a keep-alive connection idle after its answer", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
            ]
            for (what, bytes) in stalls {
                let started = ContinuousClock.now
                let connection = try RawConnection(port: port)
                connection.send(bytes)
                let (_, closed) = await connection.readToEnd(timeout: .seconds(5))
                #expect(closed, "\(what)")
                #expect(ContinuousClock.now - started < .seconds(4), "\(what)")
            }

            // A connection that keeps sending is not cut, nor is one waiting for a slow upstream.
            let body = generateBody("keep talking")
            let request = head + "Content-Length: \(body.utf8.count)\r\n\r\n" + body
            let busy = try RawConnection(port: port)
            let talking = ContinuousClock.now
            while ContinuousClock.now - talking < .seconds(2) {
                busy.send(request)
                let text = await busy.readAnswer(timeout: .seconds(10))
                #expect(text.hasPrefix("HTTP/1.1 200 OK"))
                // Real time is the subject: a live connection kept busy past the client timeout.
                try await Task.sleep(for: .milliseconds(200))
            }
            let slow = try await send(port: port, path: generate, body: generateBody("wait for it [[fault:slow:1200]]"), headers: key)
            #expect(slow.status == 200)
            #expect(recorder.totalRequests == 2)
        }
    }
}

/// Sends `body` as is (valid UTF-8 or not) with AsyncHTTPClient.
func sendBytes(port: Int, path: String, body: [UInt8], headers: [String: String]) async throws -> TestResponse {
    var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
    request.method = .POST
    for (name, value) in headers { request.headers.add(name: name, value: value) }
    request.headers.add(name: "content-type", value: "application/json")
    request.body = .bytes(ByteBuffer(bytes: body))
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
    let bytes = try await response.body.collect(upTo: 1 << 20)
    var fields: [String: String] = [:]
    for header in response.headers { fields[header.name.lowercased()] = header.value }
    return TestResponse(status: Int(response.status.code), headers: fields, body: String(buffer: bytes))
}
