import Foundation
import GemcacheCore
import GemcacheStore
import GemcacheTestSupport
import GeminiMock
import Testing

/// The shared PostgreSQL tier behind the local LMDB store (issue 9), against a real PostgreSQL server:
/// instances with separate stores answer each other's entries, coalesce across the cluster, add up
/// their counters, and keep serving while PostgreSQL is down.
@Suite(.serialized) struct SharedTierTests {
    static let path = "/v1beta/models/gemini-2.5-flash:generateContent"
    /// Passthrough mode keys per client key; instances that share entries share the salt (SPEC §3).
    static let environment = ["GEMCACHE_SCOPE_SALT": "a-salt-both-instances-know", "GEMCACHE_ADMIN_TOKEN": "admin-secret"]
    static let key = ["x-goog-api-key": testKey]

    /// Two proxies on one mock upstream, each with its own store, both on `postgres`'s shared tier,
    /// once both report the tier healthy.
    static func withTwoInstances<R: Sendable>(
        _ postgres: PostgresServer,
        mock: MockUpstreamConfiguration = .init(),
        _ body: @Sendable (_ first: Int, _ second: Int, _ recorder: MockUpstreamRecorder) async throws -> R
    ) async throws -> R {
        try await withTemporaryDirectory { dir in
            try await withMockUpstream(mock) { upstreamPort, recorder in
                let configurations = ["first", "second"].map { name in
                    var configuration = ProxyConfiguration.testing(
                        upstreamURL: "http://127.0.0.1:\(upstreamPort)",
                        dataDirectory: dir.path + "/" + name
                    )
                    configuration.store.shared = postgres.url
                    return configuration
                }
                return try await withProxy(configurations[0], environment: environment) { first in
                    try await withProxy(configurations[1], environment: environment) { second in
                        for port in [first, second] { #expect(try await sharedState(port, becomes: "ok") == "ok") }
                        return try await body(first, second, recorder)
                    }
                }
            }
        }
    }

    /// As ``withTwoInstances(_:mock:_:)``, without a socket (but PostgreSQL's): the proxies answer through
    /// their routers, the mock in process, and both proxies read one ``ManualClock``.
    static func withTwoInProcessInstances<R: Sendable>(
        _ postgres: PostgresServer,
        _ body: @Sendable (_ first: InProcessProxy, _ second: InProcessProxy, _ recorder: MockUpstreamRecorder) async throws -> R
    ) async throws -> R {
        try await withTemporaryDirectory { dir in
            let recorder = MockUpstreamRecorder()
            let upstream = InProcessUpstream(recorder: recorder)
            let clock = ManualClock()
            let configurations = ["first", "second"].map { name in
                var configuration = ProxyConfiguration.testing(upstreamURL: InProcessUpstream.url, dataDirectory: dir.path + "/" + name)
                configuration.store.shared = postgres.url
                return configuration
            }
            return try await withInProcessProxy(configurations[0], upstream: upstream, clock: clock, environment: environment) { first in
                try await withInProcessProxy(configurations[1], upstream: upstream, clock: clock, environment: environment) { second in
                    for proxy in [first, second] {
                        #expect(try await sharedState(becomes: "ok") { try await proxy.send("GET", path: "/healthz") } == "ok")
                    }
                    return try await body(first, second, recorder)
                }
            }
        }
    }

    /// `/healthz`'s `shared` field once it reads `wanted`, or the last one read after about 10 s.
    static func sharedState(_ port: Int, becomes wanted: String) async throws -> String? {
        try await sharedState(becomes: wanted) { try await send("GET", port: port, path: "/healthz") }
    }

    /// The `shared` field of the `/healthz` answers `health` gets once it reads `wanted`, or the last one
    /// read after about 10 s.
    static func sharedState(becomes wanted: String, health: () async throws -> TestResponse) async throws -> String? {
        var state: String?
        for _ in 0..<200 {
            let health = try await health()
            #expect(health.status == 200, "a degraded shared tier never fails the instance")
            state = (try JSONSerialization.jsonObject(with: Data(health.body.utf8)) as? [String: Any])?["shared"] as? String
            if state == wanted { break }
            // Real time is the subject: the tier connects to a real PostgreSQL server in the background.
            try await Task.sleep(for: .milliseconds(50))
        }
        return state
    }

    static func sharedTier(_ stats: [String: Any]) -> [String: Any] { stats["shared_tier"] as? [String: Any] ?? [:] }

    @Test func instancesAnswerEachOthersEntriesWithOneUpstreamCall() async throws {
        try await withPostgres { postgres in
            try await Self.withTwoInstances(postgres) { first, second, recorder in
                let body = generateBody("asked on the first instance")
                let miss = try await send(port: first, path: Self.path, body: body, headers: Self.key)
                #expect(miss.header("x-gemcache") == "MISS")
                let shared = try await send(port: second, path: Self.path, body: body, headers: Self.key)
                #expect(shared.header("x-gemcache") == "HIT")
                #expect(shared.body == miss.body)
                #expect(recorder.totalRequests == 1)
                // The second instance keeps a local copy (written in the background, so wait for it):
                // its next answer does not ask PostgreSQL again.
                let copied = try await statsDocument(port: second) { $0["entries"] as? Int == 1 }
                #expect(copied["entries"] as? Int == 1)
                let local = try await send(port: second, path: Self.path, body: body, headers: Self.key)
                #expect(local.header("x-gemcache") == "HIT")
                let secondStats = try await statsDocument(port: second)
                #expect(Self.sharedTier(secondStats)["hits"] as? Int == 1)
                #expect(Self.sharedTier(secondStats)["status"] as? String == "ok")

                // Another client key gets nothing of it: the shared tier keeps the per-key scope.
                let otherKey = try await send(port: second, path: Self.path, body: body, headers: ["x-goog-api-key": "another-test-key"])
                #expect(otherKey.header("x-gemcache") == "MISS")
                #expect(recorder.totalRequests == 2)

                // Either instance's stats add up both: 4 requests, 2 hits, 2 misses, 2 upstream calls.
                for port in [first, second] {
                    let stats = try await statsDocument(port: port) {
                        $0["requests"] as? Int == 4 && $0["hits"] as? Int == 2 && $0["misses"] as? Int == 2 && $0["upstream_requests"] as? Int == 2
                    }
                    #expect(stats["requests"] as? Int == 4)
                    #expect(stats["hits"] as? Int == 2)
                    #expect(stats["misses"] as? Int == 2)
                    #expect(stats["upstream_requests"] as? Int == 2)
                    #expect(Self.sharedTier(stats)["counters"] as? String == "cluster")
                }
            }
        }
    }

    /// Issue 18 item 2: a row whose bytes changed in PostgreSQL is a miss, counted as `damaged`.
    @Test func aDamagedRowIsAMissCountedAndReplaced() async throws {
        try await withPostgres { postgres in
            try await Self.withTwoInProcessInstances(postgres) { first, second, recorder in
                let body = generateBody("a row damaged in PostgreSQL")
                let miss = try await first.send(path: Self.path, body: body, headers: Self.key)
                #expect(miss.header("x-gemcache") == "MISS")
                try await postgres.execute(
                    "UPDATE gemcache_entries SET record = set_byte(record, length(record) - 2, get_byte(record, length(record) - 2) # 1)"
                )
                let again = try await second.send(path: Self.path, body: body, headers: Self.key)
                #expect(again.header("x-gemcache") == "MISS")
                #expect(again.body == miss.body)
                #expect(recorder.totalRequests == 2)
                // The stats are the cluster's, which the instances' counters reach every second.
                var damaged: Int?
                for _ in 0..<100 where damaged != 1 {
                    let stats = try JSONSerialization.jsonObject(with: Data(try await second.send("GET", path: "/_gemcache/stats").body.utf8))
                    damaged = (stats as? [String: Any])?["damaged"] as? Int
                    // Real time is the subject: the counters' flush runs on a timer.
                    if damaged != 1 { try await Task.sleep(for: .milliseconds(50)) }
                }
                #expect(damaged == 1)
            }
        }
    }

    @Test func concurrentIdenticalMissesOnTwoInstancesMakeOneUpstreamCall() async throws {
        try await withPostgres { postgres in
            try await Self.withTwoInstances(postgres, mock: .init(latency: .milliseconds(400))) { first, second, recorder in
                let body = generateBody("everyone at once")
                let answers = try await withThrowingTaskGroup(of: TestResponse.self) { group in
                    for port in [first, first, second, second, second] {
                        group.addTask { try await send(port: port, path: Self.path, body: body, headers: Self.key) }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                #expect(recorder.totalRequests == 1)
                #expect(Set(answers.map(\.body)).count == 1)
                #expect(answers.allSatisfy { $0.status == 200 })
                #expect(answers.map { $0.header("x-gemcache") ?? "" }.sorted() == ["COALESCED", "COALESCED", "COALESCED", "COALESCED", "MISS"])
            }
        }
    }

    @Test func aStoppedPostgresDegradesAndRecovers() async throws {
        try await withPostgres { postgres in
            try await Self.withTwoInstances(postgres) { first, second, recorder in
                let before = generateBody("stored in both tiers")
                #expect(try await send(port: first, path: Self.path, body: before, headers: Self.key).header("x-gemcache") == "MISS")

                try await postgres.stop()
                // Still serving: local hits, and misses through upstream (the tier's timeout is its bound).
                let during = generateBody("asked while PostgreSQL is down")
                let miss = try await send(port: first, path: Self.path, body: during, headers: Self.key)
                #expect(miss.status == 200)
                #expect(miss.header("x-gemcache") == "MISS")
                #expect(try await send(port: first, path: Self.path, body: during, headers: Self.key).header("x-gemcache") == "HIT")
                #expect(try await send(port: first, path: Self.path, body: before, headers: Self.key).header("x-gemcache") == "HIT")
                #expect(try await Self.sharedState(first, becomes: "degraded") == "degraded")
                let degraded = try await statsDocument(port: first)
                #expect(Self.sharedTier(degraded)["status"] as? String == "degraded")
                #expect(Self.sharedTier(degraded)["counters"] as? String == "local")
                #expect(recorder.totalRequests == 2)

                try await postgres.start()
                for port in [first, second] { #expect(try await Self.sharedState(port, becomes: "ok") == "ok") }
                // The entry written before the outage is there for the other instance; new ones are shared again.
                #expect(try await send(port: second, path: Self.path, body: before, headers: Self.key).header("x-gemcache") == "HIT")
                let after = generateBody("asked after the recovery")
                #expect(try await send(port: first, path: Self.path, body: after, headers: Self.key).header("x-gemcache") == "MISS")
                #expect(try await send(port: second, path: Self.path, body: after, headers: Self.key).header("x-gemcache") == "HIT")
                #expect(recorder.totalRequests == 3)
                // The counts made during the outage reach the cluster's counters once it is back: 7 requests in all.
                let stats = try await statsDocument(port: second) { $0["requests"] as? Int == 7 && $0["upstream_requests"] as? Int == 3 }
                #expect(stats["requests"] as? Int == 7)
                #expect(stats["upstream_requests"] as? Int == 3)
            }
        }
    }

    @Test func expiredEntriesAreNeverServedFromTheSharedTierAndPurgeReachesIt() async throws {
        try await withPostgres { postgres in
            try await Self.withTwoInProcessInstances(postgres) { first, second, recorder in
                let brief = generateBody("kept for one second")
                let stored = try await first.send(path: Self.path, body: brief, headers: Self.key.merging(["x-gemcache-ttl": "1"]) { $1 })
                #expect(stored.header("x-gemcache") == "MISS")
                first.clock.advance(by: .milliseconds(1001))
                #expect(try await second.send(path: Self.path, body: brief, headers: Self.key).header("x-gemcache") == "MISS")
                #expect(recorder.totalRequests == 2)

                let purged = generateBody("purged everywhere")
                let answer = try await first.send(path: Self.path, body: purged, headers: Self.key)
                let key = try #require(answer.header("x-gemcache-key"))
                let purge = try await first.send(
                    path: "/_gemcache/purge",
                    body: #"{"key": "\#(key)"}"#,
                    headers: ["authorization": "Bearer admin-secret"]
                )
                #expect(purge.status == 200)
                let result = try #require(try JSONSerialization.jsonObject(with: Data(purge.body.utf8)) as? [String: Any])
                #expect(result["deleted"] as? Int == 1)
                #expect(result["shared_deleted"] as? Int == 1)
                #expect(try await second.send(path: Self.path, body: purged, headers: Self.key).header("x-gemcache") == "MISS")
            }
        }
    }
}
