import AsyncHTTPClient
import Foundation
import GemcacheCore
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

    // MARK: - Numbers from the upstream

    @Test func absurdRetryDelaysAreIgnoredOrCappedAndNeverStopTheProxy() async throws {
        // Model i answers 429 with delays[i]; any other model answers 200.
        let delays = ["infs", "nan", "1e300s", "-5s", "9223372036854775807s"]
        let upstream = try HostileUpstream { connection in
            guard let index = delays.indices.first(where: { connection.request.contains("/models/hostile-\($0):") }) else {
                let answer = #"{"candidates":[{"content":{"parts":[{"text":"fine"}],"role":"model"},"finishReason":"STOP","index":0}]}"#
                connection.write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \(answer.utf8.count)\r\nConnection: close\r\n\r\n\(answer)")
                return
            }
            let error = #"{"error":{"code":429,"message":"Quota exceeded.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"\#(delays[index])"}]}}"#
            connection.write("HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nContent-Length: \(error.utf8.count)\r\nConnection: close\r\n\r\n\(error)")
        }
        try await withTemporaryDirectory { dir in
            let proxy = try await GemcacheProcess(
                arguments: ["--upstream", "http://127.0.0.1:\(upstream.port)", "--data", dir.path + "/store"], directory: dir.path,
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
            #expect(paused.header("retry-after").flatMap(Int.init).map { (3500...3601).contains($0) } == true, "Retry-After \(paused.header("retry-after") ?? "none")")
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
private func readStream(port: Int, path: String, body: String, progress: Counter? = nil) async throws -> (status: Int, cache: String?, received: Checksum) {
    var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
    request.method = .POST
    request.headers.add(name: "x-goog-api-key", value: testKey)
    request.headers.add(name: "content-type", value: "application/json")
    request.body = .bytes(ByteBuffer(string: body))
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
