import Configuration
import Foundation
import GemcacheStore
import SystemPackage
import Yams

/// A setting that stops start-up: names the key (and where it came from) and the problem, on one line.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    /// The dotted key, e.g. `cache.default_ttl`, or the file or variable at fault.
    public let key: String
    public let problem: String

    public var description: String { "invalid setting \(key): \(problem)" }
}

extension ProxyConfiguration {
    /// The settings whose names are secrets' variables, not settings (SPEC §1).
    static let secretVariableNames: Set<String> = [
        "GEMCACHE_CLIENT_TOKENS", "GEMCACHE_ADMIN_TOKEN", "GEMCACHE_SCOPE_SALT", EgressProxy.credentialsVariable,
    ]

    /// Builds the configuration from, in rising priority: defaults, `proxy.conf`, `GEMCACHE_*` variables, `overrides`.
    ///
    /// - Parameters:
    ///   - filePath: The settings file, or nil for none (the command line passes `proxy.conf` when it exists).
    ///   - environment: The process environment.
    ///   - overrides: Command-line flags by dotted key (`listen.port`).
    /// - Throws: ``ConfigurationError`` naming the first bad or unknown key.
    public static func load(
        filePath: String?,
        environment: [String: String],
        overrides: [String: String] = [:]
    ) async throws(ConfigurationError) -> ProxyConfiguration {
        if let filePath, !FileManager.default.fileExists(atPath: filePath) {
            throw ConfigurationError(key: filePath, problem: "config file not found")
        }

        var configuration = ProxyConfiguration()
        var providers: [any ConfigProvider] = [
            InMemoryProvider(
                name: "flags",
                values: Dictionary(
                    uniqueKeysWithValues: overrides.map { (AbsoluteConfigKey(ConfigKey($0.key)), ConfigValue(.string($0.value), isSecret: false)) }
                )
            ),
            EnvironmentVariablesProvider(environmentVariables: environment).prefixKeys(with: ["gemcache"]),
        ]
        if let path = filePath {
            let root = try parseFile(path)
            try checkKnownKeys(root, path: path)
            try configuration.applyTables(root)
            do {
                providers.append(try await FileProvider<YAMLSnapshot>(filePath: FilePath(path)))
            } catch {
                throw ConfigurationError(key: path, problem: "cannot read: \(error)")
            }
        }
        try checkEnvironment(environment)

        let reader = ConfigReader(providers: providers)
        for setting in settings {
            guard let raw = reader.string(forKey: ConfigKey(setting.key)) else { continue }
            do {
                try setting.apply(&configuration, raw.trimmingCharacters(in: .whitespaces))
            } catch {
                let origin =
                    overrides[setting.key] != nil
                    ? "flag" : environment[environmentName(setting.key)] != nil ? environmentName(setting.key) : "proxy.conf"
                throw ConfigurationError(key: "\(setting.key) (\(origin))", problem: (error as? SettingProblem)?.problem ?? "\(error)")
            }
        }
        if let tls = configuration.listen.tls, tls.certFile == nil || tls.keyFile == nil {
            throw ConfigurationError(key: "listen.tls", problem: "needs both cert_file and key_file (PEM)")
        }
        return configuration
    }

    /// `cache.default_ttl` → `GEMCACHE_CACHE_DEFAULT_TTL`.
    static func environmentName(_ key: String) -> String {
        "GEMCACHE_" + key.uppercased().replacingOccurrences(of: ".", with: "_")
    }

    // MARK: - File

