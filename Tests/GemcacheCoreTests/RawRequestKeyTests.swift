import Testing

@testable import GemcacheCore

/// Which targets the fast path looks up, the target as its raw key covers it, and how it reads header
/// names: byte comparisons with ASCII literals, letters without case.
struct RawRequestKeyTests {
    /// The keyed target and the credential parameter's value, or nil when the target is not looked up.
    static func parse(_ target: String, _ method: RawRequestKey.Method = .post) -> (keyed: String, credential: String?)? {
        let bytes = Array(target.utf8)
        var keyed: [UInt8] = []
        guard let parsed = bytes.withUnsafeBytes({ RawRequestKey.parse($0, method: method, keyed: &keyed) }) else { return nil }
        return (String(decoding: keyed, as: UTF8.self), parsed.credential.map { String(decoding: bytes[$0], as: UTF8.self) })
    }

    @Test(arguments: [
        "/v1beta/models/gemini-2.5-flash:generateContent",
        "/v1/models/gemini-2.5-flash:generateContent",
        "/v1beta/models/gemini-2.5-flash:generateContent?alt=json",
        "/v1beta/models/gemini-2.5-flash:generateContent?keys=1&token=2",
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
        "/v1beta/models/gemini-2.5-flash:countTokens",
        "/v1beta/models/gemini-embedding-001:embedContent",
        "/v1beta/openai/chat/completions",
        "/v1beta/openai/embeddings",
    ])
    func everyRouteWithAWholeStoredAnswerIsLookedUp(target: String) {
        #expect(Self.parse(target)?.keyed == target)
    }

    @Test(arguments: ["/v1beta/models", "/v1/models", "/v1beta/models/gemini-2.5-flash", "/v1beta/models?pageSize=5"])
    func theModelListAndModelsAreLookedUpOnGET(target: String) {
        #expect(Self.parse(target, .get)?.keyed == target)
        #expect(Self.parse(target, .post) == nil)
    }

    @Test(arguments: [
        "/v1beta/models/gemini-2.5-flash:generateContent?alt=%6Ason",
        "/v1beta/models/gemini-2.5-flash:batchEmbedContents",
        "/v1beta/models/gemini%2D2.5-flash:generateContent",
        "/v1beta/models/m/x:generateContent",
        "/v1beta/tunedModels/x:generateContent",
        "/V1BETA/models/gemini-2.5-flash:generateContent",
        "/v1beta/models/:generateContent",
        "/v1/openai/chat/completions",
        "/v1beta/openai/chat/completions/x",
        "/v1beta/models/gemini-2.5-flash:generateContent#x",
        // A credential parameter the slow path must judge: two, an empty one, one with `+` (a space to it).
        "/v1beta/models/gemini-2.5-flash:generateContent?key=a&key=a",
        "/v1beta/models/gemini-2.5-flash:generateContent?key=a&access_token=b",
        "/v1beta/models/gemini-2.5-flash:generateContent?key=",
        "/v1beta/models/gemini-2.5-flash:generateContent?key",
        "/v1beta/models/gemini-2.5-flash:generateContent?key=a+b",
    ])
    func otherTargetsAreLeftToTheSlowPath(target: String) {
        #expect(Self.parse(target) == nil)
    }

    /// The credential parameter (any of the three names, without case) is read and left out of the keyed
    /// target, as are empty pairs and an empty query: what `UpstreamTarget.removingCredentials` leaves.
    @Test(arguments: [
        ("?key=secret", "", "secret"),
        ("?alt=sse&KEY=secret", "?alt=sse", "secret"),
        ("?Access_Token=ya29&alt=sse", "?alt=sse", "ya29"),
        ("?oauth_token=t&&alt=sse&", "?alt=sse", "t"),
        ("?", "", nil),
        ("?a=1&&b&c=", "?a=1&b&c=", nil),
        ("?keys=1&token=2", "?keys=1&token=2", nil),
    ])
    func credentialParametersAreReadAndLeftOutOfTheKeyedTarget(query: String, keptQuery: String, credential: String?) throws {
        let path = "/v1beta/models/gemini-2.5-flash:generateContent"
        let parsed = try #require(Self.parse(path + query))
        #expect(parsed.keyed == path + keptQuery)
        #expect(parsed.credential == credential)
        let slowPath = try UpstreamTarget(path + query).removingCredentials.pathAndQuery
        #expect(parsed.keyed == slowPath)
    }

