import GemcacheKey
import GemcacheStore
import Synchronization

/// The slow path's part in the fast path: recording which raw request leads to which cache key.
extension GeminiProxy {
    /// The raw key of a request (``RawRequestKey``), or nil when the fast path would never look it up
    /// (batchEmbedContents, a target it does not key raw) or when a header outside the raw key entered
    /// the cache key (`X-Goog-FieldMask`): the same raw bytes without that header must not lead to this
    /// entry. The scope is the key's own.
    func rawKey(_ prepared: Prepared) -> [UInt8]? {
        guard prepared.route.operation != .batchEmbedContents,
            !prepared.headers.contains(where: { $0.name.lowercased() == "x-goog-fieldmask" })
        else { return nil }
        var keyed: [UInt8] = []
        let method: RawRequestKey.Method = prepared.route.isGET ? .get : .post
        let target = Array(prepared.target.pathAndQuery.utf8)
        guard target.withUnsafeBytes({ RawRequestKey.parse($0, method: method, keyed: &keyed) }) != nil else { return nil }
        return RawKeyHasher(normalize: configuration.cache.normalize).key(
            target: keyed,
            scope: Array(prepared.scope.tag.utf8),
            namespace: prepared.controls.namespace.map { Array($0.utf8) },
            body: prepared.body
        )
    }

    /// Records, without delaying the answer, that `prepared`'s raw bytes lead to its key, so that the
    /// next byte-identical request is answered on the fast path. Skipped when that alias is already there.
    func recordAlias(_ prepared: Prepared) {
        guard let rawKey = rawKey(prepared), store.aliasedKey(rawKey) != prepared.key else { return }
        Self.recordAlias(rawKey, for: prepared.key, in: store)
    }

    /// Records `rawKey → key` in `store` (``CacheStore/recordAliasSoon(_:for:)``: batched, without
    /// delaying the answer); both paths, the fast path when it answered new bytes through their cache key.
    static func recordAlias(_ rawKey: [UInt8], for key: CacheKey, in store: CacheStore) {
        guard let write = store.recordAliasSoon(rawKey, for: key) else { return }
        aliasWrites.withLock { writes in
            let id = writes.next
            writes.next += 1
            // The watcher removes the write once it landed, after this lock is released (it takes the lock too).
            writes.running[id] = Task {
                await write.value
                _ = aliasWrites.withLock { $0.running.removeValue(forKey: id) }
            }
        }
    }

    /// Returns once every alias write started before the call has landed (in any proxy of this
    /// process): a test awaits this after a slow-path hit, before the repeat it expects on the fast path.
    package static func aliasWritesLanded() async {
        for write in aliasWrites.withLock({ Array($0.running.values) }) { await write.value }
    }
}

/// The alias writes under way in this process, so that ``GeminiProxy/aliasWritesLanded()`` can await them.
private let aliasWrites = Mutex<(next: Int, running: [Int: Task<Void, Never>])>((0, [:]))
