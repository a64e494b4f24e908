/// The settings of the store (`store.*` in proxy.conf, SPEC §1 and §9).
public struct StoreConfiguration: Sendable, Equatable {
    public var path = "./gemcache-data"
    /// The LMDB map size in bytes.
    public var maxSize = 4 << 30
    public var onCorrupt = OnCorrupt.moveAside
    public var durability = Durability.commit
    /// With ``Durability/deferred``, how long a commit may stay in the page cache before the disk sync.
    public var syncInterval: Duration = .seconds(1)
    /// A shared second tier (`postgres://…`), or nil. Read by the proxy's shared tier, not by ``CacheStore``.
    public var shared: String? = nil

    public init() {}

    /// When a commit reaches the disk.
    public enum Durability: String, Sendable, Equatable, CaseIterable {
        /// Each commit is synced before its writers learn it is done (`MDB_NOMETASYNC`: one data sync per
        /// commit; a machine crash may undo the last commit only).
        case commit
        /// Commits skip the sync (`MDB_NOSYNC`) and are synced within ``StoreConfiguration/syncInterval``;
        /// they survive the process, not a machine crash, after which the store is moved aside.
        case deferred
    }

    /// What to do with a store that cannot be opened.
    public enum OnCorrupt: String, Sendable, Equatable, CaseIterable {
        /// Move it aside and start empty.
        case moveAside = "move_aside"
        /// Refuse to start.
        case fail
        /// Move it aside, then copy its intact entries into the empty store (``StoreSalvage``).
        case salvage
    }
}
