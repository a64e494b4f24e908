public import GemcacheKey
public import GemcacheStore

/// Every setting of gemcache (SPEC §1), with the built-in defaults.
///
/// Built once at start-up by ``ProxyConfiguration/load(filePath:environment:overrides:)`` from
/// `proxy.conf`, the `GEMCACHE_*` environment and the command-line flags, then passed by value.
/// Secrets are never settings: the configuration only names the environment variables that hold them.
public struct ProxyConfiguration: Sendable, Equatable {
    public var listen = Listen()
    public var upstream = Upstream()
    public var store = Store()
    public var cache = Cache()
    public var auth = Auth()
    public var admin = Admin()
    public var limits = Limits()
    /// USD per million tokens, by model id, for `saved_usd` (``builtInPrices`` unless the file says otherwise).
    public var prices = ProxyConfiguration.builtInPrices
    /// Model to answer from when the first one is out of quota (`{first: second}`).
    public var fallback: [String: String] = [:]
    public var telemetry = Telemetry()

    public init() {}

    /// The address the proxy listens on.
    public struct Listen: Sendable, Equatable {
        public var host = "127.0.0.1"
        public var port = 8080
        /// PEM files to serve HTTPS (and `wss://`) with (`listen.tls`); nil: plain HTTP.
        public var tls: TLSFiles? = nil

        /// The listener's certificate chain and private key.
        public struct TLSFiles: Sendable, Equatable {
            public var certFile: String?
            public var keyFile: String?

            public init(certFile: String?, keyFile: String?) {
                self.certFile = certFile
                self.keyFile = keyFile
            }
        }
    }

    /// The Gemini API the proxy forwards to.
    public struct Upstream: Sendable, Equatable {
        public var url = "https://generativelanguage.googleapis.com"
        /// Whole request, streams included.
        public var timeout: Duration = .seconds(120)
        public var connectTimeout: Duration = .seconds(10)
        public var maxConnections = 64
        public var retry = Retry()
        /// An HTTP proxy (`http://host:port`) to reach the upstream through; nil: `HTTPS_PROXY` and
        /// `NO_PROXY` from the environment decide (see ``EgressProxy``).
        public var proxy: String? = nil

        /// Upstream retries; `attempts` includes the first try.
        public struct Retry: Sendable, Equatable {
            public var attempts = 3
            public var budget: Duration = .seconds(60)
        }
    }

    /// The LMDB store (`store.*`), the store module's own settings.
    public typealias Store = StoreConfiguration

    /// How answers are keyed and kept.
    public struct Cache: Sendable, Equatable {
        public var normalize = NormalizationLevel.text
        public var scope = ScopeSetting.auto
        public var scopeSaltEnv = "GEMCACHE_SCOPE_SALT"
        /// `cache.default_ttl`: the TTL of every kind that `cache.ttl` does not name; nil: unset.
        public var defaultTTL: Duration? = nil
        /// `cache.ttl`: the kinds it names. ``ttl(for:)`` says which TTL an answer gets.
        public var ttl = TTLs()
        public var staleIfError: Duration = .zero
        public var finishAbortedStreams = true
        public var maxEntrySize = 16 << 20
        /// `cache.mode`: normal caching, recording fixtures, or replaying them (SPEC §11).
        public var mode = Mode.normal

        /// `cache.mode` (SPEC §11).
        public enum Mode: String, Sendable, Equatable, CaseIterable {
            /// Cache as usual.
            case normal
            /// Cache as usual, and keep each entry's canonical request, the entry never expiring.
            case record
            /// Answer only from recorded entries; never call the upstream, need no credential.
            case replay
        }

        /// Time to live per kind of answer, as `cache.ttl` names them; nil: not named.
        public struct TTLs: Sendable, Equatable {
            public var generate: Duration? = nil
            public var countTokens: Duration? = nil
            public var embed: Duration? = nil
            public var models: Duration? = nil
            public var openai: Duration? = nil

            /// Each kind's TTL when neither `cache.ttl` nor `cache.default_ttl` is set: what proxy.conf ships.
            static let builtIn = (
                generate: Duration.seconds(24 * 3600), countTokens: Duration.seconds(30 * 24 * 3600),
                embed: Duration.seconds(30 * 24 * 3600), models: Duration.seconds(3600), openai: Duration.seconds(24 * 3600)
            )
        }
    }

    /// `cache.scope`: who may share an entry.
    public enum ScopeSetting: String, Sendable, Equatable, CaseIterable {
        case auto
        case perKey = "per_key"
        case shared
    }

    /// Client authentication.
    public struct Auth: Sendable, Equatable {
        public var mode = Mode.passthrough
        public var verifyTTL: Duration = .seconds(600)
        public var upstreamKeyEnv = "GEMINI_API_KEY"
        public var clientTokensEnv = "GEMCACHE_CLIENT_TOKENS"

        /// `passthrough`: clients send their own Gemini key; `managed`: the proxy holds the keys.
        public enum Mode: String, Sendable, Equatable, CaseIterable {
            case passthrough
            case managed
        }
    }

    /// Admin actions over HTTP.
    public struct Admin: Sendable, Equatable {
        public var tokenEnv = "GEMCACHE_ADMIN_TOKEN"
    }

    /// The quota guard and request limits.
    public struct Limits: Sendable, Equatable {
        public var enforce = false
        public var maxWait: Duration = .seconds(30)
        /// Largest body the proxy buffers on a cached route.
        public var maxBody = 100 << 20
        /// How long the proxy waits for a client's bytes: a connection with an unfinished request, or
        /// idle between requests, is closed after this (slow clients); answers in progress are not cut.
        public var clientTimeout: Duration = .seconds(60)
        /// Free-tier limits by model id (``ProxyConfiguration/builtInFreeTier`` unless the file says
        /// otherwise); a missing number is unknown, never invented.
        public var models = ProxyConfiguration.builtInFreeTier
    }

    /// Traces of proxied requests (SPEC §7).
    public struct Telemetry: Sendable, Equatable {
        /// The OTLP/HTTP collector's base URL (`http://collector:4318`): spans go to its `/v1/traces`.
        /// nil: no tracing at all.
        public var otlpEndpoint: String? = nil
        /// The `service.name` of every span.
        public var serviceName = "gemcache"
    }

    /// Free-tier limits of one model.
    public struct ModelLimits: Sendable, Equatable {
        public var rpm: Int?
        public var tpm: Int?
        public var rpd: Int?

        public init(rpm: Int? = nil, tpm: Int? = nil, rpd: Int? = nil) {
            self.rpm = rpm
            self.tpm = tpm
            self.rpd = rpd
        }
    }

    /// Paid price of one model, USD per million tokens.
    public struct ModelPrice: Sendable, Equatable {
        public var input: Double
        public var output: Double

        public init(input: Double, output: Double) {
            self.input = input
            self.output = output
        }
    }

    /// The scope that applies: `shared` when recording or replaying (SPEC §11); otherwise `auto` is
    /// `per_key` in passthrough mode and `shared` in managed mode (SPEC §3).
    public var effectiveScope: ScopeSetting {
        guard cache.mode == .normal else { return .shared }
        return switch cache.scope {
        case .auto: auth.mode == .managed ? .shared : .perKey
        case .perKey, .shared: cache.scope
        }
    }
}
