import Foundation
import GemcacheKey
import GemcacheStore
import GemcacheTestSupport
import HTTPTypes
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Synchronization
import Testing

@testable import GemcacheCore

/// The fast-path handler on an embedded channel over a real store: what it answers itself, and that
/// everything else reaches the next handler byte for byte.
@Suite(.timeLimit(.minutes(1)))
struct FastPathHandlerTests {
    static let path = "/v1beta/models/gemini-2.5-flash:generateContent"
    static let body = #"{"contents":[{"parts":[{"text":"Why is the sky blue?"}]}]}"#
    static let answer = #"{"candidates":[{"content":{"parts":[{"text":"Rayleigh."}]},"finishReason":"STOP"}]}"#
    static let start: Int64 = 1_800_000_000_000

    final class Clock: Sendable {
        let milliseconds = Mutex<Int64>(FastPathHandlerTests.start)
        var now: @Sendable () -> Int64 { { self.milliseconds.withLock { $0 } } }
    }

    static func request(key: String = testKey, extraHeaders: String = "", body: String = body, path: String = path) -> String {
        "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nx-goog-api-key: \(key)\r\nContent-Type: application/json\r\n\(extraHeaders)"
            + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
    }

    /// A store holding one answer stored under the raw key of `request(key: credential)` (as the slow
    /// path leaves it): in the credential's partition, or in the shared one when `scope` is `.shared`.
    func withFastPath(
        credential: String = testKey,
        scope: ProxyConfiguration.ScopeSetting = .perKey,
        _ body: (EmbeddedChannel, FastPath, Clock, CacheKey) async throws -> Void
    ) async throws {
        try await withTemporaryDirectory { directory in
            let clock = Clock()
            var configuration = ProxyConfiguration.testing(upstreamURL: "http://127.0.0.1:1", dataDirectory: directory.path)
            configuration.cache.scope = scope
            let store = try await CacheStore.open(configuration: configuration.store, scopeSalt: nil, logger: quietLogger, now: clock.now)
            let key = CacheKey(hex: Digest.hex(Digest.sha256(Array("entry".utf8))))!
            let entry = CacheEntry(
                status: 200,
                headerBlock: CacheEntry.headerBlock([("Content-Type", "application/json; charset=UTF-8")]),
                body: Array(Self.answer.utf8),
                storedAt: Self.start - 5000,
                expiresAt: Self.start + 60_000,
                model: "gemini-2.5-flash",
                namespace: nil,
                endpoint: "generateContent",
                promptTokens: 3,
                totalTokens: 10,
                scope: .perKey
            )
            let rawKey = RawKeyHasher(normalize: configuration.cache.normalize).key(
                target: Array(Self.path.utf8),
                scope: Array((scope == .shared ? "shared" : scopeTag(credential: credential, salt: store.scopeSalt)).utf8),
                namespace: nil,
                body: Array(Self.body.utf8)
            )
            #expect(await store.store(entry, for: key, alias: rawKey))
            let fastPath = FastPath.over(store, configuration: configuration, now: clock.now)
            let handler = FastPathHandler(fastPath: fastPath)
            let channel = EmbeddedChannel()
            try channel.pipeline.syncOperations.addHandlers([handler, FastPathResponseCounter(handler)])
            try await body(channel, fastPath, clock, key)
            _ = try? channel.finish()
            await store.close()
        }
    }

    private func send(_ text: String, to channel: EmbeddedChannel) throws -> (answer: String?, passed: String?) {
        try channel.writeInbound(ByteBuffer(string: text))
        var passed: String?
        while let part: ByteBuffer = try channel.readInbound() { passed = (passed ?? "") + String(buffer: part) }
        let answer: ByteBuffer? = try channel.readOutbound()
        return (answer.map { String(buffer: $0) }, passed)
    }

    @Test func answersAByteIdenticalRepeatWithTheSlowPathsHeaders() async throws {
        try await withFastPath { channel, fastPath, _, key in
            let (answer, passed) = try send(Self.request(), to: channel)
            #expect(passed == nil)
            #expect(fastPath.hits == 1)
            let expected =
                "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=UTF-8\r\nAge: 5\r\nX-Gemcache: HIT\r\n"
                + "X-Gemcache-Key: \(key.hex)\r\nCache-Status: gemcache; hit; ttl=60; key=\"\(key.hex)\"\r\n"
                + "Content-Length: \(Self.answer.utf8.count)\r\nDate: Fri, 15 Jan 2027 08:00:00 GMT\r\n\r\n\(Self.answer)"
            #expect(answer == expected)
        }
    }