    @Test func headerNamesMatchWithoutCaseAndOnlyLettersFold() throws {
        func parse(_ head: String) -> RequestHead? {
            guard case .head(let parsed) = Array(head.utf8).withUnsafeBytes({ RequestHead.parse($0, maxLength: 8192) }) else { return nil }
            return parsed
        }
        let upper = try #require(parse("POST /v1beta/models/m:generateContent HTTP/1.1\r\nX-GOOG-API-KEY: k\r\nCONTENT-LENGTH: 2\r\n\r\n"))
        #expect(upper.contentLength == 2 && upper.credential != nil && upper.answerable && upper.method == .post)
        // `_` is not `-` with its case changed: not the credential header, and not answerable without one.
        let underscore = try #require(parse("POST /v1beta/models/m:generateContent HTTP/1.1\r\nx_goog_api_key: k\r\n\r\n"))
        #expect(underscore.credential == nil)
        #expect(parse("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n") == nil)
        let get = try #require(parse("GET /v1beta/models HTTP/1.1\r\nHost: x\r\n\r\n"))
        #expect(get.answerable && get.method == .get && get.credential == nil)
        let head = try #require(parse("HEAD /v1beta/models HTTP/1.1\r\nHost: x\r\n\r\n"))
        #expect(head.method == nil)
        #expect(parse("CONNECT x:1 HTTP/1.1\r\n\r\n") == nil)
        #expect(parse("POST / HTTP/2.0\r\n\r\n") == nil)
    }
}

extension RawRequestKeyTests {
    static func head(_ headers: String) throws -> RequestHead {
        let text = "POST /v1beta/models/m:generateContent HTTP/1.1\r\nHost: x\r\n\(headers)Content-Length: 0\r\n\r\n"
        guard case .head(let parsed) = Array(text.utf8).withUnsafeBytes({ RequestHead.parse($0, maxLength: 8192) }) else {
            throw CancellationError()
        }
        return parsed
    }

    static func credential(_ headers: String) throws -> String? {
        let text = "POST /v1beta/models/m:generateContent HTTP/1.1\r\nHost: x\r\n\(headers)Content-Length: 0\r\n\r\n"
        let parsed = try head(headers)
        return parsed.credential.map { String(decoding: Array(text.utf8)[$0], as: UTF8.self) }
    }

    /// The credential headers, read as ``Credential`` reads them; whatever it would have to judge (two
    /// credentials, an empty one, an `Authorization` that is not a bearer token) is not answerable.
    @Test func credentialHeadersAreReadAsTheSlowPathReadsThem() throws {
        #expect(try Self.credential("x-goog-api-key:  k1 \r\n") == "k1")
        #expect(try Self.credential("Authorization: Bearer t1\r\n") == "t1")
        #expect(try Self.credential("authorization: BEARER   t1\t\r\n") == "t1")
        for headers in [
            "x-goog-api-key: k1\r\nx-goog-api-key: k1\r\n",
            "x-goog-api-key: k1\r\nAuthorization: Bearer k1\r\n",
            "x-goog-api-key:\r\n",
            "Authorization: Basic dTpw\r\n",
            "Authorization: Bearer\r\n",
            "Authorization: Bearer a b\r\n",
            "Authorization: Bearer t\u{e9}\r\n",
        ] {
            #expect(try !Self.head(headers).answerable, "\(headers.debugDescription)")
        }
        #expect(try Self.head("x-goog-api-key: k1\r\n").answerable)
    }
}
