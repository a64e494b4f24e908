import Foundation
import GemcacheTestSupport
import GeminiMock
import Testing

/// `gemcache salvage` and `store.on_corrupt: salvage` through the binary (issue 18 item 3): a store whose
/// meta pages are gone, which liblmdb refuses, gives back every answer that reads back whole, and a
/// proxy replays them without calling upstream; a damaged answer is never among them.
@Suite(.timeLimit(.minutes(2)))
struct SalvageEndToEndTests {
    let path = "/v1beta/models/gemini-2.5-flash:generateContent"
    let key = ["x-goog-api-key": testKey]
    static let prompts = (0..<12).map { "salvage-\($0 < 10 ? "0" : "")\($0) answer" }

    /// Fills a store at `store` with one answer per prompt through a proxy, then stops it.
    private func fill(_ store: String, upstreamPort: Int, directory: String) async throws {
        let proxy = try await GemcacheProcess(arguments: ["--upstream", "http://127.0.0.1:\(upstreamPort)", "--data", store], directory: directory)
        for prompt in Self.prompts {
            #expect(try await send(port: proxy.port, path: path, body: generateBody(prompt), headers: key).header("x-gemcache") == "MISS")
        }
        #expect(await proxy.stop() == 0)
    }

    /// Zeroes both meta pages of the data file in `store` (liblmdb no longer opens it) and flips a byte
    /// in every copy of the answers to `damaged` prompts.
    private static func damage(_ store: String, answersTo damaged: [String]) throws {
        let url = URL(fileURLWithPath: store + "/data.mdb")
        var bytes = [UInt8](try Data(contentsOf: url))
        for index in 0..<(2 * 4096) { bytes[index] = 0 }
        for prompt in damaged {
            let marker = Array("Mock answer to: \(prompt)".utf8)
            var copies = 0
            for start in 0..<(bytes.count - marker.count) where bytes[start..<(start + marker.count)].elementsEqual(marker) {
                bytes[start + 5] ^= 0x20
                copies += 1
            }
            #expect(copies > 0)
        }
        try Data(bytes).write(to: url)
    }

    /// Starts the binary on `store` with `store.on_corrupt: salvage`; returns it and its `/healthz` document.
    private func startSalvaging(_ store: String, upstreamPort: Int, directory: String) async throws -> (GemcacheProcess, [String: Any]) {
        let proxy = try await GemcacheProcess(
            arguments: ["--upstream", "http://127.0.0.1:\(upstreamPort)", "--data", store],
            directory: directory,
            environment: ["GEMCACHE_STORE_ON_CORRUPT": "salvage"]
        )
        return (proxy, try StoreReliabilityTests.json(try await send("GET", port: proxy.port, path: "/healthz").body))
    }

    /// Sends every prompt to the proxy on `port` and returns the cache status of each.
    private func outcomes(port: Int) async throws -> [String: String] {
        var outcomes: [String: String] = [:]
        for prompt in Self.prompts {
            outcomes[prompt] = try await send(port: port, path: path, body: generateBody(prompt), headers: key).header("x-gemcache")
        }
        return outcomes
    }