    /// A key of the newer `AQ.` form (longer, with `.`, `-`, `_`) is answered like an `AIza` key, from
    /// its own partition: another key of the form goes to the slow path.
    @Test(arguments: [classicFormKey, newerFormKey])
    func keysOfEitherFormAreAnsweredFromTheirOwnPartition(credential: String) async throws {
        try await withFastPath(credential: credential) { channel, fastPath, _, _ in
            let (answer, _) = try send(Self.request(key: credential), to: channel)
            #expect(answer?.hasPrefix("HTTP/1.1 200 OK\r\n") == true)
            #expect(fastPath.hits == 1)
            let other = Self.request(key: String(credential.dropLast()) + "Z")
            let (_, passed) = try send(other, to: channel)
            #expect(passed == other)
            #expect(fastPath.hits == 1)
        }
    }

    /// The one credential may be in `x-goog-api-key`, `?key=` (or `access_token`, `oauth_token`) or
    /// `Authorization: Bearer`: the same raw key, so the same entry, and no credential is hashed.
    @Test(arguments: [
        "POST \(path)?key=\(testKey) HTTP/1.1\r\n",
        "POST \(path)?ACCESS_TOKEN=\(testKey)& HTTP/1.1\r\n",
        "POST \(path) HTTP/1.1\r\nAuthorization: bearer  \(testKey)\r\n",
    ])
    func theCredentialIsReadFromAnyOfItsPlaces(start: String) async throws {
        try await withFastPath { channel, fastPath, _, _ in
            let request = start + "Content-Length: \(Self.body.utf8.count)\r\n\r\n\(Self.body)"
            let (answer, passed) = try send(request, to: channel)
            #expect(passed == nil && answer?.hasPrefix("HTTP/1.1 200 OK\r\n") == true && fastPath.hits == 1)
        }
    }

