import AsyncHTTPClient
import Foundation
import GemcacheStore
import Logging
import NIOCore
import NIOHTTP1

/// Reads the stats document for `gemcache stats`: from a running proxy, or from a store directly
/// (also while proxies run on it: LMDB lets several processes share the environment).
public enum StatsReader {
    /// The stats document of the store in `configuration.store.path`, as JSON values: since counting
    /// began, or over the window from `since` to `until` (``StatsWindow``).
    ///
    /// The store is never created, moved aside or given a salt here: a missing or unreadable store
    /// is an error.
    /// - Throws: ``StoreError`` when there is no readable store at the path, ``StatsWindowError`` for a
    ///   malformed window.
    public static func fromStore(configuration: ProxyConfiguration, since: String? = nil, until: String? = nil) async throws -> [String: Any] {
        let window = try StatsWindow.parse(since: since, until: until, now: CacheStore.wallClock())
        var settings = configuration.store
        settings.onCorrupt = .fail
        guard FileManager.default.fileExists(atPath: settings.path + "/data.mdb") else {
            throw StoreError("no gemcache store at \(settings.path)")
        }
        let logger = Logger(label: "gemcache.stats", factory: { _ in SwiftLogNoOpLogHandler() })
        let store = try await CacheStore.open(configuration: settings, scopeSalt: [], logger: logger)
        do {
            let json = try await Ledger(store: store, configuration: configuration).document(window: window).json
            await store.close()
            return json
        } catch {
            await store.close()
            throw error
        }
    }

    /// The stats document a proxy serves at `<url>/_gemcache/stats`, over the window from `since` to
    /// `until` when either is given.
    /// - Throws: ``StatsReaderError`` when the proxy cannot be reached or does not answer with stats
    ///   (for a malformed window, with the proxy's message).
    public static func fromProxy(url: String, since: String? = nil, until: String? = nil) async throws -> [String: Any] {
        let base = url.hasSuffix("/") ? String(url.dropLast()) : url
        var query = URLComponents()
        query.queryItems = [("since", since), ("until", until)].compactMap { name, value in value.map { URLQueryItem(name: name, value: $0) } }
        // `+` of a time zone offset would read as a space.
        let encoded = query.percentEncodedQuery?.replacingOccurrences(of: "+", with: "%2B")
        let request = HTTPClientRequest(url: base + "/_gemcache/stats" + (encoded.map { "?" + $0 } ?? ""))
        let body: ByteBuffer
        do {
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
            body = try await response.body.collect(upTo: 16 << 20)
            guard response.status == .ok else {
                let message =
                    (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any])
                    .flatMap { $0["error"] as? [String: Any] }?["message"] as? String
                throw StatsReaderError("\(base) answered \(response.status.code) for /_gemcache/stats" + (message.map { ": " + $0 } ?? ""))
            }
        } catch let error as StatsReaderError {
            throw error
        } catch {
            throw StatsReaderError("cannot read \(base)/_gemcache/stats: \(error)")
        }
        guard let json = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any] else {
            throw StatsReaderError("\(base)/_gemcache/stats did not answer a stats document")
        }
        return json
    }
}

/// Stats could not be read from a proxy (one line, for the command line).
public struct StatsReaderError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
