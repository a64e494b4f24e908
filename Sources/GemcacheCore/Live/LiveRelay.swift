import HTTPTypes
import HummingbirdWSClient
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOWebSocket

/// Relays Live API sessions (SPEC §2): the WebSocket upgrade of
/// `/ws/google.ai.generativelanguage.{v1alpha,v1beta}.GenerativeService.BidiGenerateContent` (and
/// `…Constrained`) to the same path on the configured upstream (`https` → `wss`), then every frame
/// both ways as it comes: text stays text, binary stays binary, fragments stay fragments, and the
/// upstream's close code and reason reach the client. Never cached; the 101 carries
/// `X-Gemcache: PASS`.
///
/// The credential travels as the client sent it (passthrough) or is replaced by one of the proxy's
/// keys as `x-goog-api-key` (managed); the URL that holds it never reaches a log line.
struct LiveRelay: Sendable {
    let access: AccessControl
    let upstream: UpstreamClient
    let logger: Logger

    /// The largest frame relayed either way. Live messages carry base64 audio and video chunks, far
    /// above WebSocket libraries' 16 KiB default; each frame is held whole while it passes.
    static let maxFrameSize = 16 << 20

    private static let pathPrefix = "/ws/google.ai.generativelanguage."
    private static let methods: Set<Substring> = [
        "v1alpha.GenerativeService.BidiGenerateContent", "v1alpha.GenerativeService.BidiGenerateContentConstrained",
        "v1beta.GenerativeService.BidiGenerateContent", "v1beta.GenerativeService.BidiGenerateContentConstrained",
    ]

    /// Whether `path` (without the query) is a Live API endpoint.
    static func isLivePath(_ path: String) -> Bool {
        path.hasPrefix(pathPrefix) && methods.contains(path.dropFirst(pathPrefix.count))
    }

    /// Client headers that travel upstream with the upgrade: identification and, in passthrough
    /// mode, the credential's (``Credential/headerNames``). The upgrade's own headers are the WebSocket client's.
    private static let forwardedHeaders: [HTTPField.Name] = [.userAgent, .googAPIClient, .googUserProject]

    /// The answer to an upgrade request: a relay for a Live path, a refusal (400) for anything else.
    func shouldUpgrade(_ request: HTTPRequest) -> ShouldUpgradeResult<WebSocketDataHandler<HTTP1WebSocketUpgradeChannel.Context>> {
        guard let target = try? UpstreamTarget(request.path ?? ""), Self.isLivePath(target.path) else { return .dontUpgrade }
        let headers: HTTPFields = [.gemcache: "PASS", .cacheStatus: "gemcache; fwd=bypass"]
        return .upgrade(headers) { inbound, outbound, _ in
            await relay(target: target, request: request, client: (inbound, outbound))
        }
    }

    /// Opens the upstream session and relays until either side closes.
    private func relay(
        target: UpstreamTarget,
        request: HTTPRequest,
        client: (inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter)
    ) async {
        let headers: HTTPFields
        do {
            headers = try upgradeHeaders(target: target, request: request)
        } catch {
            try? await client.outbound.close(.policyViolation, reason: Self.closeReason(error.message))
            return
        }
        let (writers, writerContinuation) = AsyncStream.makeStream(of: WebSocketOutboundWriter.self)
        await withTaskGroup(of: Void.self) { group in
            // Upstream → client, and the upstream's close passed on.
            group.addTask {
                let closed: WebSocketCloseFrame?
                do {
                    closed = try await upstream.webSocket(target: target, headers: headers, maxFrameSize: Self.maxFrameSize, logger: logger) {
                        inbound,
                        outbound,
                        _ in
                        writerContinuation.yield(outbound)
                        writerContinuation.finish()
                        for try await frame in inbound { try await client.outbound.write(.custom(Self.frame(frame))) }
                    }
                } catch {
                    writerContinuation.finish()
                    logger.info("Live API relay: the upstream session failed", metadata: ["error": "\(type(of: error))"])
                    try? await client.outbound.close(
                        .unexpectedServerError,
                        reason: "gemcache: the upstream Live API session could not be opened or failed"
                    )
                    return
                }
                let code = closed.map(\.closeCode).flatMap(Self.sendable) ?? .normalClosure
                try? await client.outbound.close(code, reason: closed?.reason)
            }
            // Client → upstream, once the upstream session is open; the client's close ends it.
            var opened = writers.makeAsyncIterator()
            guard let upstream = await opened.next() else { return }
            do {
                for try await frame in client.inbound { try await upstream.write(.custom(Self.frame(frame))) }
            } catch {}
            try? await upstream.close(.normalClosure, reason: nil)
        }
    }

    /// The headers of the upstream upgrade, once the client's one credential is admitted: its
    /// identification and its credential headers (managed mode swaps the credential upstream).
    private func upgradeHeaders(target: UpstreamTarget, request: HTTPRequest) throws(ProxyError) -> HTTPFields {
        try access.admit(credential: Credential(headers: request.headerFields, query: ForwardedRequest.queryItems(target.query)))
        var headers = HTTPFields()
        for name in Self.forwardedHeaders + Credential.headerNames {
            for value in request.headerFields[values: name] { headers.append(HTTPField(name: name, value: value)) }
        }
        return headers
    }

    /// The frame to send on for a frame received, opcode, payload and FIN bit unchanged.
    private static func frame(_ frame: WebSocketDataFrame) -> WebSocketFrame {
        let opcode: WebSocketOpcode =
            switch frame.opcode {
            case .text: .text
            case .binary: .binary
            case .continuation: .continuation
            }
        return WebSocketFrame(fin: frame.fin, opcode: opcode, data: frame.data)
    }

    /// The close code to send on; those that may not appear in a close frame (RFC 6455 §7.4.1) become 1000.
    private static func sendable(_ code: WebSocketErrorCode) -> WebSocketErrorCode? {
        switch code {
        case .unknown(1005), .unknown(1006), .unknown(1015): nil
        default: code
        }
    }

    /// A close frame's reason holds at most 123 bytes.
    private static func closeReason(_ message: String) -> String {
        var reason = ""
        for character in message {
            guard reason.utf8.count + character.utf8.count <= 123 else { break }
            reason.append(character)
        }
        return reason
    }
}
