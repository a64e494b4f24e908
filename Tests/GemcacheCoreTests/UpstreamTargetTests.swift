import Testing

@testable import GemcacheCore

/// Which request targets may name a path on the upstream (SPEC §2): origin form, no empty, `.` or `..`
/// segment, no percent-encoded `.`, `/` or `\`.
struct UpstreamTargetTests {
    @Test(arguments: [
        "/", "/v1beta/models", "/v1beta/models/", "/v1beta/models/gemini-2.5-flash:generateContent?alt=sse&key=k",
        "/v1beta/files/a.b", "/v1beta/files/...", "/v1beta/files/%41b", "/v1beta/x?next=//a/../b",
    ])
    func plainTargetsAreAccepted(target: String) throws {
        let parsed = try UpstreamTarget(target)
        #expect(parsed.pathAndQuery == target)
    }

    @Test(arguments: [
        "", "v1beta/models", "//evil.example/x", "/v1beta//models", "/v1beta/models//", "/v1beta/./models", "/v1beta/../x",
        "/v1beta/models/..", "/v1beta/files/..%2e/admin", "/v1beta/files/%2E%2E", "/v1beta/a%2Fb", "/v1beta/a%2fb",
        "/v1beta/a%5Cb", "/v1beta/a@b", "/v1beta/a b", "/v1beta/a#b", "/v1beta/a\\b",
    ])
    func targetsThatCouldNameAnotherPathOrHostAreRefused(target: String) {
        #expect(throws: ProxyError.self) { try UpstreamTarget(target) }
    }
}
