import Foundation
import GemcacheCore
import GemcacheTestSupport
import GeminiMock
import HTTPTypes
import HummingbirdWSClient
import InMemoryLogging
import Logging
import NIOCore
import NIOSSL
import NIOWebSocket
import Synchronization
import Testing

/// The Live API through the proxy (SPEC §2): a real WebSocket client, the proxy, and the mock's Live
/// endpoint, frames relayed both ways as they come, never cached.
@Suite(.timeLimit(.minutes(1)))
struct LiveEndToEndTests {
    static let livePath = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
    static let setup = #"{"setup": {"model": "models/gemini-2.0-flash-live-001"}}"#

    /// Runs a session against `url`; `body` gets the frame iterator and the writer.
    static func session(
        _ url: String,
        headers: HTTPFields = [:],
        tls: TLSConfiguration? = nil,
        _ body: @escaping @Sendable (inout WebSocketInboundStream.AsyncIterator, WebSocketOutboundWriter) async throws -> Void
    ) async throws -> WebSocketCloseFrame? {
        let configuration = WebSocketClientConfiguration(maxFrameSize: 1 << 20, additionalHeaders: headers)
        return try await WebSocketClient.connect(url: url, configuration: configuration, tlsConfiguration: tls, logger: quietLogger) {
            inbound,
            outbound,
            _ in
            var frames = inbound.makeAsyncIterator()
            try await body(&frames, outbound)
        }
    }

    /// Opens a session, sends the setup and expects `setupComplete` back; returns how the session closed.
    static func setUp(_ url: String, headers: HTTPFields = [:], tls: TLSConfiguration? = nil) async throws -> WebSocketCloseFrame? {
        try await Self.session(url, headers: headers, tls: tls) { frames, outbound in
            try await outbound.write(.text(setup))
            let setupComplete = try #require(try await frames.next())
            #expect(String(buffer: setupComplete.data) == #"{"setupComplete": {}}"#)
        }
    }

