import AsyncHTTPClient
import Foundation
import GemcacheCore
import GemcacheStore
import GemcacheTestSupport
import NIOCore
import NIOHTTP1
import Synchronization
import Testing

/// A hostile or broken upstream (SPEC §1 `upstream.timeout`, §4, §8; issue 15 class 11 and the upstream's
/// numbers of class 2): streams that never end, answers that trickle, stall or lie about their length,
/// and absurd retry delays, played by ``HostileUpstream`` on loopback in front of the real proxy.
@Suite(.timeLimit(.minutes(2)))
struct HostileUpstreamTests {
    let ssePath = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    let generatePath = "/v1beta/models/gemini-2.5-flash:generateContent"
    let key = ["x-goog-api-key": testKey]
    let onlyIfCached = ["x-goog-api-key": testKey, "cache-control": "only-if-cached"]

    // MARK: - A stream larger than cache.max_entry_size, or endless

    /// The built binary in front of `upstream` with a 1 MiB `cache.max_entry_size`, warmed by one
    /// request, and its memory then.
    private static func proxyWithSmallEntries(in upstream: HostileUpstream, _ dir: TemporaryDirectory) async throws -> (GemcacheProcess, Memory) {
        let proxy = try await GemcacheProcess(
            arguments: ["--upstream", "http://127.0.0.1:\(upstream.port)", "--data", dir.path + "/store"],
            directory: dir.path,
            environment: ["GEMCACHE_CACHE_MAX_ENTRY_SIZE": "1MiB"]
        )
        #expect(try await send("GET", port: proxy.port, path: "/_gemcache/stats").status == 200)
        return (proxy, Memory(pid: proxy.processIdentifier))
    }

    @Test func aStreamPastTheEntrySizeIsRelayedWholeAndNotKeptInMemory() async throws {
        let events = 640  // 40 MiB: 40 times cache.max_entry_size
        let upstream = try HostileUpstream { connection in
            connection.write(SSE.head)
            for index in 0..<events where !connection.writeChunk(SSE.event(index)) { return }
            connection.writeChunk(SSE.last)
            connection.write("0\r\n\r\n")
        }
        try await withTemporaryDirectory { dir in
            let (proxy, before) = try await Self.proxyWithSmallEntries(in: upstream, dir)
            let (status, cache, received) = try await readStream(port: proxy.port, path: ssePath, body: generateBody("a long story"))
            let after = Memory(pid: proxy.processIdentifier)
            #expect(status == 200)
            #expect(cache == "MISS")
            var expected = Checksum()
            for index in 0..<events { expected.add(SSE.event(index)) }
            expected.add(SSE.last)
            #expect(received == expected, "the client got every byte, in order")
            // Recording the whole stream, as before, kept it at least twice (the chunks and the bytes to
            // store): 80 MiB or more (290 MiB measured). Bounded: 1 MiB kept, 1 MiB of lag, buffers (5 MiB).
            let growth = after.peak - before.resident
            #expect(growth < 24 << 20, "peak memory grew by \(growth >> 20) MiB while relaying 40 MiB")
            let stored = try await send(port: proxy.port, path: ssePath, body: generateBody("a long story"), headers: onlyIfCached)
            #expect(stored.status == 504, "nothing was stored")
            #expect(upstream.requests == 1)
            #expect(proxy.isRunning)
            await proxy.stop()
        }
    }

    @Test func aClientThatStopsReadingHoldsAnEndlessStreamBackAndLeavingEndsIt() async throws {
        let upstream = try HostileUpstream { connection in
            connection.write(SSE.head)
            var index = 0
            while connection.writeChunk(SSE.event(index)) { index += 1 }
        }
        try await withTemporaryDirectory { dir in
            let (proxy, before) = try await Self.proxyWithSmallEntries(in: upstream, dir)
            var client: RawConnection? = try RawConnection(port: proxy.port)
            let body = generateBody("never ending")
            client?.send(
                "POST \(ssePath) HTTP/1.1\r\nHost: gemcache\r\nx-goog-api-key: \(testKey)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
            )
            #expect(try await HostileUpstream.eventually(within: .seconds(10)) { upstream.requests == 1 })
            // Real time is the subject: the client reads nothing for 5 s. Unbounded, the proxy went on reading the upstream: 45 MiB
            // even in a debug build on a loaded machine; bounded, it holds 1 MiB kept plus 1 MiB of lag.
            try await Task.sleep(for: .seconds(5))
            let after = Memory(pid: proxy.processIdentifier)
            let growth = after.peak - before.resident
            #expect(growth < 16 << 20, "peak memory grew by \(growth >> 20) MiB while the client did not read")
            #expect(upstream.finished == 0, "the stream is held back, not dropped, while its client is connected")
            client = nil
            // Nobody listens and nothing past cache.max_entry_size can be stored: the proxy hangs up.
            #expect(try await HostileUpstream.eventually(within: .seconds(10)) { upstream.finished == 1 }, "the upstream stream was dropped")
            #expect(proxy.isRunning)
            await proxy.stop()
        }
    }

