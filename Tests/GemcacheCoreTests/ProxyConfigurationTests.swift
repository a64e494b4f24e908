import Foundation
import GemcacheKey
import GemcacheStore
import GemcacheTestSupport
import Testing

@testable import GemcacheCore

struct ProxyConfigurationTests {
    private func load(
        file: String?,
        environment: [String: String] = [:],
        overrides: [String: String] = [:]
    ) async throws(ConfigurationError) -> ProxyConfiguration {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        var path: String?
        if let file {
            path = directory.path + "/proxy.conf"
            FileManager.default.createFile(atPath: path!, contents: Data(file.utf8))
        }
        return try await ProxyConfiguration.load(filePath: path, environment: environment, overrides: overrides)
    }

    private func problem(file: String?, environment: [String: String] = [:]) async -> String? {
        do {
            _ = try await load(file: file, environment: environment)
            return nil
        } catch {
            return error.description
        }
    }

    @Test func defaultsMatchTheSpec() async throws {
        let configuration = try await load(file: nil)
        #expect(configuration == ProxyConfiguration())
        #expect(configuration.listen.host == "127.0.0.1")
        #expect(configuration.listen.port == 8080)
        #expect(configuration.store.maxSize == 4 << 30)
        #expect(configuration.store.durability == .commit)
        #expect(configuration.store.syncInterval == .seconds(1))
        #expect(configuration.cache.normalize == .text)
        #expect(configuration.cache.mode == .normal)
        #expect(configuration.effectiveScope == .perKey)
        #expect(configuration.limits.maxBody == 100 << 20)
    }

    /// Record and replay share entries whatever `cache.scope` says (SPEC §11); normal mode follows it.
    @Test func recordAndReplayUseSharedScope() async throws {
        for mode in ["record", "replay"] {
            let configuration = try await load(file: "cache: {mode: \(mode), scope: per_key}")
            #expect(configuration.cache.mode.rawValue == mode)
            #expect(configuration.effectiveScope == .shared)
        }
        #expect(try await load(file: "cache: {mode: normal, scope: per_key}").effectiveScope == .perKey)
        #expect(try await load(file: nil, environment: ["GEMCACHE_CACHE_MODE": "replay"]).cache.mode == .replay)
    }

    @Test func theShippedProxyConfParses() async throws {
        let shipped = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("proxy.conf").path
        let configuration = try await ProxyConfiguration.load(filePath: shipped, environment: [:])
        #expect(configuration.limits.models == ProxyConfiguration.builtInFreeTier)
        #expect(configuration.prices == ProxyConfiguration.builtInPrices)
        #expect(configuration.upstream.retry.attempts == 3)
        #expect(configuration.cache.ttl.countTokens == .seconds(30 * 86400))
    }

    /// `store.sync_interval: 0` synced every commit before `store.durability` existed; such a file still
    /// loads, as durable commits.
    @Test func aZeroSyncIntervalStillMeansDurableCommits() async throws {
        let configuration = try await load(file: "store: {durability: deferred, sync_interval: 0}", environment: [:], overrides: [:])
        #expect(configuration.store.durability == .commit)
    }

    @Test func layersRiseFromFileToEnvironmentToFlags() async throws {
        let file = """
            listen: {host: 0.0.0.0, port: 9000}
            cache:
              default_ttl: 30m
              ttl: {embed: 7d}
            store: {max_size: 256MiB, durability: deferred, sync_interval: 5s}
            """
        let configuration = try await load(
            file: file,
            environment: ["GEMCACHE_LISTEN_PORT": "9100", "GEMCACHE_CACHE_DEFAULT_TTL": "90s"],
            overrides: ["listen.port": "9200"]
        )
        #expect(configuration.listen.host == "0.0.0.0")
        #expect(configuration.listen.port == 9200)
        #expect(configuration.cache.defaultTTL == .seconds(90))
        #expect(configuration.cache.ttl.embed == .seconds(7 * 86400))
        #expect(configuration.store.maxSize == 256 << 20)
        #expect(configuration.store.durability == .deferred)
        #expect(configuration.store.syncInterval == .seconds(5))
    }

