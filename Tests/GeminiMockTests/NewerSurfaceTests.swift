import Foundation
import GeminiMock
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// What the mock answers the clients of issue 16: numbered enums, thought signatures, the resumable
/// upload protocol's checks.
@Suite(.timeLimit(.minutes(1)))
struct NewerSurfaceTests {
    /// `$alt=json;enum-encoding=int`, in any spelling Google reads, gives enums as their numbers.
    @Test(arguments: ["?%24alt=json%3Benum-encoding%3Dint", "?alt=json;enum-encoding=int", "?$alt=json%3Benum-encoding%3Dint"])
    func enumsAreNumbersWhenTheRequestAsksForThem(query: String) async throws {
        try await withMock { client in
            let answer = try #require(try await client.post(generatePath + query, promptBody("numbers please")).object)
            let candidate = try #require((answer["candidates"] as? [[String: Any]])?.first)
            #expect(candidate["finishReason"] as? Int == 1)
            let details = (answer["usageMetadata"] as? [String: Any])?["promptTokensDetails"] as? [[String: Any]]
            #expect(details?.first?["modality"] as? Int == 1)
            let unsafe = try #require(try await client.post(generatePath + query, promptBody("x [[fault:safety]]")).object)
            let rating = ((unsafe["candidates"] as? [[String: Any]])?.first?["safetyRatings"] as? [[String: Any]])?.first
            #expect((unsafe["candidates"] as? [[String: Any]])?.first?["finishReason"] as? Int == 3)
            #expect(rating?["category"] as? Int == 10 && rating?["probability"] as? Int == 4)
            // A JSON-array stream asked this way still wraps its errors in an array.
            let failed = try await client.post(streamPath + query, promptBody("x [[fault:500]]"))
            #expect(errorObject(failed.text, wrapped: true)?["status"] as? String == "INTERNAL")
        }
    }

    @Test func aThinkingRequestGetsAThoughtSignatureOnItsFirstPart() async throws {
        try await withMock { client in
            let thinking = promptBody("think first", extra: #","generationConfig":{"thinkingConfig":{"thinkingLevel":"low"}}"#)
            let parts = { (text: String) in
                ((jsonObject(text)?["candidates"] as? [[String: Any]])?.first?["content"] as? [String: Any])?["parts"] as? [[String: Any]]
            }
            let signature = try #require(parts(try await client.post(generatePath, thinking).text)?.first?["thoughtSignature"] as? String)
            #expect(Data(base64Encoded: signature) != nil)
            #expect(parts(try await client.post(generatePath, promptBody("think first")).text)?.first?["thoughtSignature"] == nil)
        }
    }

    @Test func aResumableUploadChecksItsOffsetsAndSize() async throws {
        try await withMock { client in
            let start: HTTPFields = [
                HTTPField.Name("x-goog-api-key")!: "k", HTTPField.Name("x-goog-upload-protocol")!: "resumable",
                HTTPField.Name("x-goog-upload-command")!: "start", HTTPField.Name("x-goog-upload-header-content-length")!: "10",
            ]
            let started = try await client.execute(uri: "/upload/v1beta/files", method: .post, headers: start)
            let url = try #require(started.headers[HTTPField.Name("x-goog-upload-url")!])
            let path = try #require(url.range(of: "/upload/v1beta/files?upload_id="))
            #expect(url.hasPrefix("http://") && url.hasSuffix("&upload_protocol=resumable"))
            let session = String(url[path.lowerBound...])
            func chunk(_ bytes: String, offset: Int, finalize: Bool) async throws -> TestResponse {
                let headers: HTTPFields = [
                    HTTPField.Name("x-goog-api-key")!: "k", HTTPField.Name("x-goog-upload-offset")!: String(offset),
                    HTTPField.Name("x-goog-upload-command")!: finalize ? "upload, finalize" : "upload",
                ]
                return try await client.execute(uri: session, method: .post, headers: headers, body: ByteBuffer(string: bytes))
            }
            #expect(try await chunk("hello", offset: 0, finalize: false).headers[HTTPField.Name("x-goog-upload-status")!] == "active")
            #expect(try await chunk("world", offset: 0, finalize: true).status == .badRequest, "the offset must be the bytes received")
            #expect(try await chunk("wor", offset: 5, finalize: true).status == .badRequest, "8 bytes, not the 10 announced")
            #expect(try await chunk("x", offset: 0, finalize: true).status == .notFound, "a finalized session is gone")
        }
    }
}
