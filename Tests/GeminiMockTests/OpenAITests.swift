import Foundation
import GeminiMock
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@Suite(.timeLimit(.minutes(1)))
struct OpenAITests {
    static let chatPath = "/v1beta/openai/chat/completions"

    static func chatBody(_ text: String, stream: Bool = false) -> String {
        #"{"model":"gemini-2.5-flash","stream":\#(stream),"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"\#(text)"}]}"#
    }

    func bearer(_ body: String) -> (HTTPFields, ByteBuffer) {
        ([.authorization: "Bearer test-key", .contentType: "application/json"], ByteBuffer(string: body))
    }

    @Test func chatCompletion() async throws {
        try await withMock { client in
            let (headers, body) = bearer(Self.chatBody("What is up?"))
            let response = try await client.execute(uri: Self.chatPath, method: .post, headers: headers, body: body)
            #expect(response.status == .ok)
            let json = try #require(response.object)
            #expect(json["object"] as? String == "chat.completion")
            #expect(json["model"] as? String == "gemini-2.5-flash")
            #expect(json["created"] is Int)
            let choice = try #require((json["choices"] as? [[String: Any]])?.first)
            #expect(choice["finish_reason"] as? String == "stop")
            let content = try #require((choice["message"] as? [String: Any])?["content"] as? String)
            #expect(content.hasPrefix("Mock answer to: What is up?"))
            let usage = try #require(json["usage"] as? [String: Any])
            #expect(usage["prompt_tokens"] as? Int == 5)
            #expect(usage["total_tokens"] as? Int == 5 + content.split(separator: " ").count)
            let again = try await client.execute(uri: Self.chatPath, method: .post, headers: headers, body: body)
            #expect(again.body == response.body)
        }
    }

    @Test func chatStreamEndsWithDone() async throws {
        try await withMock { client in
            let (headers, body) = bearer(Self.chatBody("stream it", stream: true))
            let response = try await client.execute(uri: Self.chatPath, method: .post, headers: headers, body: body)
            #expect(response.headers[.contentType] == "text/event-stream")
            let events = response.text.components(separatedBy: "\n\n")
            #expect(events.suffix(2) == ["data: [DONE]", ""])
            let chunks = events.dropLast(2).compactMap { event -> [String: Any]? in
                #expect(event.hasPrefix("data: "))
                return jsonObject(event.dropFirst(6))
            }
            #expect(chunks.count == 3)
            #expect(chunks.allSatisfy { $0["object"] as? String == "chat.completion.chunk" })
            #expect(chunks.dropLast().allSatisfy { $0["usage"] == nil })
            #expect(chunks.last?["usage"] != nil)
            let choices = chunks.compactMap { ($0["choices"] as? [[String: Any]])?.first }
            #expect(choices.last?["finish_reason"] as? String == "stop")
            let text = choices.compactMap { ($0["delta"] as? [String: Any])?["content"] as? String }.joined()
            #expect(text.hasPrefix("Mock answer to: stream it ["))
        }
    }

    @Test func errorsAreWrappedInAnArray() async throws {
        try await withMock { client in
            let missing = try await client.post(Self.chatPath, Self.chatBody("hi"), key: nil)
            #expect(missing.status == .forbidden)
            #expect(errorObject(missing.text, wrapped: true)?["status"] as? String == "PERMISSION_DENIED")
            let (headers, body) = bearer(Self.chatBody("[[fault:429]]"))
            let quota = try await client.execute(uri: Self.chatPath, method: .post, headers: headers, body: body)
            #expect(quota.status == .tooManyRequests)
            #expect(errorObject(quota.text, wrapped: true)?["status"] as? String == "RESOURCE_EXHAUSTED")
        }
    }

    @Test func embeddings() async throws {
        try await withMock { client in
            let (headers, body) = bearer(#"{"model":"gemini-embedding-001","input":["one","two words"]}"#)
            let response = try await client.execute(uri: "/v1beta/openai/embeddings", method: .post, headers: headers, body: body)
            let json = try #require(response.object)
            #expect(json["object"] as? String == "list")
            let data = try #require(json["data"] as? [[String: Any]])
            #expect(data.map { $0["index"] as? Int } == [0, 1])
            #expect(data.allSatisfy { ($0["embedding"] as? [Double])?.count == 8 })
            #expect((json["usage"] as? [String: Any])?["prompt_tokens"] as? Int == 3)
        }
    }
}
