import Foundation
import GemcacheCore
import GemcacheTestSupport
import GeminiMock
import Hummingbird
import Synchronization
import Testing

/// Attacks on a shared proxy by its own clients (SECURITY.md, SPEC §2, §4, §6–§8): each test sends the
/// attack to a real proxy in front of a real upstream on loopback and checks that it is refused or
/// harmless, and that the proxy is still up afterwards.
@Suite(.timeLimit(.minutes(2)))
struct SecurityEndToEndTests {
    let path = "/v1beta/models/gemini-2.5-flash:generateContent"
    let managed = ["GEMINI_API_KEY": "upstream-secret-1", "GEMCACHE_CLIENT_TOKENS": "team-token"]

    /// Sends `head` (a request line and headers, no body unless given) and reads one answer.
    private func raw(_ port: Int, _ head: String, body: String = "") async throws -> String {
        let connection = try RawConnection(port: port)
        connection.send(head + "\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body)
        return await connection.readAnswer(timeout: .seconds(10))
    }

    // MARK: - The client never picks the upstream host

    @Test(arguments: [false, true])
    func requestTargetsThatNameAnotherHostAreRefusedBeforeAnyConnection(managedMode: Bool) async throws {
        try await withCanary { canary in
            try await withProxyBehindMock(
                environment: managedMode ? managed : [:],
                configure: {
                    if managedMode { $0.auth.mode = .managed }
                }
            ) { port, recorder, _ in
                let credential = managedMode ? "team-token" : testKey
                let targets = [
                    "*@127.0.0.1:\(canary.port)/steal",
                    "@127.0.0.1:\(canary.port)/steal",
                    "//127.0.0.1:\(canary.port)/steal",
                    "/v1beta/models@127.0.0.1:\(canary.port)/x",
                    "\\\\127.0.0.1:\(canary.port)/steal",
                    "/v1beta/..%2F..%2F@127.0.0.1:\(canary.port)",
                    "/v1beta/models/../../steal",
                    "/v1beta/models/gemini-2.5-flash:generateContent#@127.0.0.1:\(canary.port)",
                    "127.0.0.1:\(canary.port)",
                    "/ws://127.0.0.1:\(canary.port)/x",
                    "/v1beta//127.0.0.1:\(canary.port)/x",
                ]
                for target in targets {
                    for method in ["GET", "POST"] {
                        let answer = try await raw(
                            port,
                            "\(method) \(target) HTTP/1.1\r\nHost: x\r\nx-goog-api-key: \(credential)",
                            body: method == "POST" ? "{}" : ""
                        )
                        #expect(answer.hasPrefix("HTTP/1.1 400"), "\(method) \(target): \(answer.prefix(200))")
                        // NIO's HTTP parser refuses some of these itself (a bare 400 and a close); the rest get Google's envelope.
                        let parsed = !answer.hasSuffix("\r\n\r\n")
                        #expect(!parsed || answer.contains("\"status\":\"INVALID_ARGUMENT\""), "\(target): \(answer.prefix(300))")
                    }
                }
                // Absolute form is HTTP (RFC 9112 §3.2.2): its authority is ignored, the upstream stays the configured one.
                let absolute = try await raw(
                    port,
                    "GET http://127.0.0.1:\(canary.port)/v1beta/cachedContents HTTP/1.1\r\nHost: 127.0.0.1:\(canary.port)\r\nx-goog-api-key: \(credential)"
                )
                #expect(absolute.contains("X-Gemcache: PASS") || absolute.contains("x-gemcache: PASS"))
                // Host and forwarding headers never choose a host.
                let forwarded = try await send(
                    "GET",
                    port: port,
                    path: "/v1beta/cachedContents",
                    headers: [
                        "x-goog-api-key": credential, "host": "127.0.0.1:\(canary.port)", "x-forwarded-host": "127.0.0.1:\(canary.port)",
                        "forwarded": "host=127.0.0.1:\(canary.port);proto=http", "x-forwarded-proto": "http",
                    ]
                )
                #expect(forwarded.header("x-gemcache") == "PASS")
                #expect(recorder.totalRequests == 2, "only the two well-formed requests reached the configured upstream")
                #expect(canary.connections == 0)
                let healthy = try await send("GET", port: port, path: "/healthz")
                #expect(healthy.status == 200)
            }
        }
    }

    @Test func upstreamRedirectsAreHandedBackNotFollowed() async throws {
        try await withCanary { canary in
            try await withScriptedUpstream({ _ in
                Response(
                    status: .found,
                    headers: [.location: "http://127.0.0.1:\(canary.port)/collect"],
                    body: .init(byteBuffer: .init(string: "moved"))
                )
            }) { upstreamPort in
                try await withTemporaryDirectory { directory in
                    var configuration = ProxyConfiguration.testing(upstreamURL: "http://127.0.0.1:\(upstreamPort)", dataDirectory: directory.path)
                    configuration.auth.mode = .managed
                    try await withProxy(configuration, environment: managed) { port in
                        // Raw connections: the test's own HTTP client would follow the Location itself.
                        let passed = try await raw(port, "GET /v1beta/files HTTP/1.1\r\nHost: x\r\nx-goog-api-key: team-token")
                        #expect(passed.hasPrefix("HTTP/1.1 302"))
                        #expect(passed.contains("Location: http://127.0.0.1:\(canary.port)/collect"))
                        #expect(passed.contains("X-Gemcache: PASS"))
                        let cached = try await raw(
                            port,
                            "POST \(path) HTTP/1.1\r\nHost: x\r\nx-goog-api-key: team-token",
                            body: generateBody("redirected")
                        )
                        #expect(cached.hasPrefix("HTTP/1.1 302"))
                        #expect(canary.connections == 0, "the team's upstream key never follows a Location")
                    }
                }
            }
        }
    }

    /// Found by benchmarks/httpfuzz.py: an upstream that answers a pass-through request before the
    /// client has sent its body made the upload and Hummingbird read the request body at once, and NIO
    /// trapped. Tried on the real binary, so that a trap fails the test instead of the test run.
    @Test func anUpstreamThatAnswersBeforeTheBodyIsSentNeverStopsTheProcess() async throws {
        try await withTemporaryDirectory { directory in
            try await withMockUpstream { upstreamPort, _ in
                let proxy = try await GemcacheProcess(
                    arguments: ["--upstream", "http://127.0.0.1:\(upstreamPort)", "--data", directory.path + "/store"],
                    directory: directory.path
                )
                let connection = try RawConnection(port: proxy.port)
                // The mock answers 404 for this route at once, whatever the body.
                connection.send(
                    "GET /v1beta/cachedContents/missing HTTP/1.1\r\nHost: x\r\nx-goog-api-key: \(testKey)\r\nContent-Length: 20000\r\n\r\n"
                )
                connection.send(String(repeating: "a", count: 10_000))
                let head = await connection.readAnswer(timeout: .seconds(3))
                #expect(head.hasPrefix("HTTP/1.1 404"), "\(head.prefix(200))")
                connection.send(String(repeating: "b", count: 10_000))
                connection.send("GET /v1beta/cachedContents/other HTTP/1.1\r\nHost: x\r\nx-goog-api-key: \(testKey)\r\nContent-Length: 0\r\n\r\n")
                let (rest, _) = await connection.readToEnd(timeout: .seconds(3))
                #expect(rest.contains("HTTP/1.1 404"), "the pipelined request after the body is answered too: \(rest.prefix(300))")
                #expect(proxy.isRunning)
                #expect(try await send("GET", port: proxy.port, path: "/healthz").status == 200)
                #expect(await proxy.stop() == 0)
            }
        }
    }

    /// Found by benchmarks/httpfuzz.py: a request head over 64 KiB with a streamed body made
    /// AsyncHTTPClient start the body before the head was out, and trap.
    @Test func headersLargerThanTheLimitAreRefusedBeforeTheUpstream() async throws {
        try await withProxyBehindMock { port, recorder, _ in
            for path in ["/upload/v1beta/files", "/v1beta/models/gemini-2.5-flash:generateContent"] {
                let answer = try await raw(
                    port,
                    "POST \(path) HTTP/1.1\r\nHost: x\r\nx-goog-api-key: \(testKey)\r\nX-Pad: " + String(repeating: "p", count: 65_000),
                    body: generateBody("padded")
                )
                #expect(answer.hasPrefix("HTTP/1.1 431"), "\(path): \(answer.prefix(200))")
                #expect(answer.contains("\"status\":\"INVALID_ARGUMENT\""))
            }
            let normal = try await send(
                port: port,
                path: "/upload/v1beta/files",
                body: "file",
                headers: ["x-goog-api-key": testKey, "x-pad": String(repeating: "p", count: 16_000)]
            )
            #expect(normal.status == 200)
            #expect(recorder.totalRequests == 1)
        }
    }

    // MARK: - Numbers from clients

    @Test func numericExtremesInControlHeadersNeverStopTheProcess() async throws {
        try await withProxyBehindMock { port, recorder, _ in
            let headers = ["x-goog-api-key": testKey]
            let stored = try await send(port: port, path: path, body: generateBody("numbers"), headers: headers)
            #expect(stored.header("x-gemcache") == "MISS")
            for ttl in ["9223372036854775807", "-1", "315360001", "1e9", "99999999999999999999999", " ", "0x10"] {
                let answer = try await send(
                    port: port,
                    path: path,
                    body: generateBody("ttl \(ttl)"),
                    headers: headers.merging(["x-gemcache-ttl": ttl]) { $1 }
                )
                #expect(answer.status == 400, "X-Gemcache-TTL: \(ttl)")
                #expect(answer.body.contains("X-Gemcache-TTL"))
            }
            let longest = try await send(
                port: port,
                path: path,
                body: generateBody("ten years"),
                headers: headers.merging(["x-gemcache-ttl": "315360000"]) { $1 }
            )
            #expect(longest.status == 200)
            let none = try await send(
                port: port,
                path: path,
                body: generateBody("zero ttl"),
                headers: headers.merging(["x-gemcache-ttl": "0"]) { $1 }
            )
            #expect(none.status == 200)
            #expect(none.header("cache-status")?.contains("stored") == false, "TTL 0 stores nothing")
            for maxAge in ["9223372036854775807", "99999999999999999999999999", "2147483649", "-5", "abc", "1e3", ""] {
                let answer = try await send(
                    port: port,
                    path: path,
                    body: generateBody("numbers"),
                    headers: headers.merging(["cache-control": "max-age=\(maxAge), max-stale=\(maxAge), min-fresh=\(maxAge)"]) { $1 }
                )
                #expect(answer.status == 200, "max-age=\(maxAge)")
                #expect(answer.header("x-gemcache") == "HIT", "a huge or malformed max-age does not refuse the entry: max-age=\(maxAge)")
            }
            #expect(recorder.totalRequests == 3)
        }
    }

    // MARK: - What enters the key

    @Test func fieldMasksAndSystemParametersNeverPoisonThePlainEntry() async throws {
        try await withProxyBehindMock { port, recorder, _ in
            let headers = ["x-goog-api-key": testKey]
            let masked = try await send(
                port: port,
                path: path,
                body: generateBody("mask"),
                headers: headers.merging(["x-goog-fieldmask": "candidates.finishReason"]) { $1 }
            )
            #expect(masked.header("x-gemcache") == "MISS")
            let fields = try await send(port: port, path: path + "?$fields=candidates.finishReason", body: generateBody("mask"), headers: headers)
            #expect(fields.header("x-gemcache") == "MISS")
            let plain = try await send(port: port, path: path, body: generateBody("mask"), headers: headers)
            #expect(plain.header("x-gemcache") == "MISS", "the plain request never gets a masked answer")
            #expect(Set([masked, fields, plain].compactMap { $0.header("x-gemcache-key") }).count == 3)
            // The same bytes again: the plain one is a hit (the fast path's), the masked one its own hit.
            #expect(
                try await send(port: port, path: path, body: generateBody("mask"), headers: headers).header("x-gemcache-key")
                    == plain.header("x-gemcache-key")
            )
            let maskedAgain = try await send(
                port: port,
                path: path,
                body: generateBody("mask"),
                headers: headers.merging(["x-goog-fieldmask": "candidates.finishReason"]) { $1 }
            )
            #expect(maskedAgain.header("x-gemcache") == "HIT")
            #expect(maskedAgain.header("x-gemcache-key") == masked.header("x-gemcache-key"))

            for _ in 0..<2 {
                let unknown = try await send(port: port, path: path + "?$trace=1", body: generateBody("mask"), headers: headers)
                #expect(unknown.status == 200)
                #expect(unknown.header("x-gemcache") == "BYPASS", "an unknown system parameter is answered, never stored or served from the cache")
            }
            #expect(recorder.totalRequests == 5)
        }
    }

