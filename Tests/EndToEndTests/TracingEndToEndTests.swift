import Foundation
import GemcacheTestSupport
import GeminiMock
import Testing

/// Traces (SPEC §7, issue 19): the real executable with `telemetry.otlp_endpoint` set exports its
/// spans to a collector on loopback, continues the client's `traceparent` and sends one upstream.
@Suite(.timeLimit(.minutes(1)))
struct TracingEndToEndTests {
    /// The span id of the clients' `traceparent`: the parent of every server span.
    static let clientSpan = "00f067aa0ba902b7"

    static func traceparent(_ traceID: String) -> String { "00-\(traceID)-\(clientSpan)-01" }

    static func serverSpan(of traceID: String, in spans: [ExportedSpan]) -> ExportedSpan? {
        spans.first { $0.traceID == traceID && $0.kind == 2 }
    }

    @Test func aMissAndTwoHitsAreTracedWithTheirAttributesAndNoCredential() async throws {
        let (missTrace, slowHitTrace, fastHitTrace) =
            ("4bf92f3577b34da6a3ce929d0e0e4736", "5bf92f3577b34da6a3ce929d0e0e4737", "6bf92f3577b34da6a3ce929d0e0e4738")
        try await withTemporaryDirectory { dir in
            try await withMockUpstream { upstreamPort, recorder in
                try await withFakeCollector { collectorPort, collector in
                    let process = try await GemcacheProcess(
                        arguments: ["--upstream", "http://127.0.0.1:\(upstreamPort)", "--data", dir.path + "/store"],
                        directory: dir.path,
                        environment: ["GEMCACHE_TELEMETRY_OTLP_ENDPOINT": "http://127.0.0.1:\(collectorPort)", "OTEL_BSP_SCHEDULE_DELAY": "100"]
                    )
                    // The key in the query: the one place of the three that the URL attribute could leak.
                    let path = "/v1beta/models/gemini-2.5-flash:generateContent?key=\(testKey)"
                    func ask(_ traceID: String, _ headers: [String: String] = [:]) async throws -> TestResponse {
                        let traced = ["traceparent": Self.traceparent(traceID), "x-gemcache-namespace": "traced"]
                        return try await send(
                            port: process.port,
                            path: path,
                            body: generateBody("a traced question"),
                            headers: traced.merging(headers) { $1 }
                        )
                    }
                    let miss = try await ask(missTrace)
                    #expect(miss.header("x-gemcache") == "MISS")
                    let upstreamTraceparent = try #require(recorder.lastHeaders["traceparent"])
                    // `Cache-Control` keeps a request off the fast path: the router answers this hit.
                    let slowHit = try await ask(slowHitTrace, ["cache-control": "max-age=86400"])
                    let fastHit = try await ask(fastHitTrace)
                    #expect([slowHit, fastHit].map { $0.header("x-gemcache") } == ["HIT", "HIT"])
                    let key = try #require(miss.header("x-gemcache-key"))

                    let spans = try await collector.spans { spans in
                        [missTrace, slowHitTrace, fastHitTrace].allSatisfy { Self.serverSpan(of: $0, in: spans) != nil }
                            && spans.contains { $0.name == "store commit" }
                    }
                    let usage = try #require(
                        (try JSONSerialization.jsonObject(with: Data(miss.body.utf8)) as? [String: Any])?["usageMetadata"] as? [String: Any]
                    )
                    let (prompt, total) = (try #require(usage["promptTokenCount"] as? Int), try #require(usage["totalTokenCount"] as? Int))
                    for (traceID, status) in [(missTrace, "MISS"), (slowHitTrace, "HIT"), (fastHitTrace, "HIT")] {
                        let server = try #require(Self.serverSpan(of: traceID, in: spans), "no server span for \(status) \(traceID)")
                        #expect(server.parentSpanID == Self.clientSpan, "the client's traceparent was not continued")
                        #expect(server.attributes["gemcache.status"] == status)
                        #expect(server.attributes["gemcache.key"] == key)
                        #expect(server.attributes["gemcache.namespace"] == "traced")
                        #expect(server.attributes["gemcache.route"] == "generateContent")
                        #expect(server.attributes["gen_ai.request.model"] == "gemini-2.5-flash")
                        #expect(server.attributes["gen_ai.usage.input_tokens"] == String(prompt))
                        #expect(server.attributes["gen_ai.usage.output_tokens"] == String(total - prompt))
                        #expect(server.attributes["http.request.method"] == "POST")
                        #expect(server.attributes["http.response.status_code"] == "200")
                        #expect(server.attributes["url.path"] == "/v1beta/models/gemini-2.5-flash:generateContent")
                        #expect(server.attributes["url.query"] == nil)
                    }

                    // The miss's steps are children of its server span; the upstream got the upstream call's context.
                    let missServer = try #require(Self.serverSpan(of: missTrace, in: spans))
                    let children = spans.filter { $0.traceID == missTrace && $0.parentSpanID == missServer.spanID }
                    #expect(Set(children.map(\.name)) == ["store lookup", "upstream call", "store commit"])
                    let upstreamCall = try #require(children.first { $0.name == "upstream call" })
                    #expect(upstreamTraceparent == "00-\(missTrace)-\(upstreamCall.spanID)-01")
                    let slowServer = try #require(Self.serverSpan(of: slowHitTrace, in: spans))
                    #expect(spans.filter { $0.parentSpanID == slowServer.spanID }.map(\.name) == ["store lookup"])

                    for body in collector.received {
                        #expect(!body.contains(Array(testKey.utf8)), "a credential reached the collector")
                    }
                    #expect(await process.stop() == 0)
                }
            }
        }
    }