    private static func parseFile(_ path: String) throws(ConfigurationError) -> Node.Mapping {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationError(key: path, problem: "cannot read: \(error.localizedDescription)")
        }
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch {
            throw ConfigurationError(key: path, problem: "not valid YAML: \(String(describing: error).split(separator: "\n").first ?? "")")
        }
        guard let node else { return Node.Mapping([]) }
        guard let mapping = node.mapping else {
            throw ConfigurationError(key: path, problem: "the top level must be a mapping of settings")
        }
        return mapping
    }

    /// Every key in the file must be a known setting, a known section, or inside a per-model table.
    private static func checkKnownKeys(_ root: Node.Mapping, path: String) throws(ConfigurationError) {
        let known = Set(settings.map(\.key))
        let sections = Set(
            settings.flatMap { setting in
                let parts = setting.key.split(separator: ".")
                return (1..<parts.count).map { parts[..<$0].joined(separator: ".") }
            }
        )
        func walk(_ mapping: Node.Mapping, prefix: String) throws(ConfigurationError) {
            for (keyNode, value) in mapping {
                guard let name = keyNode.string else {
                    throw ConfigurationError(key: prefix.isEmpty ? path : prefix, problem: "keys must be strings")
                }
                let key = prefix.isEmpty ? name : "\(prefix).\(name)"
                if tableKeys.contains(key) {
                    continue
                }
                if known.contains(key) {
                    if value.scalar == nil {
                        throw ConfigurationError(key: key, problem: "expected a single value")
                    }
                } else if sections.contains(key), let child = value.mapping {
                    try walk(child, prefix: key)
                } else if sections.contains(key), isNull(value) {
                    continue
                } else {
                    throw ConfigurationError(key: key, problem: "unknown setting")
                }
            }
        }
        try walk(root, prefix: "")
    }

    private static let tableKeys: Set<String> = ["limits.models", "prices", "fallback"]

    private static func isNull(_ node: Node) -> Bool {
        guard let scalar = node.scalar, scalar.style == .plain else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(scalar.string)
    }

    /// The per-model tables, which live in the file only.
    private mutating func applyTables(_ root: Node.Mapping) throws(ConfigurationError) {
        func table(_ path: [String]) throws(ConfigurationError) -> [(String, Node)] {
            var node: Node? = .mapping(root)
            for component in path {
                node = node?.mapping?[component]
            }
            guard let node, !Self.isNull(node) else { return [] }
            guard let mapping = node.mapping else {
                throw ConfigurationError(key: path.joined(separator: "."), problem: "expected a mapping by model id")
            }
            var rows: [(String, Node)] = []
            for (key, value) in mapping {
                guard let name = key.string, !name.isEmpty else {
                    throw ConfigurationError(key: path.joined(separator: "."), problem: "model ids must be strings")
                }
                rows.append((name, value))
            }
            return rows
        }
        func fields(_ node: Node, _ key: String, allowed: Set<String>) throws(ConfigurationError) -> [String: String] {
            guard let mapping = node.mapping else {
                throw ConfigurationError(key: key, problem: "expected a mapping such as {\(allowed.sorted().joined(separator: ", "))}")
            }
            var values: [String: String] = [:]
            for (name, value) in mapping {
                guard let name = name.string, allowed.contains(name) else {
                    throw ConfigurationError(key: "\(key).\(name.string ?? "?")", problem: "unknown setting")
                }
                guard let scalar = value.scalar else {
                    throw ConfigurationError(key: "\(key).\(name)", problem: "expected a single value")
                }
                if !Self.isNull(value) { values[name] = scalar.string }
            }
            return values
        }

        for (model, node) in try table(["limits", "models"]) {
            let key = "limits.models.\(model)"
            let values = try fields(node, key, allowed: ["rpm", "tpm", "rpd"])
            var limits = ModelLimits()
            for (name, raw) in values {
                guard let number = Int(raw), number >= 0 else {
                    throw ConfigurationError(key: "\(key).\(name)", problem: "expected a whole number ≥ 0 or null, got \"\(raw)\"")
                }
                switch name {
                case "rpm": limits.rpm = number
                case "tpm": limits.tpm = number
                default: limits.rpd = number
                }
            }
            self.limits.models[model] = limits
        }
        for (model, node) in try table(["prices"]) {
            let key = "prices.\(model)"
            let values = try fields(node, key, allowed: ["input", "output"])
            var price = ModelPrice(input: 0, output: 0)
            for name in ["input", "output"] {
                guard let raw = values[name] else {
                    throw ConfigurationError(key: "\(key).\(name)", problem: "missing (USD per million tokens)")
                }
                guard let number = Double(raw), number >= 0, number.isFinite else {
                    throw ConfigurationError(key: "\(key).\(name)", problem: "expected a number ≥ 0, got \"\(raw)\"")
                }
                if name == "input" { price.input = number } else { price.output = number }
            }
            self.prices[model] = price
        }
        for (model, node) in try table(["fallback"]) {
            guard let target = node.scalar?.string, !target.isEmpty, !Self.isNull(node) else {
                throw ConfigurationError(key: "fallback.\(model)", problem: "expected the id of the model to answer instead")
            }
            guard target != model else {
                throw ConfigurationError(key: "fallback.\(model)", problem: "a model cannot fall back to itself")
            }
            self.fallback[model] = target
        }
    }

    // MARK: - Environment

    private static func checkEnvironment(_ environment: [String: String]) throws(ConfigurationError) {
        let known = Set(settings.map { environmentName($0.key) })
        for name in environment.keys where name.hasPrefix("GEMCACHE_") {
            if !known.contains(name) && !secretVariableNames.contains(name) {
                throw ConfigurationError(
                    key: name,
                    problem: "unknown setting (no key \(name.dropFirst(9).lowercased().replacingOccurrences(of: "_", with: ".")) exists)"
                )
            }
        }
    }
}

// MARK: - The scalar settings

/// Why one value was refused, before the key is attached.
struct SettingProblem: Error {
    let problem: String
    init(_ problem: String) { self.problem = problem }
}

private struct Setting: Sendable {
    let key: String
    let apply: @Sendable (inout ProxyConfiguration, String) throws -> Void
}