    /// SPEC §1: a kind's TTL is its `cache.ttl` entry, else `cache.default_ttl`, else the built-in one,
    /// which is what proxy.conf ships.
    @Test func aKindThatCacheTTLDoesNotNameTakesTheDefaultTTL() async throws {
        let hour = 3600
        let day = 86400
        let expected: [CachedRoute.Operation: Int] = [
            .generateContent: day, .streamGenerateContent: day, .countTokens: 30 * day, .embedContent: 30 * day,
            .batchEmbedContents: 30 * day, .listModels: hour, .getModel: hour, .openAIChat: day, .openAIEmbeddings: day,
        ]
        let shippedPath = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("proxy.conf").path
        let builtIn = try await load(file: nil).cache
        let shipped = try await ProxyConfiguration.load(filePath: shippedPath, environment: [:]).cache
        for operation in CachedRoute.Operation.allCases {
            let seconds = try #require(expected[operation])
            #expect(builtIn.ttl(for: operation) == .seconds(seconds), "\(operation)")
            #expect(shipped.ttl(for: operation) == builtIn.ttl(for: operation), "\(operation)")
        }

        let partial = try await load(file: "cache: {default_ttl: 2h, ttl: {embed: 7d}}").cache
        for operation in CachedRoute.Operation.allCases {
            let named = operation == .embedContent || operation == .batchEmbedContents
            #expect(partial.ttl(for: operation) == .seconds(named ? 7 * day : 2 * hour), "\(operation)")
        }
        let everyKind = try await load(file: nil, environment: ["GEMCACHE_CACHE_DEFAULT_TTL": "5m"]).cache
        #expect(CachedRoute.Operation.allCases.allSatisfy { everyKind.ttl(for: $0) == .seconds(300) })
    }

    @Test func tablesComeFromTheFile() async throws {
        let file = """
            limits:
              models:
                gemini-x: {rpm: 5, rpd: null}
            prices:
              gemini-x: {input: 1.5, output: 3}
            fallback: {gemini-pro: gemini-x}
            """
        let configuration = try await load(file: file)
        #expect(configuration.limits.models["gemini-x"] == .init(rpm: 5, tpm: nil, rpd: nil))
        #expect(configuration.prices["gemini-x"] == .init(input: 1.5, output: 3))
        #expect(configuration.fallback == ["gemini-pro": "gemini-x"])
    }

    @Test(arguments: [
        ("cache: {default_ttl: forever}", "cache.default_ttl"),
        ("cache: {ttl: {models: 0}}", "cache.ttl.models"),
        ("cache: {ttl: {count_tokens: soon}}", "cache.ttl.count_tokens"),
        ("cache: {ttl: {embedding: 7d}}", "cache.ttl.embedding"),
        ("cache: {normalise: text}", "cache.normalise"),
        ("listen: {port: 70000}", "listen.port"),
        ("store: {max_size: 12 parsecs}", "store.max_size"),
        ("store: {on_corrupt: delete}", "store.on_corrupt"),
        ("store: {sync_interval: -1s}", "store.sync_interval"),
        ("store: {durability: eventually}", "store.durability"),
        ("cache: {mode: playback}", "cache.mode"),
        ("upstream: {url: ftp://example.com}", "upstream.url"),
        ("auth: {upstream_key_env: my key}", "auth.upstream_key_env"),
        ("limits: {models: {gemini-x: {rpm: lots}}}", "limits.models.gemini-x.rpm"),
        ("prices: {gemini-x: {input: 1}}", "prices.gemini-x.output"),
        ("colour: blue", "colour"),
        ("listen: [1, 2]", "listen"),
        ("store: {shared: \"postgres://u:secret@h/db\"}", "store.shared"),
        ("telemetry: {otlp_endpoint: \"ftp://collector:4318\"}", "telemetry.otlp_endpoint"),
        ("telemetry: {otlp_endpoint: \"http://u:secret@collector:4318\"}", "telemetry.otlp_endpoint"),
        ("telemetry: {otlp_endpoint: collector}", "telemetry.otlp_endpoint"),
    ])
    func badFileSettingsNameTheirKey(file: String, key: String) async throws {
        let message = try #require(await problem(file: file))
        #expect(message.contains(key))
        #expect(!message.contains("\n"))
        #expect(!message.contains("secret"))
    }

