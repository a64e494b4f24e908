import Foundation
import GeminiMock
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@Suite(.timeLimit(.minutes(1)))
struct GenerateTests {
    @Test func answerShapeAndUsage() async throws {
        try await withMock { client in
            let response = try await client.post(generatePath, promptBody("Hello there mock"))
            #expect(response.status == .ok)
            #expect(response.headers[.contentType] == "application/json; charset=UTF-8")
            let json = try #require(response.object)
            let text = try #require(answerText(json))
            #expect(text.hasPrefix("Mock answer to: Hello there mock ["))
            #expect(finishReason(json) == "STOP")
            #expect(json["modelVersion"] as? String == "gemini-2.5-flash")
            #expect((json["responseId"] as? String)?.isEmpty == false)
            let words = text.split(separator: " ").count
            #expect(usage(json, "promptTokenCount") == 3)
            #expect(usage(json, "candidatesTokenCount") == words)
            #expect(usage(json, "totalTokenCount") == 3 + words)
        }
    }

    @Test func deterministicPerBody() async throws {
        try await withMock { client in
            let first = try await client.post(generatePath, promptBody("same question"))
            let again = try await client.post(generatePath, promptBody("same question"))
            let other = try await client.post(generatePath, promptBody("same question", extra: #","generationConfig":{"temperature":0}"#))
            #expect(first.body == again.body)
            #expect(answerText(first.object) != answerText(other.object))
            #expect(first.object?["responseId"] as? String != other.object?["responseId"] as? String)
        }
    }

    @Test func maxOutputTokensTruncates() async throws {
        try await withMock { client in
            let response = try await client.post(
                generatePath,
                promptBody("a long question here", extra: #","generationConfig":{"maxOutputTokens":2}"#)
            )
            let json = response.object
            #expect(answerText(json) == "Mock answer")
            #expect(finishReason(json) == "MAX_TOKENS")
            #expect(usage(json, "candidatesTokenCount") == 2)
        }
    }

    @Test func v1AndCountTokens() async throws {
        try await withMock { client in
            let generate = try await client.post("/v1/models/gemini-2.5-pro:generateContent", promptBody("hi"))
            #expect(generate.object?["modelVersion"] as? String == "gemini-2.5-pro")
            let count = try await client.post("/v1beta/models/gemini-2.5-flash:countTokens", promptBody("one two three four"))
            let json = try #require(count.object)
            #expect(json["totalTokens"] as? Int == 4)
            let details = try #require((json["promptTokensDetails"] as? [[String: Any]])?.first)
            #expect(details["modality"] as? String == "TEXT")
            #expect(details["tokenCount"] as? Int == 4)
        }
    }

    @Test func embeddingsAreDeterministicAndOrdered() async throws {
        try await withMock { client in
            let model = "/v1beta/models/gemini-embedding-001"
            let single = try await client.post(model + ":embedContent", #"{"content":{"parts":[{"text":"beta"}]}}"#)
            let singleValues = try #require((single.object?["embedding"] as? [String: Any])?["values"] as? [Double])
            #expect(singleValues.count == 8)
            let batch = try await client.post(
                model + ":batchEmbedContents",
                #"""
                {"requests":[{"model":"models/gemini-embedding-001","content":{"parts":[{"text":"alpha"}]}},
                             {"model":"models/gemini-embedding-001","content":{"parts":[{"text":"beta"}]}},
                             {"content":{"parts":[{"text":"gamma"}]}}]}
                """#
            )
            let embeddings = try #require(batch.object?["embeddings"] as? [[String: Any]])
            #expect(embeddings.count == 3)
            #expect(embeddings[1]["values"] as? [Double] == singleValues)
            #expect(embeddings[0]["values"] as? [Double] != singleValues)
            let mismatch = try await client.post(
                model + ":batchEmbedContents",
                #"{"requests":[{"model":"models/other","content":{"parts":[{"text":"x"}]}}]}"#
            )
            #expect(mismatch.status == .badRequest)
        }
    }

    @Test func malformedBodyIsInvalidArgument() async throws {
        try await withMock { client in
            let response = try await client.post(generatePath, "{not json")
            #expect(response.status == .badRequest)
            #expect(errorObject(response.text)?["status"] as? String == "INVALID_ARGUMENT")
            #expect(errorObject(response.text)?["code"] as? Int == 400)
        }
    }

    @Test func unknownPathIsGoogleNotFound() async throws {
        try await withMock { client in
            for uri in ["/v1beta/nothing/here", "/v1beta/models/gemini-2.5-flash:unknownMethod", "/v2/models"] {
                let response = try await client.post(uri, "{}")
                #expect(response.status == .notFound)
                let error = try #require(errorObject(response.text))
                #expect(error["code"] as? Int == 404)
                #expect(error["status"] as? String == "NOT_FOUND")
                #expect((error["message"] as? String)?.isEmpty == false)
            }
        }
    }
}