private let settings: [Setting] = [
    Setting(key: "listen.host") { $0.listen.host = try SettingValue.nonEmpty($1) },
    Setting(key: "listen.port") { $0.listen.port = try SettingValue.integer($1, in: 0...65535) },
    Setting(key: "listen.tls.cert_file") { $0.listen.tls = .init(certFile: try SettingValue.nonEmpty($1), keyFile: $0.listen.tls?.keyFile) },
    Setting(key: "listen.tls.key_file") { $0.listen.tls = .init(certFile: $0.listen.tls?.certFile, keyFile: try SettingValue.nonEmpty($1)) },
    Setting(key: "upstream.url") { $0.upstream.url = try SettingValue.httpURL($1) },
    Setting(key: "upstream.timeout") { $0.upstream.timeout = try SettingValue.duration($1, positive: true) },
    Setting(key: "upstream.connect_timeout") { $0.upstream.connectTimeout = try SettingValue.duration($1, positive: true) },
    Setting(key: "upstream.max_connections") { $0.upstream.maxConnections = try SettingValue.integer($1, in: 1...100_000) },
    Setting(key: "upstream.retry.attempts") { $0.upstream.retry.attempts = try SettingValue.integer($1, in: 1...100) },
    Setting(key: "upstream.retry.budget") { $0.upstream.retry.budget = try SettingValue.duration($1, positive: false) },
    Setting(key: "upstream.proxy") { $0.upstream.proxy = try SettingValue.egressProxy($1) },
    Setting(key: "store.path") { $0.store.path = try SettingValue.nonEmpty($1) },
    Setting(key: "store.max_size") { $0.store.maxSize = try SettingValue.size($1, minimum: 1 << 20) },
    Setting(key: "store.on_corrupt") { $0.store.onCorrupt = try SettingValue.choice($1) },
    Setting(key: "store.durability") { $0.store.durability = try SettingValue.choice($1) },
    // `sync_interval: 0` meant "sync every commit" before `durability` existed: it still does.
    Setting(key: "store.sync_interval") { configuration, value in
        let interval = try SettingValue.duration(value, positive: false)
        if interval == .zero { configuration.store.durability = .commit } else { configuration.store.syncInterval = interval }
    },
    Setting(key: "store.shared") { $0.store.shared = try SettingValue.optionalURL($1, schemes: ["postgres", "postgresql"]) },
    Setting(key: "cache.normalize") { $0.cache.normalize = try SettingValue.choice($1) },
    Setting(key: "cache.scope") { $0.cache.scope = try SettingValue.choice($1) },
    Setting(key: "cache.scope_salt_env") { $0.cache.scopeSaltEnv = try SettingValue.variableName($1) },
    Setting(key: "cache.default_ttl") { $0.cache.defaultTTL = try SettingValue.duration($1, positive: true) },
    Setting(key: "cache.ttl.generate") { $0.cache.ttl.generate = try SettingValue.duration($1, positive: true) },
    Setting(key: "cache.ttl.count_tokens") { $0.cache.ttl.countTokens = try SettingValue.duration($1, positive: true) },
    Setting(key: "cache.ttl.embed") { $0.cache.ttl.embed = try SettingValue.duration($1, positive: true) },
    Setting(key: "cache.ttl.models") { $0.cache.ttl.models = try SettingValue.duration($1, positive: true) },
    Setting(key: "cache.ttl.openai") { $0.cache.ttl.openai = try SettingValue.duration($1, positive: true) },
    Setting(key: "cache.stale_if_error") { $0.cache.staleIfError = try SettingValue.duration($1, positive: false) },
    Setting(key: "cache.finish_aborted_streams") { $0.cache.finishAbortedStreams = try SettingValue.boolean($1) },
    Setting(key: "cache.max_entry_size") { $0.cache.maxEntrySize = try SettingValue.size($1, minimum: 1) },
    Setting(key: "cache.mode") { $0.cache.mode = try SettingValue.choice($1) },
    Setting(key: "auth.mode") { $0.auth.mode = try SettingValue.choice($1) },
    Setting(key: "auth.verify_ttl") { $0.auth.verifyTTL = try SettingValue.duration($1, positive: true) },
    Setting(key: "auth.upstream_key_env") { $0.auth.upstreamKeyEnv = try SettingValue.variableName($1) },
    Setting(key: "auth.client_tokens_env") { $0.auth.clientTokensEnv = try SettingValue.variableName($1) },
    Setting(key: "admin.token_env") { $0.admin.tokenEnv = try SettingValue.variableName($1) },
    Setting(key: "limits.enforce") { $0.limits.enforce = try SettingValue.boolean($1) },
    Setting(key: "limits.max_wait") { $0.limits.maxWait = try SettingValue.duration($1, positive: false) },
    Setting(key: "limits.max_body") { $0.limits.maxBody = try SettingValue.size($1, minimum: 1024) },
    Setting(key: "limits.client_timeout") { $0.limits.clientTimeout = try SettingValue.duration($1, positive: true) },
    Setting(key: "telemetry.otlp_endpoint") { $0.telemetry.otlpEndpoint = try SettingValue.otlpEndpoint($1) },
    Setting(key: "telemetry.service_name") { $0.telemetry.serviceName = try SettingValue.nonEmpty($1) },
]
