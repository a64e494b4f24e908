import GemcacheKey
public import GemcacheStore

extension PurgeFilter {
    /// The filter of `gemcache purge`, from its option values as typed.
    /// - Parameter olderThan: A duration written like a setting (`3600`, `90s`, `30m`, `24h`, `7d`).
    /// - Throws: ``PurgeArgumentError`` naming the option at fault, or when nothing is named.
    public init(all: Bool, model: String?, namespace: String?, keyHex: String?, olderThan: String?) throws(PurgeArgumentError) {
        self.init(all: all, model: model.map { $0.hasPrefix("models/") ? String($0.dropFirst(7)) : $0 }, namespace: namespace)
        if let keyHex {
            guard let key = CacheKey(hex: keyHex) else {
                throw PurgeArgumentError("--key must be 64 hex digits (an X-Gemcache-Key), got \"\(keyHex)\"")
            }
            self.key = key
        }
        if let olderThan {
            do {
                self.olderThan = try SettingValue.duration(olderThan, positive: false)
            } catch {
                throw PurgeArgumentError("--older-than: \(error.problem)")
            }
        }
        guard !isEmpty else {
            throw PurgeArgumentError("say what to purge: --all, or any of --model, --namespace, --key, --older-than")
        }
    }
}

/// A `gemcache purge` option is malformed or missing (one line).
public struct PurgeArgumentError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
