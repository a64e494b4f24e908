import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import NIOCore
import NIOWebSocket

/// The Live API as the mock plays it: a WebSocket on
/// `/ws/google.ai.generativelanguage.{v1alpha,v1beta}.GenerativeService.BidiGenerateContent` (and
/// `…Constrained`).
///
/// - A missing or refused key: the session opens, then closes with 1008 and Google's message.
/// - `{"setup": …}` → `{"setupComplete": {}}` as a binary frame (as Google sends it).
/// - `{"clientContent": {"turns": …}}` (or `client_content`, as google-genai sends it: proto JSON takes
///   both) → one `serverContent` text frame per part, echoing the turn's text, then
///   `{"serverContent": {"turnComplete": true}}`.
/// - `{"realtimeInput": …}` is taken silently; a binary message is echoed back as binary.
/// - Text that is not JSON closes the session with 1007, as Google does.
enum MockLive {
    static let versions = ["v1alpha", "v1beta"]
    static let methods = ["BidiGenerateContent", "BidiGenerateContentConstrained"]

    static func router(configuration: MockUpstreamConfiguration, recorder: MockUpstreamRecorder) -> Router<BasicWebSocketRequestContext> {
        let router = Router(context: BasicWebSocketRequestContext.self)
        for version in versions {
            for method in methods {
                router.ws(RouterPath("/ws/google.ai.generativelanguage.\(version).GenerativeService.\(method)")) { request, _ in
                    recorder.record(path: request.uri.path, headers: request.headers)
                    return .upgrade([:])
                } onUpgrade: { inbound, outbound, context in
                    guard authorized(context.request, validKeys: configuration.validKeys) else {
                        try await outbound.close(.policyViolation, reason: "API key not valid. Please pass a valid API key.")
                        return
                    }
                    try await session(inbound: inbound, outbound: outbound)
                }
            }
        }
        return router
    }

    private static func authorized(_ request: Request, validKeys: Set<String>?) -> Bool {
        let header = request.headers[HTTPField.Name("x-goog-api-key")!]
        let query = request.uri.queryParameters["key"].map(String.init) ?? request.uri.queryParameters["access_token"].map(String.init)
        let token = request.headers[.authorization].flatMap { $0.hasPrefix("Token ") ? String($0.dropFirst(6)) : nil }
        guard let key = [header, query, token].compactMap({ $0 }).first(where: { !$0.isEmpty }) else { return false }
        return validKeys?.contains(key) ?? true
    }

    private static func session(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter) async throws {
        for try await message in inbound.messages(maxSize: 16 << 20) {
            switch message {
            case .binary(let bytes):
                try await outbound.write(.binary(bytes))
            case .text(let text):
                guard let json = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
                    try await outbound.close(.dataInconsistentWithMessage, reason: "Invalid JSON payload received.")
                    return
                }
                if json["setup"] != nil {
                    try await outbound.write(.binary(ByteBuffer(string: #"{"setupComplete": {}}"#)))
                } else if let content = (json["clientContent"] ?? json["client_content"]) as? [String: Any] {
                    let turns = content["turns"] as? [[String: Any]] ?? []
                    for part in turns.flatMap({ $0["parts"] as? [[String: Any]] ?? [] }) {
                        let text = part["text"] as? String ?? ""
                        let reply: [String: Any] = ["serverContent": ["modelTurn": ["role": "model", "parts": [["text": "Echo: " + text]]]]]
                        try await outbound.write(.text(String(decoding: try JSONSerialization.data(withJSONObject: reply), as: UTF8.self)))
                    }
                    try await outbound.write(.text(#"{"serverContent": {"turnComplete": true}}"#))
                }
            }
        }
    }
}