    @Test func theCommandCopiesEveryIntactAnswerOfAStoreLMDBCannotOpen() async throws {
        try await withTemporaryDirectory { dir in
            try await withMockUpstream { upstreamPort, recorder in
                let (store, aside) = (dir.path + "/store", dir.path + "/store.corrupt-20261207T120000Z")
                try await fill(store, upstreamPort: upstreamPort, directory: dir.path)
                try FileManager.default.moveItem(atPath: store, toPath: aside)
                try Self.damage(aside, answersTo: [Self.prompts[3]])

                let refused = try StoreReliabilityTests.runToExit(["salvage", aside, "--data", aside], directory: dir.path, environment: [:])
                #expect(refused.status == 1)
                #expect(refused.output.contains("is the store itself"))

                let salvage = try StoreReliabilityTests.runToExit(["salvage", aside, "--data", store], directory: dir.path, environment: [:])
                #expect(salvage.status == 0)
                #expect(salvage.output.contains("kept \(Self.prompts.count - 1) entries in \(store); skipped 1"))
                #expect(salvage.output.contains("1 damaged"))
                #expect(salvage.output.contains("adopted the salvaged store's scope salt"))

                let callsBefore = recorder.totalRequests
                let proxy = try await GemcacheProcess(
                    arguments: ["--upstream", "http://127.0.0.1:\(upstreamPort)", "--data", store],
                    directory: dir.path
                )
                let outcomes = try await outcomes(port: proxy.port)
                #expect(await proxy.stop() == 0)
                for prompt in Self.prompts {
                    #expect(outcomes[prompt] == (prompt == Self.prompts[3] ? "MISS" : "HIT"), "\(prompt)")
                }
                #expect(recorder.totalRequests == callsBefore + 1)
            }
        }
    }

    @Test func startUpSalvagesInAChildProcessAndSaysSo() async throws {
        try await withTemporaryDirectory { dir in
            try await withMockUpstream { upstreamPort, recorder in
                let store = dir.path + "/store"
                try await fill(store, upstreamPort: upstreamPort, directory: dir.path)
                try Self.damage(store, answersTo: [Self.prompts[0], Self.prompts[7]])

                let callsBefore = recorder.totalRequests
                let (proxy, health) = try await startSalvaging(store, upstreamPort: upstreamPort, directory: dir.path)
                #expect(health["store"] as? String == "recovered")
                let aside = try #require(health["moved_to"] as? String)
                let salvage = try #require(health["salvage"] as? [String: Any])
                #expect(salvage["state"] as? String == "done")
                #expect(salvage["from"] as? String == aside)
                #expect(salvage["kept"] as? Int == Self.prompts.count - 2)
                #expect(salvage["damaged"] as? Int == 2)
                #expect(salvage["skipped"] as? Int == 2)
                let stats = try StoreReliabilityTests.json(try await send("GET", port: proxy.port, path: "/_gemcache/stats").body)
                let reported = try #require(stats["store_salvage"] as? [String: Any])
                #expect(reported["kept"] as? Int == Self.prompts.count - 2)
                #expect(stats["entries"] as? Int == Self.prompts.count - 2)

                let outcomes = try await outcomes(port: proxy.port)
                #expect(await proxy.stop() == 0)
                for prompt in Self.prompts {
                    let damaged = prompt == Self.prompts[0] || prompt == Self.prompts[7]
                    #expect(outcomes[prompt] == (damaged ? "MISS" : "HIT"), "\(prompt)")
                }
                #expect(recorder.totalRequests == callsBefore + 2)
                #expect(proxy.log.contains("salvaged the moved-aside store"))
            }
        }
    }

    @Test func aSalvageThatFailsLeavesTheProxyServingFromAnEmptyStore() async throws {
        try await withTemporaryDirectory { dir in
            try await withMockUpstream { upstreamPort, _ in
                // Where the data file should be there is a folder: liblmdb cannot open it, nor can a salvage read it.
                let store = dir.path + "/store"
                try FileManager.default.createDirectory(atPath: store + "/data.mdb", withIntermediateDirectories: true)
                let (proxy, health) = try await startSalvaging(store, upstreamPort: upstreamPort, directory: dir.path)
                #expect(health["status"] as? String == "ok")
                let salvage = try #require(health["salvage"] as? [String: Any])
                #expect(salvage["state"] as? String == "failed")
                #expect((salvage["error"] as? String)?.contains("exited with status 1") == true)
                let body = generateBody("after a failed salvage")
                #expect(try await send(port: proxy.port, path: path, body: body, headers: key).header("x-gemcache") == "MISS")
                #expect(try await send(port: proxy.port, path: path, body: body, headers: key).header("x-gemcache") == "HIT")
                #expect(await proxy.stop() == 0)
                #expect(proxy.log.contains("salvage of the moved-aside store failed"))
            }
        }
    }
}
