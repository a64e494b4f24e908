import GemcacheKey
import GemcacheStore
import Testing

@testable import GemcacheCore

/// The options of `gemcache purge`, read into a ``PurgeFilter``.
struct PurgeFilterArgumentsTests {
    static func key(_ name: String) -> CacheKey {
        CacheKey(bytes: Digest.sha256(Array(name.utf8)))!
    }

    @Test func purgeOptionsParseLikeSettingsAndMustNameSomething() throws {
        let filter = try PurgeFilter(
            all: false,
            model: "models/gemini-2.5-flash",
            namespace: "team-a",
            keyHex: Self.key("k").hex.uppercased(),
            olderThan: "90m"
        )
        #expect(filter == PurgeFilter(model: "gemini-2.5-flash", namespace: "team-a", key: Self.key("k"), olderThan: .seconds(5400)))
        #expect(try PurgeFilter(all: false, model: nil, namespace: nil, keyHex: nil, olderThan: "3600").olderThan == .seconds(3600))
        let failures: [(String?, String?, String)] = [
            (nil, "forever", "--older-than: expected a duration such as 90, 90s, 30m, 24h or 7d, got \"forever\""),
            ("abc", nil, "--key must be 64 hex digits (an X-Gemcache-Key), got \"abc\""),
            (nil, nil, "say what to purge: --all, or any of --model, --namespace, --key, --older-than"),
        ]
        for (key, age, message) in failures {
            #expect {
                try PurgeFilter(all: false, model: nil, namespace: nil, keyHex: key, olderThan: age)
            } throws: { ($0 as? PurgeArgumentError)?.description == message }
        }
    }
}