    /// Shared scope: an answer stored for everyone is served on the fast path only to a credential
    /// the upstream accepted lately; an unverified one, byte-identical repeat or new bytes, goes to the
    /// slow path (which verifies it upstream) and learns nothing here.
    @Test func sharedScopeAnswersOnlyACredentialTheUpstreamAccepted() async throws {
        try await withFastPath(scope: .shared) { channel, fastPath, _, _ in
            let canonical = try BodyNormalizer.normalize(Array(Self.body.utf8), level: fastPath.normalize, dialect: .gemini)
            let key = RequestKey.key(
                route: try #require(try CachedRoute(method: .post, path: Self.path)),
                query: [],
                scope: "shared",
                namespace: nil,
                canonical: canonical,
                fieldMask: nil
            )
            let stored = try #require(try fastPath.store.lookup(CacheKey(hex: Digest.hex(Digest.sha256(Array("entry".utf8))))!))
            #expect(await fastPath.store.store(stored, for: key))
            let variant = Self.request(body: #"{ "contents": [{"parts": [{"text": "Why is the sky blue?"}]}]}"#)

            for request in [Self.request(), variant] {
                // A connection of its own: the handler answers nothing more on one it passed a request on
                // until the slow path's answer has gone out.
                let fresh = EmbeddedChannel(handler: FastPathHandler(fastPath: fastPath))
                let (answer, passed) = try send(request, to: fresh)
                #expect(answer == nil && passed == request)
                _ = try? fresh.finish()
            }
            #expect(fastPath.hits == 0)

            fastPath.access.recordAccepted(credentialTag: scopeTag(credential: testKey, salt: fastPath.store.scopeSalt))
            for request in [Self.request(), variant] {
                let (answer, passed) = try send(request, to: channel)
                #expect(passed == nil && answer?.hasPrefix("HTTP/1.1 200 OK\r\n") == true)
            }
            #expect(fastPath.hits == 2)
            let other = Self.request(key: String(testKey.dropLast()) + "Z")
            let (_, passed) = try send(other, to: channel)
            #expect(passed == other && fastPath.hits == 2)
        }
    }

    @Test func aRequestSplitAcrossReadsIsAnsweredOnceComplete() async throws {
        try await withFastPath { channel, fastPath, _, _ in
            let request = Self.request()
            let cut = request.index(request.startIndex, offsetBy: 40)
            let first = try send(String(request[..<cut]), to: channel)
            #expect(first.answer == nil && first.passed == nil)
            let (answer, passed) = try send(String(request[cut...]), to: channel)
            #expect(passed == nil && answer?.hasPrefix("HTTP/1.1 200 OK\r\n") == true && fastPath.hits == 1)
        }
    }

    @Test(arguments: [
        FastPathHandlerTests.request(key: "another-key"),
        FastPathHandlerTests.request(extraHeaders: "Cache-Control: no-cache\r\n"),
        FastPathHandlerTests.request(extraHeaders: "X-Gemcache-Namespace: team-a\r\n"),
        FastPathHandlerTests.request(extraHeaders: "X-Gemcache-TTL: 5\r\n"),
        FastPathHandlerTests.request(extraHeaders: "Connection: close\r\n"),
        FastPathHandlerTests.request(body: FastPathHandlerTests.body + " "),
        // Two credentials (the slow path's 400), in a header and the query or in two headers, even if equal.
        FastPathHandlerTests.request(path: "/v1beta/models/gemini-2.5-flash:generateContent?key=x"),
        FastPathHandlerTests.request(path: "/v1beta/models/gemini-2.5-flash:generateContent?key=\(testKey)"),
        FastPathHandlerTests.request(extraHeaders: "Authorization: Bearer \(testKey)\r\n"),
        FastPathHandlerTests.request(extraHeaders: "Authorization: Basic dTpw\r\n"),
        FastPathHandlerTests.request().replacingOccurrences(of: "POST", with: "PUT"),
        FastPathHandlerTests.request(path: "/v1beta/models/gemini-2.5-flash:batchEmbedContents"),
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        FastPathHandlerTests.request().replacingOccurrences(of: "HTTP/1.1", with: "HTTP/1.0"),
    ])
    func everythingElseReachesTheSlowPathUnchanged(request: String) async throws {
        try await withFastPath { channel, fastPath, _, _ in
            let (answer, passed) = try send(request, to: channel)
            #expect(answer == nil && passed == request && fastPath.hits == 0)
        }
    }

    /// New bytes of a stored request are keyed from their parts and answered, and their alias recorded
    /// for the next repeat; what the slow path must judge (no JSON, a system parameter the proxy does
    /// not know, a body too large to key on the loop) is passed on.
    @Test func newBytesAreKeyedFromTheirPartsAndTheirAliasRecorded() async throws {
        try await withFastPath { channel, fastPath, _, _ in
            let canonical = try BodyNormalizer.normalize(Array(Self.body.utf8), level: fastPath.normalize, dialect: .gemini)
            let key = RequestKey.key(
                route: try #require(try CachedRoute(method: .post, path: Self.path)),
                query: [],
                scope: scopeTag(credential: testKey, salt: fastPath.store.scopeSalt),
                namespace: nil,
                canonical: canonical,
                fieldMask: nil
            )
            let stored = try #require(try fastPath.store.lookup(CacheKey(hex: Digest.hex(Digest.sha256(Array("entry".utf8))))!))
            #expect(await fastPath.store.store(stored, for: key))

            let variant = #"{ "contents": [{"parts": [{"text": "Why is the sky blue?"}]}]}"#
            let (answer, passed) = try send(Self.request(body: variant), to: channel)
            #expect(passed == nil && answer?.contains("X-Gemcache-Key: \(key.hex)\r\n") == true && fastPath.hits == 1)
            await GeminiProxy.aliasWritesLanded()
            let rawKey = RawKeyHasher(normalize: fastPath.normalize).key(
                target: Array(Self.path.utf8),
                scope: Array(scopeTag(credential: testKey, salt: fastPath.store.scopeSalt).utf8),
                namespace: nil,
                body: Array(variant.utf8)
            )
            #expect(fastPath.store.aliasedKey(rawKey) == key)

            let padding = String(repeating: " ", count: KeyingPool.inlineLimit)
            for request in [
                Self.request(body: "{\"contents\": [}"),
                Self.request(path: Self.path + "?$unknown=1"),
                Self.request(body: variant.dropLast() + padding + "}"),
            ] {
                let (answer, passed) = try send(request, to: channel)
                #expect(answer == nil && passed == request)
            }
            #expect(fastPath.hits == 1)
        }
    }

    /// Only a request the fast path may answer waits for its whole body: any other is passed on as it
    /// arrives (an upstream may answer it before the body is complete).
    @Test func aRequestItDoesNotLookUpIsPassedOnBeforeItsBodyArrives() async throws {
        try await withFastPath { channel, _, _, _ in
            let start = "POST /v1beta/models/gemini-2.5-flash:batchEmbedContents HTTP/1.1\r\nx-goog-api-key: k\r\nContent-Length: 100\r\n\r\n{"
            let (answer, passed) = try send(start, to: channel)
            #expect(answer == nil && passed == start)
        }
    }

    @Test func theHandlersBehindHearOnlyOfTheReadsPassedOn() async throws {
        try await withFastPath { channel, fastPath, _, _ in
            let behind = ReadCompleteCounter()
            try channel.pipeline.syncOperations.addHandler(behind)
            #expect(try send(Self.request(), to: channel).answer != nil)
            #expect(fastPath.hits == 1 && behind.readCompletes == 0, "a read of hits alone stays in the fast path")
            #expect(try send(Self.request(key: "another-key"), to: channel).passed != nil)
            #expect(behind.readCompletes == 1)
        }
    }

    @Test func anExpiredEntryIsLeftToTheSlowPath() async throws {
        try await withFastPath { channel, fastPath, clock, _ in
            clock.milliseconds.withLock { $0 += 60_000 }
            let (answer, passed) = try send(Self.request(), to: channel)
            #expect(answer == nil && passed == Self.request() && fastPath.hits == 0)
        }
    }

    /// A record that does not validate (here: each damage of ``RecordSamples``) is never
    /// written out: the request goes to the slow path, whose read misses it too.
    @Test(arguments: RecordSamples.damaged.indices)
    func aDamagedRecordIsLeftToTheSlowPath(index: Int) async throws {
        try await withFastPath { channel, fastPath, _, key in
            // The damaged entries are fresh at the handler's clock (stored at `start`, expiring a minute later).
            #expect(await fastPath.store.store(RecordSamples.damaged[index].1, for: key))
            let (answer, passed) = try send(Self.request(), to: channel)
            #expect(answer == nil && passed == Self.request() && fastPath.hits == 0, "\(RecordSamples.damaged[index].0)")
            #expect(try fastPath.store.lookup(key) == nil)
        }
    }

    @Test func answersNeverOvertakeAPassedOnRequest() async throws {
        try await withFastPath { channel, fastPath, _, _ in
            let slow = Self.request(key: "another-key")
            let (answer, passed) = try send(slow + Self.request(), to: channel)
            #expect(answer == nil && passed == slow + Self.request() && fastPath.hits == 0)
            // Hummingbird answers both; then the fast path takes over again.
            try channel.writeOutbound(HTTPServerResponsePart.end(nil))
            try channel.writeOutbound(HTTPServerResponsePart.end(nil))
            while let _: HTTPServerResponsePart = try channel.readOutbound() {}
            let again = try send(Self.request(), to: channel)
            #expect(again.answer != nil && fastPath.hits == 1)
        }
    }

    @Test func framingItDoesNotFollowHandsTheConnectionToTheDecoder() async throws {
        try await withFastPath { channel, fastPath, _, _ in
            let chunked = "POST \(Self.path) HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            let first = try send(chunked, to: channel)
            #expect(first.answer == nil && first.passed == chunked)
            let second = try send(Self.request(), to: channel)
            #expect(second.answer == nil && second.passed == Self.request())
            #expect(fastPath.hits == 0)
        }
    }
}

extension FastPath {
    /// A fast path over `store` with the ledger and access control of `configuration` (no proxy tokens).
    static func over(_ store: CacheStore, configuration: ProxyConfiguration, now: @escaping @Sendable () -> Int64) -> FastPath {
        FastPath(
            configuration: configuration,
            store: store,
            ledger: Ledger(store: store, configuration: configuration),
            access: AccessControl(configuration: configuration, clientTokens: []),
            now: now
        )
    }
}

/// Counts the read-complete events that reach it.
final class ReadCompleteCounter: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private(set) var readCompletes = 0

    func channelReadComplete(context: ChannelHandlerContext) {
        readCompletes += 1
        context.fireChannelReadComplete()
    }
}
