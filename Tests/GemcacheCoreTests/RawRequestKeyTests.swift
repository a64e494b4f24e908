import Testing

@testable import GemcacheCore

/// Which targets the fast path looks up, and how it reads header names: byte comparisons with ASCII
/// literals, letters without case.
struct RawRequestKeyTests {
    static func eligible(_ target: String) -> Bool {
        Array(target.utf8).withUnsafeBytes { RawRequestKey.isEligible(target: $0) }
    }

    @Test(arguments: [
        "/v1beta/models/gemini-2.5-flash:generateContent",
        "/v1/models/gemini-2.5-flash:generateContent",
        "/v1beta/models/gemini-2.5-flash:generateContent?alt=json",
        "/v1beta/models/gemini-2.5-flash:generateContent?keys=1&token=2",
    ])
    func generateContentTargetsAreLookedUp(target: String) {
        #expect(Self.eligible(target))
    }

    @Test(arguments: [
        "/v1beta/models/gemini-2.5-flash:generateContent?key=secret",
        "/v1beta/models/gemini-2.5-flash:generateContent?alt=json&KEY=secret",
        "/v1beta/models/gemini-2.5-flash:generateContent?access_token=ya29",
        "/v1beta/models/gemini-2.5-flash:generateContent?Access_Token=ya29",
        "/v1beta/models/gemini-2.5-flash:generateContent?oauth_token=t",
        "/v1beta/models/gemini-2.5-flash:generateContent?alt=%6Ason",
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
        "/v1beta/models/gemini%2D2.5-flash:generateContent",
        "/v1beta/tunedModels/x:generateContent",
        "/V1BETA/models/gemini-2.5-flash:generateContent",
        "/v1beta/models/:generateContent",
    ])
    func otherTargetsAndCredentialParametersAreLeftToTheSlowPath(target: String) {
        #expect(!Self.eligible(target))
    }

    @Test func headerNamesMatchWithoutCaseAndOnlyLettersFold() throws {
        func parse(_ head: String) -> RequestHead? {
            guard case .head(let parsed) = Array(head.utf8).withUnsafeBytes({ RequestHead.parse($0, maxLength: 8192) }) else { return nil }
            return parsed
        }
        let upper = try #require(parse("POST /v1beta/models/m:generateContent HTTP/1.1\r\nX-GOOG-API-KEY: k\r\nCONTENT-LENGTH: 2\r\n\r\n"))
        #expect(upper.contentLength == 2 && upper.credential != nil && upper.answerable)
        // `_` is not `-` with its case changed: not the credential header, and not answerable without one.
        let underscore = try #require(parse("POST /v1beta/models/m:generateContent HTTP/1.1\r\nx_goog_api_key: k\r\n\r\n"))
        #expect(underscore.credential == nil)
        #expect(parse("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n") == nil)
        let get = try #require(parse("GET /v1beta/models HTTP/1.1\r\nHost: x\r\n\r\n"))
        #expect(!get.answerable)
        #expect(parse("CONNECT x:1 HTTP/1.1\r\n\r\n") == nil)
        #expect(parse("POST / HTTP/2.0\r\n\r\n") == nil)
    }
}