    @Test func aStreamPastTheEntrySizeCannotBeJoinedSoALateIdenticalRequestMakesItsOwnCall() async throws {
        let release = Counter()
        let upstream = try HostileUpstream { connection in
            connection.write(SSE.head)
            if connection.number == 1 {
                // 2 MiB, past the 1 MiB limit, then a pause until the second request has been answered.
                for index in 0..<32 { connection.writeChunk(SSE.event(index)) }
                while release.value == 0 { usleep(10_000) }
            }
            connection.writeChunk(SSE.last)
            connection.write("0\r\n\r\n")
        }
        try await withTemporaryDirectory { dir in
            var configuration = ProxyConfiguration.testing(upstreamURL: "http://127.0.0.1:\(upstream.port)", dataDirectory: dir.path)
            configuration.cache.maxEntrySize = 1 << 20
            try await withProxy(configuration) { port in
                let body = generateBody("join me late")
                let progress = Counter()
                defer { release.add(1) }
                async let first = readStream(port: port, path: ssePath, body: body, progress: progress)
                #expect(try await HostileUpstream.eventually(within: .seconds(20)) { progress.value >= 32 * SSE.eventSize })
                let second = try await readStream(port: port, path: ssePath, body: body)
                #expect(second.cache == "MISS", "not COALESCED: the first stream's beginning is no longer kept")
                #expect(upstream.requests == 2)
                var short = Checksum()
                short.add(SSE.last)
                #expect(second.received == short)
                release.add(1)
                let (status, cache, received) = try await first
                var long = Checksum()
                for index in 0..<32 { long.add(SSE.event(index)) }
                long.add(SSE.last)
                #expect(status == 200 && cache == "MISS")
                #expect(received == long)
                let third = try await send(port: port, path: ssePath, body: body, headers: onlyIfCached)
                #expect(third.header("x-gemcache") == "HIT", "the second, complete and small, stream was stored")
                #expect(Array(third.body.utf8) == SSE.last)
                #expect(upstream.requests == 2)
            }
        }
    }

    @Test func aCoalescedClientThatStopsReadingIsCutOffAndHoldsNoOneBack() async throws {
        let release = Counter()
        let events = 160  // 10 MiB: past the 1 MiB limit, and past the 4 MiB a client may lag behind another
        let upstream = try HostileUpstream { connection in
            connection.write(SSE.head)
            while release.value == 0 { usleep(10_000) }
            for index in 0..<events where !connection.writeChunk(SSE.event(index)) { return }
            connection.writeChunk(SSE.last)
            connection.write("0\r\n\r\n")
        }
        try await withTemporaryDirectory { dir in
            var configuration = ProxyConfiguration.testing(upstreamURL: "http://127.0.0.1:\(upstream.port)", dataDirectory: dir.path)
            configuration.cache.maxEntrySize = 1 << 20
            configuration.upstream.timeout = .seconds(90)
            try await withProxy(configuration) { port in
                defer { release.add(1) }
                let body = generateBody("share me")
                async let reader = readStream(port: port, path: ssePath, body: body)
                #expect(try await HostileUpstream.eventually(within: .seconds(20)) { upstream.requests == 1 })
                // A second client joins the same stream (its head says so), then reads nothing more.
                let stalled = try RawConnection(port: port)
                stalled.send(
                    "POST \(ssePath) HTTP/1.1\r\nHost: gemcache\r\nx-goog-api-key: \(testKey)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
                )
                let head = await stalled.readToEnd(timeout: .seconds(2)).text
                #expect(head.contains("X-Gemcache: COALESCED"))
                release.add(1)
                let started = ContinuousClock.now
                let (status, cache, received) = try await reader
                var expected = Checksum()
                for index in 0..<events { expected.add(SSE.event(index)) }
                expected.add(SSE.last)
                #expect(status == 200 && cache == "MISS")
                #expect(received == expected, "the reading client got the whole stream")
                // Held back by the stalled client, it would wait for upstream.timeout (90 s) and then be cut.
                #expect(ContinuousClock.now - started < .seconds(45))
                #expect(upstream.requests == 1)
            }
        }
    }