    @Test func aCollectorThatIsAwayNeitherFailsNorHoldsUpRequestsAndItsSpansAreCountedDropped() async throws {
        try await withTemporaryDirectory { dir in
            try await withMockUpstream { upstreamPort, _ in
                // Nothing listens on the discard port; each export waits out its 2 s timeout, then fails.
                let process = try await GemcacheProcess(
                    arguments: ["--upstream", "http://127.0.0.1:\(upstreamPort)", "--data", dir.path + "/store"],
                    directory: dir.path,
                    environment: [
                        "GEMCACHE_TELEMETRY_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_BSP_SCHEDULE_DELAY": "100",
                        "OTEL_EXPORTER_OTLP_TIMEOUT": "2000",
                    ]
                )
                let path = "/v1beta/models/gemini-2.5-flash:generateContent"
                var outcomes: [String?] = []
                for round in 0..<20 {
                    let started = ContinuousClock.now
                    let answer = try await send(
                        port: process.port,
                        path: path,
                        body: generateBody("unexported"),
                        headers: ["x-goog-api-key": testKey]
                    )
                    #expect(answer.status == 200)
                    // Not a speed test: a request that waited for an export would take its 2 s timeout.
                    #expect(ContinuousClock.now - started < .seconds(1.5), "request \(round) waited for the collector")
                    outcomes.append(answer.header("x-gemcache"))
                }
                #expect(outcomes == ["MISS"] + Array(repeating: "HIT", count: 19))
                var telemetry: [String: Any] = [:]
                for _ in 0..<200 {
                    telemetry = try await statsDocument(port: process.port)["telemetry"] as? [String: Any] ?? [:]
                    if (telemetry["spans_dropped"] as? Int ?? 0) > 0 { break }
                    // Real time is the subject: the exporter gives a batch up after its timeout.
                    try await Task.sleep(for: .milliseconds(50))
                }
                #expect((telemetry["spans_dropped"] as? Int ?? 0) > 0)
                #expect(telemetry["otlp_endpoint"] as? String == "http://127.0.0.1:9/v1/traces")
                #expect(!process.log.contains(testKey))
                #expect(await process.stop() == 0)
            }
        }
    }

    @Test func tracingOffShowsNoTelemetryInTheStats() async throws {
        try await withTemporaryDirectory { dir in
            let process = try await GemcacheProcess(
                arguments: ["--upstream", "http://127.0.0.1:9", "--data", dir.path + "/store"],
                directory: dir.path
            )
            #expect(try await statsDocument(port: process.port)["telemetry"] is NSNull)
            #expect(await process.stop() == 0)
        }
    }

    @Test func aBadEndpointStopsStartUpWithOneLineNamingTheKey() async throws {
        try await withTemporaryDirectory { dir in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: GemcacheProcess.executablePath)
            process.arguments = ["serve", "--port", "0", "--data", dir.path + "/store"]
            process.currentDirectoryURL = URL(fileURLWithPath: dir.path)
            process.environment = ["PATH": "/usr/bin:/bin", "GEMCACHE_TELEMETRY_OTLP_ENDPOINT": "http://collector:hunter2@collector:4318"]
            let pipe = Pipe()
            process.standardError = pipe
            try process.run()
            let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            #expect(process.terminationStatus == 1)
            #expect(output.hasPrefix("gemcache: invalid setting telemetry.otlp_endpoint (GEMCACHE_TELEMETRY_OTLP_ENDPOINT): "))
            #expect(output.filter { $0 == "\n" }.count == 1)
            #expect(!output.contains("hunter2"))
        }
    }
}
