import Testing

@testable import GemcacheCore

/// How the egress proxy is chosen from `upstream.proxy` and the environment, as curl chooses.
struct EgressProxyTests {
    let google = "https://generativelanguage.googleapis.com"

    @Test func theSettingWinsThenTheSchemesVariable() throws {
        let environment = ["HTTPS_PROXY": "http://env-proxy:3128", "http_proxy": "http://plain-proxy:8080"]
        #expect(try EgressProxy.resolve(setting: "http://set:9", upstreamURL: google, environment: environment)?.host == "set")
        #expect(
            try EgressProxy.resolve(setting: nil, upstreamURL: google, environment: environment)
                == .init(host: "env-proxy", port: 3128, credentials: nil)
        )
        #expect(try EgressProxy.resolve(setting: nil, upstreamURL: "http://127.0.0.1:1", environment: environment)?.host == "plain-proxy")
        #expect(try EgressProxy.resolve(setting: nil, upstreamURL: google, environment: ["https_proxy": "http://lower:1"])?.host == "lower")
        #expect(
            try EgressProxy.resolve(setting: nil, upstreamURL: google, environment: ["HTTP_PROXY": "http://cgi:1"]) == nil,
            "curl ignores HTTP_PROXY"
        )
        #expect(try EgressProxy.resolve(setting: nil, upstreamURL: google, environment: [:]) == nil)
        #expect(try EgressProxy.resolve(setting: "http://noport", upstreamURL: google, environment: [:])?.port == 1080)
    }

    @Test func credentialsComeFromTheEnvironmentOnly() throws {
        let fromURL = try EgressProxy.resolve(setting: nil, upstreamURL: google, environment: ["HTTPS_PROXY": "http://us%40er:p%3Ass@proxy:3128"])
        #expect(fromURL?.credentials == .init(user: "us@er", password: "p:ss"))
        let fromVariable = try EgressProxy.resolve(
            setting: "http://proxy:3128",
            upstreamURL: google,
            environment: ["GEMCACHE_PROXY_CREDENTIALS": "team:pa:ss"]
        )
        #expect(fromVariable?.credentials == .init(user: "team", password: "pa:ss"))
        #expect(throws: ConfigurationError.self) { try EgressProxy.resolve(setting: "http://u:p@proxy:3128", upstreamURL: google, environment: [:]) }
    }

    @Test(arguments: [
        ("*", true), ("generativelanguage.googleapis.com", true), (".googleapis.com", true), ("googleapis.com", true),
        ("localhost, googleapis.com:443", true), ("GoogleAPIs.com", true), ("apis.com", false), ("oogleapis.com", false), ("", false),
    ])
    func noProxyMatchesTheHostOrADomainItIsIn(noProxy: String, bypasses: Bool) {
        #expect(EgressProxy.bypasses(host: "generativelanguage.googleapis.com", noProxy: noProxy) == bypasses)
    }
}