    // MARK: - upstream.timeout bounds the whole exchange

    /// How an upstream misbehaves once its head is sent.
    enum Misbehaviour: String, CaseIterable, Sendable {
        /// One byte a second, for far longer than `upstream.timeout`.
        case trickle
        /// Fewer bytes than its `Content-Length`, then silence with the connection open.
        case stall
        /// A complete-looking answer shorter than its `Content-Length`, then the connection closed.
        case lie

        /// Plays it with `body`, announced as `announced` bytes (a `Content-Length`, or chunked when nil).
        func play(_ connection: HostileUpstream.Connection, contentType: String, body: [UInt8], chunked: Bool) {
            let announced = body.count + 500
            connection.write(
                "HTTP/1.1 200 OK\r\nContent-Type: \(contentType)\r\n"
                    + (chunked ? "Transfer-Encoding: chunked\r\n" : "Content-Length: \(announced)\r\n") + "\r\n"
            )
            let send = { (bytes: [UInt8]) in chunked ? connection.writeChunk(bytes) : connection.write(bytes) }
            switch self {
            case .trickle:
                for byte in body where send([byte]) { sleep(1) }
            case .stall:
                _ = send(Array(body.prefix(body.count / 2)))
                _ = connection.awaitClose(timeout: .seconds(100))
            case .lie:
                _ = send(body)
            }
        }
    }

    private func withTimeoutStack<R: Sendable>(
        _ upstream: HostileUpstream,
        _ body: @Sendable (_ port: Int) async throws -> R
    ) async throws -> R {
        try await withTemporaryDirectory { dir in
            var configuration = ProxyConfiguration.testing(upstreamURL: "http://127.0.0.1:\(upstream.port)", dataDirectory: dir.path)
            configuration.upstream.timeout = .seconds(2)
            configuration.upstream.retry.attempts = 1
            return try await withProxy(configuration) { port in try await body(port) }
        }
    }

