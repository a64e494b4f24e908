import Foundation
import GemcacheCore
import GemcacheTestSupport
import GeminiMock
import Testing

/// The proxy in front of the mock upstream, both on loopback, with a real LMDB store.
@Suite(.timeLimit(.minutes(1)))
struct ProxyEndToEndTests {
    let path = "/v1beta/models/gemini-2.5-flash:generateContent"

    @Test func gzipFromUpstreamIsDecodedBeforeStoring() async throws {
        try await withTemporaryDirectory { dir in
            try await withMockUpstream { upstreamPort, recorder in
                try await withProxy(.testing(upstreamURL: "http://127.0.0.1:\(upstreamPort)", dataDirectory: dir.path)) { port in
                    let body = generateBody("squeeze me [[fault:gzip]]")
                    let miss = try await send(port: port, path: path, body: body, headers: ["x-goog-api-key": testKey])
                    #expect(recorder.lastHeaders["accept-encoding"]?.contains("gzip") == true)
                    let hit = try await send(port: port, path: path, body: body, headers: ["x-goog-api-key": testKey])
                    #expect(miss.status == 200)
                    #expect(miss.header("content-encoding") == nil)
                    #expect(hit.header("x-gemcache") == "HIT")
                    #expect(hit.header("content-encoding") == nil)
                    #expect(hit.body == miss.body)
                    #expect(hit.body.contains("Mock answer to: squeeze me"))
                    #expect(try JSONSerialization.jsonObject(with: Data(hit.body.utf8)) is [String: Any])
                }
            }
        }
    }

}

/// The real executable, killed and restarted.
@Suite(.timeLimit(.minutes(1)))
struct ProcessTests {
    @Test func killNineAfterAnAnswerKeepsThatEntry() async throws {
        try await withTemporaryDirectory { dir in
            try await withMockUpstream { upstreamPort, recorder in
                let arguments = ["--upstream", "http://127.0.0.1:\(upstreamPort)", "--data", dir.path + "/store"]
                let path = "/v1/models/gemini-2.5-flash:generateContent"
                let body = generateBody("survive a crash")
                let first = try await GemcacheProcess(arguments: arguments, directory: dir.path)
                let miss = try await send(port: first.port, path: path, body: body, headers: ["x-goog-api-key": testKey])
                #expect(miss.header("x-gemcache") == "MISS")
                #expect(await first.stop(signal: SIGKILL) != 0)

                let second = try await GemcacheProcess(arguments: arguments, directory: dir.path)
                let hit = try await send(port: second.port, path: path, body: body, headers: ["x-goog-api-key": testKey])
                #expect(hit.header("x-gemcache") == "HIT")
                #expect(hit.body == miss.body)
                #expect(recorder.totalRequests == 1)
                #expect(await second.stop() == 0)
                #expect(!second.log.contains(testKey))
            }
        }
    }

    @Test func badSettingStopsStartupWithOneLine() async throws {
        try await withTemporaryDirectory { dir in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: GemcacheProcess.executablePath)
            process.arguments = ["serve"]
            process.currentDirectoryURL = URL(fileURLWithPath: dir.path)
            process.environment = ["GEMCACHE_CACHE_DEFAULT_TTL": "forever"]
            let pipe = Pipe()
            process.standardError = pipe
            try process.run()
            process.waitUntilExit()
            let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(process.terminationStatus == 1)
            #expect(output.split(separator: "\n").count == 1)
            #expect(output.contains("cache.default_ttl"))
        }
    }
}
