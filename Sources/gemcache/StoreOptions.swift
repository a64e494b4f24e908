import ArgumentParser
import Foundation
import GemcacheCore
import GemcacheStore

/// The options that name a store for `purge`, `export` and `import`: `--data`, else `store.path` of
/// the settings (`--config`, or proxy.conf in the working directory, and the environment).
struct StoreOptions: ParsableArguments {
    @Option(help: "Directory of the LMDB store (store.path); safe while proxies run on it.")
    var data: String?
    @Option(help: "The YAML settings file, for store.path and cache.scope_salt_env (default: proxy.conf, if present).")
    var config: String?

    /// The settings with `--data` applied; exits with one line when they are invalid.
    func settings() async -> ProxyConfiguration {
        let file = config ?? (FileManager.default.fileExists(atPath: "proxy.conf") ? "proxy.conf" : nil)
        do {
            return try await ProxyConfiguration.load(
                filePath: file,
                environment: ProcessInfo.processInfo.environment,
                overrides: data.map { ["store.path": $0] } ?? [:]
            )
        } catch {
            fail(error.description)
        }
    }

    /// Opens the store (never moving it aside); exits with one line when it cannot.
    func openStore(_ settings: ProxyConfiguration, create: Bool = false) async -> CacheStore {
        do {
            return try await CacheStore.openForCommand(configuration: settings.store, create: create)
        } catch {
            fail(error.description)
        }
    }

    /// The salt from the variable named by `cache.scope_salt_env`, when it is set.
    func saltFromEnvironment(_ settings: ProxyConfiguration) -> [UInt8]? {
        ProcessInfo.processInfo.environment[settings.cache.scopeSaltEnv].flatMap { $0.isEmpty ? nil : Array($0.utf8) }
    }
}
