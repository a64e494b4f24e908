import Foundation
import GemcacheCore
import GemcacheTestSupport
import GeminiMock
import Testing

/// Records whose bytes changed on disk after they were written (issue 18 item 2): the checksum makes
/// them misses on the fast path and the slow path alike, never a HIT or STALE, counted as `damaged`,
/// and the fresh answer replaces them.
@Suite(.timeLimit(.minutes(1)))
struct DamagedRecordTests {
    let path = "/v1beta/models/gemini-2.5-flash:generateContent"
    let key = ["x-goog-api-key": testKey]

    /// Changes four bytes of every copy of `body` in the store's data file under `directory`, in a
    /// stretch of 32 bytes that `other` (an answer of the same shape) does not hold.
    /// - Returns: How many copies were changed.
    private static func damage(_ body: String, notIn other: String, under directory: String) throws -> Int {
        let files = FileManager.default.enumerator(atPath: directory)?.compactMap { $0 as? String }.filter { $0.hasSuffix("data.mdb") } ?? []
        let file = URL(fileURLWithPath: directory + "/" + (try #require(files.first)))
        var bytes = [UInt8](try Data(contentsOf: file))
        let text = Array(body.utf8)
        let marker = try #require(
            (0..<(text.count - 32)).lazy.map { Array(text[$0..<($0 + 32)]) }.first { !other.contains(String(decoding: $0, as: UTF8.self)) }
        )
        var changed = 0
        for start in 0..<(bytes.count - marker.count) where bytes[start..<(start + marker.count)].elementsEqual(marker) {
            for offset in 14..<18 { bytes[start + offset] ^= 0x01 }
            changed += 1
        }
        try Data(bytes).write(to: file)
        return changed
    }

    @Test func aDamagedRecordIsAMissOnBothPathsCountedAndReplaced() async throws {
        try await withTemporaryDirectory { dir in
            try await withMockUpstream { upstreamPort, recorder in
                let configuration = ProxyConfiguration.testing(upstreamURL: "http://127.0.0.1:\(upstreamPort)", dataDirectory: dir.path)
                let fastBody = generateBody("Why is the sky blue?")
                let slowBody = generateBody("Why is the sea salty?")
                let (fastMiss, slowMiss) = try await withProxy(configuration) { port in
                    let fastMiss = try await send(port: port, path: path, body: fastBody, headers: key)
                    let slowMiss = try await send(port: port, path: path, body: slowBody, headers: key)
                    await GeminiProxy.aliasWritesLanded()
                    #expect(try await send(port: port, path: path, body: fastBody, headers: key).header("x-gemcache") == "HIT")
                    return (fastMiss, slowMiss)
                }
                #expect(fastMiss.header("x-gemcache") == "MISS" && slowMiss.header("x-gemcache") == "MISS")
                #expect(try Self.damage(fastMiss.body, notIn: slowMiss.body, under: dir.path) > 0)
                #expect(try Self.damage(slowMiss.body, notIn: fastMiss.body, under: dir.path) > 0)

                try await withProxy(configuration) { port in
                    // The first request has a recorded alias (the fast path's read), the second not (the slow path's).
                    for body in [fastBody, slowBody] {
                        let first = try await send(port: port, path: path, body: body, headers: key)
                        #expect(first.header("x-gemcache") == "MISS")
                        await GeminiProxy.aliasWritesLanded()
                        let again = try await send(port: port, path: path, body: body, headers: key)
                        #expect(again.header("x-gemcache") == "HIT")
                        #expect(again.body == first.body)
                    }
                    #expect(recorder.totalRequests == 4)
                    let document = try await statsDocument(port: port) { $0["damaged"] as? Int == 2 }
                    #expect(document["damaged"] as? Int == 2)
                }
            }
        }
    }
}
