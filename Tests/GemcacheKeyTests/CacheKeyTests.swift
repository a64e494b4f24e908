import GemcacheKey
import Testing

@Suite struct CacheKeyTests {
    static let base = CacheKeyComponents(
        apiVersion: "v1beta",
        endpoint: "generateContent",
        model: "gemini-2.5-flash",
        query: [(name: "alt", value: "sse"), (name: "$alt", value: "json;enum-encoding=int")],
        scope: "shared",
        namespace: "team-a",
        normalizedBody: Array(#"{"contents":[]}"#.utf8)
    )

    /// Pins the documented encoding; computed independently with Python's hashlib.
    /// If this changes, `CacheKeyComponents.schemeVersion` must be bumped.
    @Test func keyMatchesDocumentedEncoding() {
        #expect(Self.base.key.hex == "3b1566f517cc94c740a7e677380035e7f73f029e6fb2019699482a35db30d46f")
        #expect(CacheKeyComponents.schemeVersion == 1)
    }

    @Test func modelPrefixIsStripped() {
        var prefixed = Self.base
        prefixed = CacheKeyComponents(
            apiVersion: prefixed.apiVersion,
            endpoint: prefixed.endpoint,
            model: "models/gemini-2.5-flash",
            query: prefixed.query,
            scope: prefixed.scope,
            namespace: prefixed.namespace,
            normalizedBody: prefixed.normalizedBody
        )
        #expect(prefixed.model == "gemini-2.5-flash")
        #expect(prefixed.key == Self.base.key)
    }

    @Test func queryOrderIsIrrelevant() {
        var reordered = Self.base
        reordered.query.reverse()
        #expect(reordered.key == Self.base.key)
    }

    static let variants: [(String, @Sendable (inout CacheKeyComponents) -> Void)] = [
        ("apiVersion v1", { $0.apiVersion = "v1" }),
        ("endpoint", { $0.endpoint = "streamGenerateContent" }),
        ("model", { $0.model = "gemini-2.5-pro" }),
        ("namespace nil", { $0.namespace = nil }),
        ("namespace empty", { $0.namespace = "" }),
        ("namespace other", { $0.namespace = "a" }),
        ("scope", { $0.scope = "key:00" }),
        ("body", { $0.normalizedBody = Array(#"{"contents":[{}]}"#.utf8) }),
        ("query value", { $0.query[0].value = "json" }),
        ("query dropped", { $0.query.removeLast() }),
        ("query duplicated", { $0.query.append($0.query[0]) }),
        ("name/value boundary", { $0.query = [(name: "alts", value: "se"), (name: "$alt", value: "json;enum-encoding=int")] }),
        (
            "endpoint/model boundary",
            {
                $0.endpoint = "generateContentg"
                $0.model = "emini-2.5-flash"
            }
        ),
        (
            "namespace/body boundary",
            {
                $0.namespace = "team-a{"
                $0.normalizedBody = Array(#""contents":[]}"#.utf8)
            }
        ),
    ]

    @Test(arguments: variants)
    func everyComponentChangesTheKey(label: String, change: @Sendable (inout CacheKeyComponents) -> Void) {
        var changed = Self.base
        change(&changed)
        #expect(changed.key != Self.base.key, "\(label)")
    }

    @Test func namespaceNilAndAbsentBodyAreStable() {
        let a = CacheKeyComponents(apiVersion: "v1", endpoint: "models.list", model: "", scope: "shared")
        let b = CacheKeyComponents(apiVersion: "v1", endpoint: "models.list", model: "", scope: "shared")
        #expect(a.key == b.key)
        var withNamespace = a
        withNamespace.namespace = "a"
        #expect(withNamespace.key != a.key)
    }

    @Test func hexRoundTrip() throws {
        let key = Self.base.key
        #expect(key.bytes.count == 32)
        #expect(key.hex.count == 64)
        #expect(key.hex == key.hex.lowercased())
        #expect(CacheKey(hex: key.hex) == key)
        #expect(CacheKey(hex: key.hex.uppercased()) == key)
        #expect(CacheKey(bytes: key.bytes) == key)
        #expect(try #require(CacheKey(hex: String(repeating: "0", count: 64))).bytes == [UInt8](repeating: 0, count: 32))
    }

    @Test(arguments: [
        "", "abc", String(repeating: "0", count: 63), String(repeating: "0", count: 65),
        String(repeating: "g", count: 64), " " + String(repeating: "0", count: 63),
    ])
    func invalidHexIsRejected(hex: String) {
        #expect(CacheKey(hex: hex) == nil)
    }

    @Test func wrongByteCountIsRejected() {
        #expect(CacheKey(bytes: [UInt8](repeating: 1, count: 31)) == nil)
        #expect(CacheKey(bytes: [UInt8](repeating: 1, count: 33)) == nil)
    }
}

@Suite struct KeyQueryTests {
    static func names(_ items: [(name: String, value: String)]) -> [String] {
        items.map { "\($0.name)=\($0.value)" }
    }

    static let sent: [(name: String, value: String)] = [
        (name: "pageSize", value: "50"), (name: "key", value: "AIzaSECRET"), (name: "alt", value: "sse"),
        (name: "access_token", value: "ya29"), (name: "oauth_token", value: "t"), (name: "KEY", value: "x"),
        (name: "fields", value: "candidates"), (name: "$.xgafv", value: "2"), (name: "prettyPrint", value: "false"),
        (name: "$alt", value: "json;enum-encoding=int"), (name: "pageToken", value: "abc"), (name: "quotaUser", value: "u"),
        (name: "$fields", value: "candidates.finishReason"), (name: "$outputDefaults", value: "true"), (name: "$trace", value: "1"),
    ]

    @Test func postKeepsOnlyAnswerChangingParameters() {
        #expect(
            Self.names(keyQuery(Self.sent, isGET: false)) == [
                "$.xgafv=2", "$fields=candidates.finishReason", "$outputDefaults=true", "$trace=1",
                "alt=json;enum-encoding=int", "alt=sse", "fields=candidates", "prettyPrint=false",
            ]
        )
    }

    @Test func getKeepsEverythingButCredentials() {
        #expect(
            Self.names(keyQuery(Self.sent, isGET: true)) == [
                "$.xgafv=2", "$fields=candidates.finishReason", "$outputDefaults=true", "$trace=1",
                "alt=json;enum-encoding=int", "alt=sse", "fields=candidates",
                "pageSize=50", "pageToken=abc", "prettyPrint=false", "quotaUser=u",
            ]
        )
    }

    @Test func oneRuleSaysWhatEachParameterIsToTheCache() {
        #expect(QueryParameter.role(of: "KEY", isGET: false) == .credential)
        #expect(QueryParameter.role(of: "$fields", isGET: false) == .keyed)
        #expect(QueryParameter.role(of: "$Alt", isGET: false) == .keyed)
        #expect(QueryParameter.role(of: "$trace", isGET: true) == .unknownSystem, "answered, never stored")
        #expect(QueryParameter.role(of: "quotaUser", isGET: false) == .ignored)
        #expect(QueryParameter.role(of: "quotaUser", isGET: true) == .keyed)
        #expect(QueryParameter.alt(in: [(name: "alt", value: "json"), (name: "$alt", value: "sse")]) == "sse", "alt and $alt are one parameter")
    }

    @Test(arguments: [true, false])
    func credentialsNeverEnter(isGET: Bool) {
        let kept = keyQuery([(name: "key", value: "k"), (name: "Access_Token", value: "a"), (name: "oauth_token", value: "o")], isGET: isGET)
        #expect(kept.isEmpty)
    }

    @Test func repeatedParametersAreSortedByValue() {
        let kept = keyQuery([(name: "fields", value: "b"), (name: "fields", value: "a")], isGET: false)
        #expect(Self.names(kept) == ["fields=a", "fields=b"])
    }
}

@Suite struct ScopeTagTests {
    /// Expected value from Python: hmac.new(b"salt-0123", b"AIzaSyEXAMPLE", sha256).
    @Test func tagIsHMACWithSaltAsKey() {
        let tag = scopeTag(credential: "AIzaSyEXAMPLE", salt: Array("salt-0123".utf8))
        #expect(tag == "key:4b0544e8534afc4f60575cb3923537aff9bcb73565652a0596d884a5908d8508")
        #expect(!tag.contains("AIza"))
    }

    @Test func tagDependsOnCredentialAndSalt() {
        let salt: [UInt8] = [1, 2, 3]
        let tag = scopeTag(credential: "k1", salt: salt)
        #expect(tag == scopeTag(credential: "k1", salt: salt))
        #expect(tag != scopeTag(credential: "k2", salt: salt))
        #expect(tag != scopeTag(credential: "k1", salt: [1, 2, 4]))
    }
}