    @Test func framesAreRelayedBothWaysAsTheyComeAndTheUpstreamsCloseReachesTheClient() async throws {
        let key = "live-key-c0ffee-9137"
        let logs = InMemoryLogHandler()
        var logger = Logger(label: "gemcache.test", factory: { _ in logs })
        logger.logLevel = .trace
        try await withProxyBehindMock(logger: logger) { port, recorder, directory in
            let closed = try await Self.session("ws://127.0.0.1:\(port)\(Self.livePath)?key=\(key)") { frames, outbound in
                try await outbound.write(.text(Self.setup))
                let setupComplete = try #require(try await frames.next())
                #expect(setupComplete.opcode == .binary, "binary stays binary")
                #expect(String(buffer: setupComplete.data) == #"{"setupComplete": {}}"#)

                // A text message in two fragments reaches the upstream as one message.
                try await outbound.withTextMessageWriter { write in
                    try await write(#"{"clientContent": {"turns": [{"parts": [{"text": "frag"#)
                    try await write(#"mented"}]}], "turnComplete": true}}"#)
                }
                let reply = try #require(try await frames.next())
                #expect(reply.opcode == .text, "text stays text")
                #expect(String(buffer: reply.data).contains("Echo: fragmented"))
                let turnComplete = try #require(try await frames.next())
                #expect(String(buffer: turnComplete.data).contains("turnComplete"))

                let audio = ByteBuffer(bytes: (0..<50_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
                try await outbound.write(.binary(audio))
                let echoed = try #require(try await frames.next())
                #expect(echoed.opcode == .binary && echoed.data == audio)

                // Text that is not JSON: the upstream closes with 1007 and its reason.
                try await outbound.write(.text("this is not JSON"))
                #expect(try await frames.next() == nil)
            }
            #expect(closed?.closeCode == .dataInconsistentWithMessage)
            #expect(closed?.reason == "Invalid JSON payload received.")
            #expect(recorder.requests(path: Self.livePath) == 1)
            #expect(recorder.lastHeaders["x-goog-api-key"] == nil, "the key stays where the client put it")

            // Nothing was stored or counted as a cached request; the key reached no log and no file.
            let document = try await statsDocument(port: port)
            #expect(document["requests"] as? Int == 0)
            #expect(document["entries"] as? Int == 0)
            let logged = logs.entries.map { "\($0.message) \($0.metadata)" }.joined(separator: "\n")
            #expect(!logged.contains(key))
            #expect(directory.allBytes().firstRange(of: Array(key.utf8)) == nil)
        }
    }

    @Test func theUpgradeCarriesPassAndOnlyLivePathsUpgrade() async throws {
        try await withProxyBehindMock { port, recorder, _ in
            let open = Mutex<[RawConnection]>([])  // kept open until the end: each relay opens its upstream session
            func upgrade(_ target: String, credential: String = "x-goog-api-key: \(testKey)\r\n") async throws -> String {
                let connection = try RawConnection(port: port)
                open.withLock { $0.append(connection) }
                connection.send(
                    "GET \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\(credential)\r\n"
                )
                return await connection.readHead(timeout: .seconds(5))
            }
            let live = try await upgrade(Self.livePath)
            #expect(live.hasPrefix("HTTP/1.1 101"), "\(live)")
            #expect(live.lowercased().contains("x-gemcache: pass"))
            #expect(live.lowercased().contains("cache-status: gemcache; fwd=bypass"))
            let alpha = try await upgrade(
                "/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContentConstrained?access_token=t",
                credential: ""
            )
            #expect(alpha.hasPrefix("HTTP/1.1 101"), "\(alpha)")

            for target in ["/v1beta/models", "/ws/google.ai.generativelanguage.v1beta.GenerativeService.Other", "/ws/../v1beta/models"] {
                let refused = try await upgrade(target)
                #expect(refused.hasPrefix("HTTP/1.1 400"), "\(target): \(refused)")
            }
            // Real time is the subject: a refused upgrade must not reach the upstream, which only a wait shows.
            try await Task.sleep(for: .milliseconds(200))
            #expect(recorder.requests(path: Self.livePath) == 1)
            #expect(recorder.requests(path: "/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContentConstrained") == 1)
            #expect(recorder.totalRequests == 2, "only the two Live upgrades reached the upstream")
        }
    }

    @Test func managedModeChecksTheProxyTokenAndSendsItsOwnKey() async throws {
        let environment = ["GEMINI_API_KEY": "upstream-secret-1", "GEMCACHE_CLIENT_TOKENS": "team-token"]
        let mock = MockUpstreamConfiguration(validKeys: ["upstream-secret-1"])
        try await withProxyBehindMock(mock, environment: environment, configure: { $0.auth.mode = .managed }) { port, recorder, _ in
            // The SDK sends the key as a header.
            let accepted = try await Self.setUp("ws://127.0.0.1:\(port)\(Self.livePath)", headers: [HTTPField.Name("x-goog-api-key")!: "team-token"])
            #expect(accepted?.closeCode == .normalClosure)
            #expect(recorder.lastHeaders["x-goog-api-key"] == "upstream-secret-1")

            let before = recorder.totalRequests
            let refused = try await Self.session("ws://127.0.0.1:\(port)\(Self.livePath)?key=not-a-token") { frames, _ in
                let next = try await frames.next()
                #expect(next == nil)
            }
            #expect(refused?.closeCode == .policyViolation)
            #expect(refused?.reason?.contains("invalid authentication credentials") == true)
            #expect(recorder.totalRequests == before, "a refused client never reaches the upstream")
        }
    }

    @Test func anUpstreamThatCannotBeReachedClosesTheSessionWithAReason() async throws {
        try await withTemporaryDirectory { directory in
            let (socket, deadPort) = try listenOnLoopback()
            close(socket)
            let configuration = ProxyConfiguration.testing(upstreamURL: "http://127.0.0.1:\(deadPort)", dataDirectory: directory.path)
            try await withProxy(configuration) { port in
                let closed = try await Self.session("ws://127.0.0.1:\(port)\(Self.livePath)?key=\(testKey)") { frames, _ in
                    let next = try await frames.next()
                    #expect(next == nil)
                }
                #expect(closed?.closeCode == .unexpectedServerError)
                #expect(closed?.reason?.contains("upstream Live API") == true)
            }
        }
    }
}
