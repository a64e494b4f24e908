import Foundation
import GeminiMock
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore

let generatePath = "/v1beta/models/gemini-2.5-flash:generateContent"
let streamPath = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"

/// A generateContent body with one user text.
func promptBody(_ text: String, extra: String = "") -> String {
    #"{"contents":[{"role":"user","parts":[{"text":"\#(text)"}]}]\#(extra)}"#
}

/// Runs `test` against a mock in router mode.
func withMock<Value: Sendable>(
    _ configuration: MockUpstreamConfiguration = .init(chunkDelay: .zero),
    recorder: MockUpstreamRecorder = .init(),
    _ test: @escaping @Sendable (any TestClientProtocol) async throws -> Value
) async throws -> Value {
    try await buildMockUpstream(configuration: configuration, recorder: recorder).test(.router) { client in
        try await test(client)
    }
}

extension TestClientProtocol {
    /// POSTs `body` with an API key (unless `key` is nil).
    func post(_ uri: String, _ body: String, key: String? = "test-key") async throws -> TestResponse {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let key { headers[HTTPField.Name("x-goog-api-key")!] = key }
        return try await execute(uri: uri, method: .post, headers: headers, body: ByteBuffer(string: body))
    }

    func get(_ uri: String, key: String = "test-key") async throws -> TestResponse {
        try await execute(uri: uri, method: .get, headers: [HTTPField.Name("x-goog-api-key")!: key])
    }
}

extension TestResponse {
    var text: String { String(buffer: body) }

    /// The body parsed as a JSON object (nil if it is not one).
    var object: [String: Any]? { jsonObject(text) }
}

func jsonObject(_ text: some StringProtocol) -> [String: Any]? {
    (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
}

/// `candidates[0].content.parts[0].text` of a GenerateContentResponse.
func answerText(_ response: [String: Any]?) -> String? {
    let candidate = (response?["candidates"] as? [[String: Any]])?.first
    let parts = (candidate?["content"] as? [String: Any])?["parts"] as? [[String: Any]]
    return parts?.first?["text"] as? String
}

func finishReason(_ response: [String: Any]?) -> String? {
    ((response?["candidates"] as? [[String: Any]])?.first)?["finishReason"] as? String
}

func usage(_ response: [String: Any]?, _ field: String) -> Int? {
    (response?["usageMetadata"] as? [String: Any])?[field] as? Int
}

/// The `error` object of an envelope, unwrapping a one-element array if `wrapped`.
func errorObject(_ text: String, wrapped: Bool = false) -> [String: Any]? {
    let parsed = try? JSONSerialization.jsonObject(with: Data(text.utf8))
    let envelope = wrapped ? (parsed as? [Any])?.first as? [String: Any] : parsed as? [String: Any]
    return envelope?["error"] as? [String: Any]
}