    // MARK: - Admission before accounting

    @Test func refusedRequestsOnlyCountAsRejected() async throws {
        try await withProxyBehindMock(environment: managed, configure: { $0.auth.mode = .managed }) { port, recorder, _ in
            for index in 0..<200 {
                let answer = try await send(port: port, path: "/v1beta/models/junk\(index):countTokens", body: generateBody("x"))
                #expect(answer.status == 401)
            }
            let twice = try await send(
                port: port,
                path: "/v1beta/models/junk-two:generateContent?key=team-token",
                body: generateBody("x"),
                headers: ["x-goog-api-key": "other"]
            )
            #expect(twice.status == 400)
            let document = try await statsDocument(port: port)
            #expect(document["rejected"] as? Int == 201)
            #expect(document["requests"] as? Int == 0)
            let models = document["models"] as? [String: Any] ?? [:]
            #expect(!models.keys.contains { $0.hasPrefix("junk") }, "\(models.keys)")
            let metrics = try await send("GET", port: port, path: "/metrics")
            #expect(!metrics.body.contains("junk"))
            #expect(recorder.totalRequests == 0)
        }
    }

    // MARK: - Credentials

    @Test func aRequestWithMoreThanOneCredentialIsRefused() async throws {
        try await withProxyBehindMock { port, recorder, _ in
            let body = generateBody("two keys")
            // Stored and served once, so that the fast path knows these bytes too.
            #expect(try await send(port: port, path: path, body: body, headers: ["x-goog-api-key": testKey]).header("x-gemcache") == "MISS")
            #expect(try await send(port: port, path: path, body: body, headers: ["x-goog-api-key": testKey]).header("x-gemcache") == "HIT")
            let attempts: [(String, [String: String])] = [
                (path + "?key=other-key", ["x-goog-api-key": testKey]),
                (path + "?key=\(testKey)&key=other-key", [:]),
                (path + "?key=\(testKey)&access_token=other", [:]),
                (path, ["x-goog-api-key": testKey, "authorization": "Bearer other-key"]),
                ("/v1beta/cachedContents?key=other-key", ["x-goog-api-key": testKey]),
            ]
            for (target, headers) in attempts {
                let answer = try await send(port: port, path: target, body: body, headers: headers)
                #expect(answer.status == 400, "\(target) \(headers.keys.sorted())")
                #expect(answer.body.contains("more than one credential"))
            }
            let sameTwice = try await send(port: port, path: path + "?key=\(testKey)&key=\(testKey)", body: body)
            #expect(sameTwice.status == 200, "one credential sent twice alike is one credential")
            #expect(sameTwice.header("x-gemcache") == "HIT", "the same credential in the query is the same partition")
            #expect(recorder.totalRequests == 1)
        }
    }