    @Test func telemetryIsOffUnlessAnEndpointIsSet() async throws {
        #expect(try await load(file: "telemetry: {otlp_endpoint: null}").telemetry.otlpEndpoint == nil)
        let configuration = try await load(
            file: "telemetry: {otlp_endpoint: \"http://collector:4318/\", service_name: edge-cache}",
            environment: ["GEMCACHE_TELEMETRY_OTLP_ENDPOINT": "https://collector.example:4318/"]
        )
        #expect(configuration.telemetry.otlpEndpoint == "https://collector.example:4318")
        #expect(configuration.telemetry.serviceName == "edge-cache")
    }

    @Test func badEnvironmentSettingsNameTheirKey() async throws {
        let message = try #require(await problem(file: nil, environment: ["GEMCACHE_UPSTREAM_TIMEOUT": "-3s"]))
        #expect(message.contains("upstream.timeout"))
        #expect(message.contains("GEMCACHE_UPSTREAM_TIMEOUT"))
        let unknown = try #require(await problem(file: nil, environment: ["GEMCACHE_CACHE_TTL_FOREVER": "1"]))
        #expect(unknown.contains("GEMCACHE_CACHE_TTL_FOREVER"))
        #expect(await problem(file: nil, environment: ["GEMCACHE_ADMIN_TOKEN": "x", "GEMCACHE_SCOPE_SALT": "y"]) == nil)
    }

    @Test func valueForms() throws {
        #expect(try SettingValue.duration("90", positive: true) == .seconds(90))
        #expect(try SettingValue.duration("30m", positive: true) == .seconds(1800))
        #expect(try SettingValue.duration("7d", positive: true) == .seconds(604_800))
        #expect(try SettingValue.duration("0", positive: false) == .zero)
        #expect(throws: SettingProblem.self) { try SettingValue.duration("0", positive: true) }
        #expect(try SettingValue.size("4GiB", minimum: 1) == 4 << 30)
        #expect(try SettingValue.size("512KiB", minimum: 1) == 512 << 10)
        #expect(try SettingValue.size("1048576", minimum: 1) == 1 << 20)
        #expect(try SettingValue.boolean("off") == false)
    }

    /// Issue #15, class 13: every duration is a finite number of at most ten years (the bound of
    /// X-Gemcache-TTL), read without trapping, whatever the text.
    @Test func durationsAreBoundedToTenYears() throws {
        #expect(try SettingValue.duration("315360000", positive: true) == .seconds(315_360_000))
        #expect(try SettingValue.duration("3650d", positive: true) == .seconds(315_360_000))
        for raw in ["315360001", "3651d", "1e300", "-1", "nan", "inf", "-inf", "99999999999999999999d", "9223372036854775807", "1e19ms", "0.0001"] {
            #expect(throws: SettingProblem.self, "\(raw)") { try SettingValue.duration(raw, positive: true) }
        }
    }

    @Test(arguments: [
        "GEMCACHE_UPSTREAM_TIMEOUT", "GEMCACHE_UPSTREAM_CONNECT_TIMEOUT", "GEMCACHE_UPSTREAM_RETRY_BUDGET", "GEMCACHE_STORE_SYNC_INTERVAL",
        "GEMCACHE_CACHE_DEFAULT_TTL", "GEMCACHE_CACHE_TTL_GENERATE", "GEMCACHE_CACHE_TTL_COUNT_TOKENS", "GEMCACHE_CACHE_TTL_EMBED",
        "GEMCACHE_CACHE_TTL_MODELS", "GEMCACHE_CACHE_TTL_OPENAI", "GEMCACHE_CACHE_STALE_IF_ERROR", "GEMCACHE_AUTH_VERIFY_TTL",
        "GEMCACHE_LIMITS_MAX_WAIT", "GEMCACHE_LIMITS_CLIENT_TIMEOUT",
    ])
    func everyDurationSettingRefusesAValueNearTwoToTheSixtyThree(variable: String) async throws {
        let message = try #require(await problem(file: nil, environment: [variable: "9223372036854775807"]))
        #expect(message.contains(variable) && message.contains("at most 10 years") && !message.contains("\n"))
    }
}