    @Test(arguments: Misbehaviour.allCases)
    func aCachedAnswerThatDoesNotArriveWholeIsAnErrorInGooglesEnvelope(_ misbehaviour: Misbehaviour) async throws {
        let answer = Array(
            #"{"candidates":[{"content":{"parts":[{"text":"complete-looking"}],"role":"model"},"finishReason":"STOP","index":0}]}"#.utf8
        )
        let upstream = try HostileUpstream { misbehaviour.play($0, contentType: "application/json; charset=UTF-8", body: answer, chunked: false) }
        try await withTimeoutStack(upstream) { port in
            let started = ContinuousClock.now
            let response = try await send(port: port, path: generatePath, body: generateBody("hurry"), headers: key)
            let elapsed = ContinuousClock.now - started
            let envelope = try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: [String: Any]]
            if misbehaviour == .lie {
                #expect(response.status == 502, "never the shorter answer, presented as complete")
                #expect(envelope?["error"]?["status"] as? String == "UNAVAILABLE")
            } else {
                #expect(response.status == 504)
                #expect(envelope?["error"]?["status"] as? String == "DEADLINE_EXCEEDED")
                #expect(envelope?["error"]?["code"] as? Int == 504)
            }
            // upstream.timeout is 2 s; the upstream would go on for 100 s. The bound tells the two apart,
            // with room for a loaded machine running the whole suite at once.
            #expect(elapsed < .seconds(30), "answered after \(elapsed)")
            let stored = try await send(port: port, path: generatePath, body: generateBody("hurry"), headers: onlyIfCached)
            #expect(stored.status == 504, "nothing was stored")
            #expect(try await HostileUpstream.eventually(within: .seconds(10)) { upstream.finished == 1 }, "the upstream connection was closed")
        }
    }

    @Test(arguments: Misbehaviour.allCases)
    func aStreamThatDoesNotArriveWholeIsCutForItsClient(_ misbehaviour: Misbehaviour) async throws {
        let upstream = try HostileUpstream { misbehaviour.play($0, contentType: "text/event-stream", body: SSE.last, chunked: misbehaviour != .lie) }
        try await withTimeoutStack(upstream) { port in
            let client = try RawConnection(port: port)
            let body = generateBody("stream, hurry")
            let started = ContinuousClock.now
            client.send(
                "POST \(ssePath) HTTP/1.1\r\nHost: gemcache\r\nx-goog-api-key: \(testKey)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
            )
            let (text, closed) = await client.readToEnd(timeout: .seconds(60))
            let elapsed = ContinuousClock.now - started
            #expect(text.hasPrefix("HTTP/1.1 200"), "the stream had started")
            #expect(closed, "the connection was closed")
            #expect(!text.hasSuffix("\r\n0\r\n\r\n"), "the chunked body was not terminated: the client sees an error, not an end")
            #expect(elapsed < .seconds(30), "cut after \(elapsed), upstream.timeout being 2 s and the upstream going on for 100 s")
            let stored = try await send(port: port, path: ssePath, body: body, headers: onlyIfCached)
            #expect(stored.status == 504, "nothing was stored")
        }
    }

    @Test func aPassThroughAnswerIsCutAfterSilenceNotAfterTheTimeout() async throws {
        let upstream = try HostileUpstream { connection in
            if connection.request.hasPrefix("GET /v1beta/files/short ") {
                connection.write("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\nnot 1000 bytes")
                return
            }
            connection.write("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            if connection.request.hasPrefix("GET /v1beta/files/slow ") {
                // Longer than upstream.timeout in all, but never silent for that long.
                for _ in 0..<8 where connection.writeChunk(Array("tick\n".utf8)) { usleep(500_000) }
                connection.write("0\r\n\r\n")
            } else {
                connection.writeChunk(Array("and then nothing".utf8))
                _ = connection.awaitClose(timeout: .seconds(100))
            }
        }
        try await withTimeoutStack(upstream) { port in
            let slow = try await send("GET", port: port, path: "/v1beta/files/slow", headers: key)
            #expect(slow.status == 200)
            #expect(slow.header("x-gemcache") == "PASS")
            #expect(slow.body == String(repeating: "tick\n", count: 8), "4 s of answer, with a 2 s upstream.timeout: the whole of it")
            let started = ContinuousClock.now
            await #expect(throws: (any Error).self) { try await send("GET", port: port, path: "/v1beta/files/silent", headers: key) }
            #expect(ContinuousClock.now - started < .seconds(30), "cut after 2 s of silence, not after the upstream's 100")
            await #expect(throws: (any Error).self, "a body shorter than its Content-Length is an error, not an answer") {
                try await send("GET", port: port, path: "/v1beta/files/short", headers: key)
            }
        }
    }

    // MARK: - Numbers from the upstream

    @Test func absurdRetryDelaysAreIgnoredOrCappedAndNeverStopTheProxy() async throws {
        // Model i answers 429 with delays[i]; any other model answers 200.
        let delays = ["infs", "nan", "1e300s", "-5s", "9223372036854775807s"]
        let upstream = try HostileUpstream { connection in
            guard let index = delays.indices.first(where: { connection.request.contains("/models/hostile-\($0):") }) else {
                let answer = #"{"candidates":[{"content":{"parts":[{"text":"fine"}],"role":"model"},"finishReason":"STOP","index":0}]}"#
                connection.write(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \(answer.utf8.count)\r\nConnection: close\r\n\r\n\(answer)"
                )
                return
            }
            let error =
                #"{"error":{"code":429,"message":"Quota exceeded.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"\#(delays[index])"}]}}"#
            connection.write(
                "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nContent-Length: \(error.utf8.count)\r\nConnection: close\r\n\r\n\(error)"
            )
        }
        try await withTemporaryDirectory { dir in
            let proxy = try await GemcacheProcess(
                arguments: ["--upstream", "http://127.0.0.1:\(upstream.port)", "--data", dir.path + "/store"],
                directory: dir.path,
                environment: [
                    "GEMCACHE_UPSTREAM_RETRY_ATTEMPTS": "2", "GEMCACHE_UPSTREAM_RETRY_BUDGET": "3s",
                    "GEMCACHE_LIMITS_ENFORCE": "true", "GEMCACHE_LIMITS_MAX_WAIT": "1s",
                ]
            )
            for (index, delay) in delays.enumerated() {
                let path = "/v1beta/models/hostile-\(index):generateContent"
                let answer = try await send(port: proxy.port, path: path, body: generateBody("quota"), headers: key)
                #expect(answer.status == 429, "\(delay): the upstream's own answer after the retries")
                #expect(answer.body.contains(delay), "\(delay): its body passed on")
                let calls = upstream.requestLines.filter { $0.contains("/models/hostile-\(index):") }.count
                if index < delays.count - 1 {
                    #expect(calls == 2, "\(delay) is malformed: ignored, so the usual backoff and one retry")
                } else {
                    #expect(calls == 1, "\(delay) is capped at an hour, past the 3 s budget: no retry")
                }
                #expect(proxy.isRunning, "\(delay) did not stop the proxy")
            }
            // The capped delay paused its model for an hour: the quota guard answers, with a bounded Retry-After.
            let paused = try await send(port: proxy.port, path: "/v1beta/models/hostile-4:generateContent", body: generateBody("again"), headers: key)
            #expect(paused.status == 429)
            #expect(
                paused.header("retry-after").flatMap(Int.init).map { (3500...3601).contains($0) } == true,
                "Retry-After \(paused.header("retry-after") ?? "none")"
            )
            #expect(upstream.requestLines.filter { $0.contains("/models/hostile-4:") }.count == 1)
            let fine = try await send(port: proxy.port, path: generatePath, body: generateBody("still there?"), headers: key)
            #expect(fine.status == 200)
            #expect(fine.header("x-gemcache") == "MISS")
            #expect(proxy.isRunning)
            await proxy.stop()
        }
    }
}