    // MARK: - Bounded work per request

    @Test func aBatchOverGooglesLimitIsRefusedBeforeAnyItemIsKeyed() async throws {
        try await withProxyBehindMock { port, recorder, _ in
            func batch(_ count: Int) -> String {
                let item = #"{"model":"models/gemini-embedding-001","content":{"parts":[{"text":"x"}]}}"#
                return #"{"requests":["# + Array(repeating: item, count: count).joined(separator: ",") + "]}"
            }
            let embed = "/v1beta/models/gemini-embedding-001:batchEmbedContents"
            let huge = try await send(port: port, path: embed, body: batch(20_000), headers: ["x-goog-api-key": testKey])
            #expect(huge.status == 400)
            #expect(huge.body.contains("at most 100"))
            let limit = try await send(port: port, path: embed, body: batch(100), headers: ["x-goog-api-key": testKey])
            #expect(limit.status == 200)
            #expect(recorder.totalRequests == 1)
        }
    }

    @Test func idleConnectionsAreClosedAlsoOnceTheFrameworkParsesThem() async throws {
        try await withProxyBehindMock(configure: { $0.limits.clientTimeout = .seconds(1) }) { port, _, _ in
            // A chunked request goes to NIO's decoder for good; the client then stalls mid-body.
            let stalled = try RawConnection(port: port)
            stalled.send("POST \(path) HTTP/1.1\r\nHost: x\r\nx-goog-api-key: \(testKey)\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"con")
            // 15 s: far past the 1 s timeout, so that a loaded machine does not fail it; without the rule it never closes.
            let (_, closedMidBody) = await stalled.readToEnd(timeout: .seconds(15))
            #expect(closedMidBody, "a client stalled mid-body is let go after limits.client_timeout")

            // A whole chunked request is answered, then the idle connection is closed.
            let idle = try RawConnection(port: port)
            let body = generateBody("chunked")
            idle.send(
                "POST \(path) HTTP/1.1\r\nHost: x\r\nx-goog-api-key: \(testKey)\r\nTransfer-Encoding: chunked\r\n\r\n\(String(body.utf8.count, radix: 16))\r\n\(body)\r\n0\r\n\r\n"
            )
            let (answer, closedWhenIdle) = await idle.readToEnd(timeout: .seconds(15))
            #expect(answer.hasPrefix("HTTP/1.1 200"))
            #expect(closedWhenIdle, "an idle keep-alive connection is let go after limits.client_timeout")
        }
    }
}
