import AsyncHTTPClient
import Foundation
import GemcacheKey
import GemcacheStore
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1

extension GeminiProxy {
    /// `batchEmbedContents`, cached per item (SPEC §2): cached items are served, only the missing ones
    /// go upstream in one call, and the results are merged in order. All hits: HIT; none: MISS;
    /// some: PARTIAL with `X-Gemcache-Items: hits=H, misses=M`.
    func batchEmbed(_ prepared: Prepared, logger: Logger) async throws -> Response {
        let batch = prepared.request as? [String: Any]
        guard let items = batch?["requests"] as? [Any], !items.isEmpty else {
            return try await answer(prepared, connection: nil, logger: logger)  // not a batch this proxy can split: cache it whole
        }
        guard items.count <= Self.maxBatchItems else {
            throw ProxyError.invalidArgument(
                "* BatchEmbedContentsRequest.requests: at most \(Self.maxBatchItems) requests are allowed per batch, got \(items.count)."
            )
        }
        let controls = prepared.controls
        let keyed = try items.map { item throws(ProxyError) in try itemKey(item, prepared: prepared) }
        let keys = keyed.map(\.key)
        var embeddings: [Any?] = Array(repeating: nil, count: items.count)
        let servesCached = !controls.noCache && !controls.noStore && access.mayServeCached(credentialTag: prepared.scope.credentialTag)
        if servesCached || replay != nil {
            // Lookups overlap (with a shared tier, their round trips), at most `lookupConcurrency` at once.
            let found = await withTaskGroup(of: (Int, CacheEntry?).self) { group in
                var found: [Int: CacheEntry] = [:]
                for (index, key) in keys.enumerated() {
                    if index >= Self.lookupConcurrency, let (done, entry) = await group.next() { found[done] = entry }
                    group.addTask { (index, await self.tiers.fresh(key, maxAge: self.replay == nil ? controls.maxAge : nil, logger: logger)) }
                }
                for await (done, entry) in group { found[done] = entry }
                return found
            }
            for (index, entry) in found { embeddings[index] = StorePolicy.parse(entry.body) }
        }
        let missing = embeddings.indices.filter { embeddings[$0] == nil }
        if let replay, let first = missing.first {
            // Replay answers a batch whole or not at all: the first missing item names its nearest recording.
            throw replay.notRecorded(prepared.recorded(canonical: keyed[first].canonical), model: prepared.model, endpoint: prepared.route.endpoint)
        }
        let hits = items.count - missing.count
        var status = 200
        var upstreamHeaders: [(name: String, value: String)] = [("Content-Type", "application/json; charset=UTF-8")]
        var stored = false
        if !missing.isEmpty {
            if controls.onlyIfCached {
                throw ProxyError.notEveryItemCached
            }
            var request = batch ?? [:]
            request["requests"] = missing.map { items[$0] }
            let body = Array((try? JSONSerialization.data(withJSONObject: request)) ?? Data())
            let (response, _) = try await exchange(prepared, body: body)
            let answer = try await response.collect(upTo: configuration.limits.maxBody)
            status = response.status
            upstreamHeaders = response.replayableHeaders
            ledger.recordUpstreamCall(model: prepared.model, status: status, tokens: .zero, attribution: prepared.attribution)
            if status == 200 { access.recordAccepted(credentialTag: prepared.scope.credentialTag) }
            guard status == 200, let returned = (StorePolicy.parse(answer) as? [String: Any])?["embeddings"] as? [Any],
                returned.count == missing.count
            else {
                // An error, or an answer that does not line up with the items: passed on as it came.
                ledger.recordAnswer(model: prepared.model, outcome: .miss, status: status, tokens: .zero, attribution: prepared.attribution)
                traceAnswer(prepared, tokens: .zero)
                let headers = forwardedHeaders(upstreamHeaders, outcome: .miss, status: status, stored: false, key: prepared.key)
                return Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: answer)))
            }
            var saves: [(item: ItemKey, body: [UInt8])] = []
            for (position, index) in missing.enumerated() {
                embeddings[index] = returned[position]
                if !controls.noStore, let bytes = try? JSONSerialization.data(withJSONObject: returned[position]) {
                    saves.append((keyed[index], Array(bytes)))
                }
            }
            // Stored together: one group commit in the store rather than one per item.
            let headers = upstreamHeaders
            stored = await withTaskGroup(of: Bool.self) { group in
                for save in saves {
                    group.addTask {
                        await self.save(
                            save.body,
                            status: 200,
                            headers: headers,
                            usage: .zero,
                            key: save.item.key,
                            canonical: save.item.canonical,
                            prepared: prepared,
                            alias: nil
                        )
                    }
                }
                return await group.reduce(!controls.noStore) { $0 && $1 }
            }
        }
        let outcome: CacheOutcome = missing.isEmpty ? .hit : hits == 0 ? (controls.noStore ? .bypass : controls.noCache ? .refresh : .miss) : .partial
        ledger.recordAnswer(model: prepared.model, outcome: outcome, status: status, tokens: .zero, attribution: prepared.attribution)
        traceAnswer(prepared, tokens: .zero)
        ledger.recordSavedItems(hits)
        let merged = (try? JSONSerialization.data(withJSONObject: ["embeddings": embeddings.map { $0 ?? NSNull() }])) ?? Data()
        var headers = forwardedHeaders(upstreamHeaders, outcome: outcome, status: status, stored: stored, key: prepared.key)
        if outcome == .hit {
            headers[.cacheStatus] = "gemcache; hit; key=\"\(prepared.key.hex)\""
        }
        headers[.gemcacheItems] = "hits=\(hits), misses=\(missing.count)"
        return Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: merged)))
    }

    /// Google's limit on the items of one batch (gemini-api.md): a larger batch is refused before any
    /// item is keyed.
    static let maxBatchItems = 100
    /// Item lookups in flight at once for one batch.
    static let lookupConcurrency = 16

    /// One batch item's key and the canonical form that entered it.
    struct ItemKey: Sendable {
        let key: CacheKey
        let canonical: [UInt8]
    }

    /// The key of one batch item: the item's canonical form under the batch's model, scope and namespace.
    private func itemKey(_ item: Any, prepared: Prepared) throws(ProxyError) -> ItemKey {
        guard JSONSerialization.isValidJSONObject(item), let bytes = try? JSONSerialization.data(withJSONObject: item, options: [.sortedKeys]) else {
            throw .invalidArgument("Every element of requests must be an object.")
        }
        let canonical: [UInt8]
        do {
            canonical = try BodyNormalizer.normalize(Array(bytes), level: configuration.cache.normalize, dialect: .gemini)
        } catch {
            throw .invalidArgument(error.message)
        }
        let key = CacheKeyComponents(
            apiVersion: prepared.route.apiVersion,
            endpoint: "batchEmbedContents.item",
            model: prepared.route.model,
            query: keyQuery(prepared.query, isGET: false),
            scope: prepared.scope.tag,
            namespace: prepared.controls.namespace,
            normalizedBody: canonical
        ).key
        return ItemKey(key: key, canonical: canonical)
    }
}

extension Ledger {
    /// Items of a batch answered from the cache (`saved_items`).
    func recordSavedItems(_ count: Int) {
        if count > 0 { store.increment([Counter.total(.savedItems)], by: Int64(count), copiesUnder: Counter.periods(at: now())) }
    }
}

extension HTTPField.Name {
    static let gemcacheItems = Self("X-Gemcache-Items")!
}