// MARK: - Helpers

/// The SSE answer the hostile upstream streams: events of 64 KiB, and a last one that finishes with STOP.
private enum SSE {
    static let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    static let eventSize = 64 << 10

    /// Event `index`, exactly ``eventSize`` bytes, its text naming the index (so order and duplicates show).
    static func event(_ index: Int) -> [UInt8] {
        let prefix = #"data: {"candidates":[{"content":{"parts":[{"text":"\#(index):"#
        let suffix = #""}],"role":"model"},"index":0}]}"# + "\r\n\r\n"
        return Array((prefix + String(repeating: "x", count: eventSize - prefix.utf8.count - suffix.utf8.count) + suffix).utf8)
    }

    static let last = Array(
        (#"data: {"candidates":[{"content":{"parts":[{"text":"The end."}],"role":"model"},"finishReason":"STOP","index":0}],"#
            + #""usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":3,"totalTokenCount":6}}"# + "\r\n\r\n").utf8
    )
}

/// The length and FNV-1a hash of a byte stream, to compare tens of MiB without keeping them.
private struct Checksum: Equatable, Sendable {
    var count = 0
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325

    mutating func add(_ bytes: UnsafeRawBufferPointer) {
        for byte in bytes {
            hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
        }
        count += bytes.count
    }

    mutating func add(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { add($0) }
    }
}

/// Streams a request's answer, counting what arrives into `progress`.
/// - Returns: The status, `X-Gemcache`, and the checksum of the body.
private func readStream(
    port: Int,
    path: String,
    body: String,
    progress: Counter? = nil
) async throws -> (status: Int, cache: String?, received: Checksum) {
    let request = testRequest(url: "http://127.0.0.1:\(port)\(path)", body: body, headers: ["x-goog-api-key": testKey])
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
    var received = Checksum()
    for try await part in response.body {
        part.withUnsafeReadableBytes { received.add($0) }
        progress?.add(part.readableBytes)
    }
    return (Int(response.status.code), response.headers.first(name: "x-gemcache"), received)
}

/// A number shared between tasks and the hostile upstream's threads.
private final class Counter: Sendable {
    private let atomic = Atomic(0)

    var value: Int { atomic.load(ordering: .sequentiallyConsistent) }

    func add(_ amount: Int) { atomic.add(amount, ordering: .sequentiallyConsistent) }
}

/// A process's memory, from `/proc/PID/status`.
private struct Memory {
    /// `VmRSS`: resident now, in bytes.
    let resident: Int
    /// `VmHWM`: the most ever resident, in bytes.
    let peak: Int

    init(pid: Int32) {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        func field(_ name: String) -> Int {
            let line = status.split(separator: "\n").first { $0.hasPrefix(name + ":") } ?? ""
            return (Int(line.split { $0 == " " || $0 == "\t" }.dropFirst().first ?? "") ?? 0) * 1024
        }
        resident = field("VmRSS")
        peak = field("VmHWM")
    }
}
