import Foundation
import GeminiMock
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@Suite(.timeLimit(.minutes(1)))
struct StreamTests {
    /// The SSE events of a body, checking the framing of each.
    static func sseEvents(_ text: String) -> [[String: Any]] {
        let events = text.components(separatedBy: "\r\n\r\n")
        #expect(events.last == "", "the last event must be terminated")
        return events.dropLast().compactMap { event in
            #expect(event.hasPrefix("data: "))
            #expect(!event.contains("\n") && !event.contains("\r"))
            return jsonObject(event.dropFirst(6))
        }
    }

    @Test func sseFraming() async throws {
        try await withMock { client in
            let full = try await client.post(generatePath, promptBody("stream me please"))
            let response = try await client.post(streamPath + "?alt=sse", promptBody("stream me please"))
            #expect(response.status == .ok)
            #expect(response.headers[.contentType] == "text/event-stream")
            let events = Self.sseEvents(response.text)
            #expect(events.count == 3)
            #expect(events.compactMap(answerText).joined() == answerText(full.object))
            #expect(events.dropLast().allSatisfy { finishReason($0) == nil })
            #expect(finishReason(events.last) == "STOP")
            let counts = events.compactMap { usage($0, "candidatesTokenCount") }
            #expect(counts == counts.sorted() && Set(counts).count == 3)
            #expect(counts.last == usage(full.object, "candidatesTokenCount"))
            #expect(events.allSatisfy { usage($0, "totalTokenCount") == usage($0, "promptTokenCount")! + usage($0, "candidatesTokenCount")! })
            #expect(Set(events.compactMap { $0["responseId"] as? String }).count == 1)
        }
    }

    @Test func jsonArrayStream() async throws {
        try await withMock { client in
            let sse = try await client.post(streamPath + "?alt=sse", promptBody("array form"))
            for uri in [streamPath, streamPath + "?alt=json"] {
                let response = try await client.post(uri, promptBody("array form"))
                #expect(response.headers[.contentType] == "application/json; charset=UTF-8")
                #expect(response.text.hasPrefix("[{\n  \"candidates\": ["))
                #expect(response.text.hasSuffix("}\n]"))
                #expect(response.text.contains("},\r\n{"))
                let elements = try #require(try JSONSerialization.jsonObject(with: Data(response.text.utf8)) as? [[String: Any]])
                #expect(elements.compactMap(answerText) == Self.sseEvents(sse.text).compactMap(answerText))
                #expect(finishReason(elements.last) == "STOP")
            }
        }
    }

    @Test func chunksArriveSeparately() async throws {
        let app = buildMockUpstream(configuration: .init(chunkDelay: .milliseconds(150)))
        try await app.test(.live) { client in
            let start = ContinuousClock.now
            let response = try await client.post(streamPath + "?alt=sse", promptBody("slowly"))
            #expect(Self.sseEvents(response.text).count == 3)
            #expect(ContinuousClock.now - start >= .milliseconds(300))
        }
    }

    @Test func streamErrorsAreWrappedOnlyForJSONArray() async throws {
        try await withMock { client in
            let array = try await client.post(streamPath, promptBody("[[fault:500]]"))
            #expect(array.status == .internalServerError)
            #expect(errorObject(array.text, wrapped: true)?["status"] as? String == "INTERNAL")
            let sse = try await client.post(streamPath + "?alt=sse", promptBody("[[fault:500]]"))
            #expect(errorObject(sse.text)?["status"] as? String == "INTERNAL")
        }
    }
}
