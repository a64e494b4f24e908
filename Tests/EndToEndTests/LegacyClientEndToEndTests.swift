import Foundation
import GemcacheCore
import GemcacheTestSupport
import GeminiMock
import Testing

/// The REST transport of Google's generated clients (`google-ai-generativelanguage`, and the older
/// `google-generativeai` with `transport="rest"`) sends `$alt=json;enum-encoding=int` on every call,
/// percent-encoded, and Google then writes enums as numbers (gemini-api.md §1.5). `alt` and `$alt` are
/// one parameter (SPEC §3), and such answers follow the storing rules like named ones.
@Suite(.timeLimit(.minutes(1)))
struct LegacyClientEndToEndTests {
    let key = ["x-goog-api-key": testKey]
    static let intEnums = "%24alt=json%3Benum-encoding%3Dint"

    /// The answer objects of a whole answer or of a JSON-array stream.
    static func answers(_ body: String) throws -> [[String: Any]] {
        let parsed = try JSONSerialization.jsonObject(with: Data(body.utf8))
        return try #require((parsed as? [[String: Any]]) ?? (parsed as? [String: Any]).map { [$0] })
    }

    static func finishReason(_ answer: [String: Any]) -> Any? {
        (answer["candidates"] as? [[String: Any]])?.first?["finishReason"]
    }

    @Test(arguments: ["generateContent", "streamGenerateContent"])
    func answersWithNumberedEnumsAreStoredAndReplayedByteForByte(operation: String) async throws {
        try await withProxyBehindMock { port, recorder, _ in
            let path = "/v1beta/models/gemini-2.5-flash:\(operation)"
            let body = generateBody("a legacy client asks")
            let miss = try await send(port: port, path: path + "?" + Self.intEnums, body: body, headers: key)
            let hit = try await send(port: port, path: path + "?" + Self.intEnums, body: body, headers: key)
            #expect(miss.status == 200)
            #expect(miss.header("x-gemcache") == "MISS")
            #expect(hit.header("x-gemcache") == "HIT")
            #expect(hit.body == miss.body)
            #expect(hit.header("content-type") == miss.header("content-type"))
            let answers = try Self.answers(miss.body)
            #expect(answers.count == (operation == "generateContent" ? 1 : 3))
            #expect(Self.finishReason(try #require(answers.last)) as? Int == 1, "STOP as its number")
            #expect(recorder.totalRequests == 1)

            // Named enums are another answer: another entry.
            let named = try await send(port: port, path: path, body: body, headers: key)
            #expect(named.header("x-gemcache") == "MISS")
            #expect(Self.finishReason(try #require(try Self.answers(named.body).last)) as? String == "STOP")
            #expect(recorder.totalRequests == 2)
        }
    }

    @Test(arguments: ["safety", "blocked"])
    func numberedSafetyFinishesAndBlockedPromptsAreNeverStored(fault: String) async throws {
        try await withProxyBehindMock { port, recorder, _ in
            let path = "/v1beta/models/gemini-2.5-flash:generateContent?" + Self.intEnums
            let body = generateBody("unsafe [[fault:\(fault)]]")
            let first = try await send(port: port, path: path, body: body, headers: key)
            let second = try await send(port: port, path: path, body: body, headers: key)
            let answer = try #require(try Self.answers(first.body).first)
            if fault == "safety" {
                #expect(Self.finishReason(answer) as? Int == 3, "SAFETY as its number")
            } else {
                #expect((answer["promptFeedback"] as? [String: Any])?["blockReason"] as? Int == 1, "SAFETY as its number")
            }
            #expect(first.header("x-gemcache") == "MISS")
            #expect(second.header("x-gemcache") == "MISS")
            #expect(second.body == first.body)
            #expect(recorder.totalRequests == 2)
        }
    }

    @Test func dollarAltSSEStreamsAsSSEAndSharesTheEntryOfAltSSE() async throws {
        try await withProxyBehindMock { port, recorder, _ in
            let path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
            let body = generateBody("stream, legacy spelling")
            let miss = try await send(port: port, path: path + "?%24alt=sse", body: body, headers: key)
            #expect(miss.header("x-gemcache") == "MISS")
            #expect(miss.header("content-type")?.hasPrefix("text/event-stream") == true)
            #expect(miss.body.hasPrefix("data: ") && miss.body.hasSuffix("\r\n\r\n"))
            let hit = try await send(port: port, path: path + "?alt=sse", body: body, headers: key)
            #expect(hit.header("x-gemcache") == "HIT")
            #expect(hit.header("x-gemcache-key") == miss.header("x-gemcache-key"))
            #expect(hit.body == miss.body)
            #expect(recorder.totalRequests == 1)
        }
    }
}
