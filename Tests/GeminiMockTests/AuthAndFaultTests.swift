import Foundation
import GeminiMock
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@Suite(.timeLimit(.minutes(1)))
struct AuthTests {
    @Test func missingKeyIsPermissionDenied() async throws {
        try await withMock { client in
            let response = try await client.post(generatePath, promptBody("hi"), key: nil)
            #expect(response.status == .forbidden)
            let error = try #require(errorObject(response.text))
            #expect(error["status"] as? String == "PERMISSION_DENIED")
            #expect((error["message"] as? String)?.hasPrefix("Method doesn't allow unregistered callers") == true)
        }
    }

    @Test func invalidKeyWithValidKeysSet() async throws {
        try await withMock(.init(validKeys: ["good"])) { client in
            let bad = try await client.post(generatePath, promptBody("hi"), key: "bad")
            #expect(bad.status == .badRequest)
            let error = try #require(errorObject(bad.text))
            #expect(error["message"] as? String == "API key not valid. Please pass a valid API key.")
            let info = try #require((error["details"] as? [[String: Any]])?.first)
            #expect(info["@type"] as? String == "type.googleapis.com/google.rpc.ErrorInfo")
            #expect(info["reason"] as? String == "API_KEY_INVALID")
            #expect(try await client.post(generatePath, promptBody("hi"), key: "good").status == .ok)
            #expect(try await client.post(generatePath + "?key=good", promptBody("hi"), key: nil).status == .ok)
            let bearer = try await client.execute(
                uri: generatePath,
                method: .post,
                headers: [.authorization: "Bearer good"],
                body: ByteBuffer(string: promptBody("hi"))
            )
            #expect(bearer.status == .ok)
        }
    }
}

@Suite(.timeLimit(.minutes(1)))
struct FaultTests {
    @Test func quotaExceeded() async throws {
        try await withMock { client in
            let response = try await client.post(generatePath, promptBody("please [[fault:429]]"))
            #expect(response.status == .tooManyRequests)
            let error = try #require(errorObject(response.text))
            #expect(error["status"] as? String == "RESOURCE_EXHAUSTED")
            let details = try #require(error["details"] as? [[String: Any]])
            let quota = try #require(details.first { $0["@type"] as? String == "type.googleapis.com/google.rpc.QuotaFailure" })
            let violation = try #require((quota["violations"] as? [[String: Any]])?.first)
            #expect(violation["quotaId"] as? String == "GenerateRequestsPerMinutePerProjectPerModel-FreeTier")
            #expect((violation["quotaDimensions"] as? [String: Any])?["model"] as? String == "gemini-2.5-flash")
            let retry = details.first { $0["@type"] as? String == "type.googleapis.com/google.rpc.RetryInfo" }
            #expect(retry?["retryDelay"] as? String == "2s")
        }
    }

    @Test(arguments: [("500", 500, "INTERNAL"), ("503", 503, "UNAVAILABLE")])
    func serverErrors(trigger: String, code: Int, status: String) async throws {
        try await withMock { client in
            let response = try await client.post(generatePath, promptBody("[[fault:\(trigger)]]"))
            #expect(Int(response.status.code) == code)
            let error = try #require(errorObject(response.text))
            #expect(error["code"] as? Int == code)
            #expect(error["status"] as? String == status)
            if code == 503 { #expect(error["message"] as? String == "The model is overloaded. Please try again later.") }
        }
    }

    @Test func slowDelaysTheAnswer() async throws {
        try await withMock { client in
            let start = ContinuousClock.now
            let response = try await client.post(generatePath, promptBody("[[fault:slow:300]] wait"))
            #expect(response.status == .ok)
            #expect(ContinuousClock.now - start >= .milliseconds(300))
        }
    }

    @Test func safetyAndBlocked() async throws {
        try await withMock { client in
            let safety = try await client.post(generatePath, promptBody("[[fault:safety]]"))
            #expect(safety.status == .ok)
            #expect(finishReason(safety.object) == "SAFETY")
            #expect(answerText(safety.object) == nil)
            let blocked = try await client.post(streamPath + "?alt=sse", promptBody("[[fault:blocked]]"))
            #expect(blocked.status == .ok)
            let event = try #require(StreamTests.sseEvents(blocked.text).first)
            #expect((event["promptFeedback"] as? [String: Any])?["blockReason"] as? String == "SAFETY")
            #expect(event["candidates"] == nil)
        }
    }

    @Test func truncateEndsWithoutFinishReason() async throws {
        try await withMock { client in
            let stream = try await client.post(streamPath + "?alt=sse", promptBody("cut [[fault:truncate]]"))
            let events = StreamTests.sseEvents(stream.text)
            #expect(events.count == 1)
            #expect(finishReason(events.first) == nil)
            #expect(answerText(events.first)?.isEmpty == false)
            let single = try await client.post(generatePath, promptBody("cut [[fault:truncate]]"))
            #expect(single.status == .ok)
            #expect(finishReason(single.object) == nil)
        }
    }

    @Test func onceFailsOnlyTheFirstTimePerBody() async throws {
        let recorder = MockUpstreamRecorder()
        try await withMock(recorder: recorder) { client in
            let body = promptBody("retry me [[fault:once-500]]")
            var statuses: [HTTPResponse.Status] = []
            for request in [body, body, promptBody("other [[fault:once-500]]")] {
                statuses.append(try await client.post(generatePath, request).status)
            }
            #expect(statuses == [.internalServerError, .ok, .internalServerError])
            recorder.reset()
            let afterReset = try await client.post(generatePath, body).status
            #expect(afterReset == .internalServerError)
        }
    }
}
