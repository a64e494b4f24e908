import Foundation
import GemcacheCore
import GemcacheTestSupport
import GeminiMock
import Testing

/// Graceful shutdown of the real executable (issue 6): SIGTERM lets the requests in flight finish,
/// stores what completed and exits cleanly.
@Suite(.timeLimit(.minutes(1)))
struct ShutdownTests {
    let key = ["x-goog-api-key": testKey]

    @Test func sigtermLetsMissesAndStreamsInFlightFinishAndStoresThem() async throws {
        try await withTemporaryDirectory { dir in
            try await withMockUpstream { upstreamPort, recorder in
                let arguments = ["--upstream", "http://127.0.0.1:\(upstreamPort)", "--data", dir.path + "/store"]
                let model = "/v1beta/models/gemini-2.5-flash"
                // Each upstream answer starts 800 ms after its request: all are in flight at the SIGTERM.
                let requests = [
                    (model + ":generateContent", "unary one"), (model + ":generateContent", "unary two"),
                    (model + ":streamGenerateContent?alt=sse", "sse stream"), (model + ":streamGenerateContent", "array stream"),
                    ("/v1beta/openai/chat/completions", "openai stream"),
                ].map { path, text in
                    let body =
                        path.hasPrefix("/v1beta/openai")
                        ? #"{"model":"gemini-2.5-flash","stream":true,"messages":[{"role":"user","content":"\#(text) [[fault:slow:800]]"}]}"#
                        : generateBody("\(text) [[fault:slow:800]]")
                    return (path: path, body: body)
                }
                let process = try await GemcacheProcess(arguments: arguments, directory: dir.path)
                let answers = try await withThrowingTaskGroup(of: (Int, TestResponse).self) { group in
                    for (index, request) in requests.enumerated() {
                        group.addTask { (index, try await send(port: process.port, path: request.path, body: request.body, headers: key)) }
                    }
                    // Real time is the subject: requests in flight to a real process, over real sockets.
                    for _ in 0..<200 where recorder.totalRequests < requests.count { try await Task.sleep(for: .milliseconds(10)) }
                    #expect(recorder.totalRequests == requests.count)
                    #expect(await process.stop(signal: SIGTERM) == 0)
                    return try await group.reduce(into: [Int: TestResponse]()) { $0[$1.0] = $1.1 }
                }
                for (index, request) in requests.enumerated() {
                    let answer = try #require(answers[index])
                    #expect(answer.status == 200, "\(request.path)")
                    #expect(answer.header("x-gemcache") == "MISS", "\(request.path)")
                    #expect(answer.body.contains("STOP") || answer.body.contains("\"stop\""), "\(request.path): \(answer.body.suffix(200))")
                }
                #expect(!process.log.contains(" error "), "\(process.log)")

                let restarted = try await GemcacheProcess(arguments: arguments, directory: dir.path)
                for (index, request) in requests.enumerated() {
                    let hit = try await send(port: restarted.port, path: request.path, body: request.body, headers: key)
                    #expect(hit.header("x-gemcache") == "HIT", "\(request.path) was not stored")
                    #expect(hit.body == answers[index]?.body, "\(request.path)")
                }
                #expect(recorder.totalRequests == requests.count)
                #expect(await restarted.stop() == 0)
            }
        }
    }

    @Test func sigtermClosesIdleConnectionsAndRefusesNewOnes() async throws {
        try await withTemporaryDirectory { dir in
            let process = try await GemcacheProcess(
                arguments: ["--upstream", "http://127.0.0.1:9", "--data", dir.path + "/store"],
                directory: dir.path
            )
            let idle = try RawConnection(port: process.port)
            idle.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            let (first, _) = await idle.readToEnd(timeout: .milliseconds(300))
            #expect(first.hasPrefix("HTTP/1.1 200 OK"))
            let started = ContinuousClock.now
            #expect(await process.stop(signal: SIGTERM) == 0)
            #expect(ContinuousClock.now - started < .seconds(5), "an idle keep-alive connection held up the shutdown")
            #expect(await idle.readToEnd(timeout: .seconds(1)).closed)
            #expect(throws: (any Error).self) { try RawConnection(port: process.port) }
        }
    }
}
