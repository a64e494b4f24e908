/// The settings of the store (`store.*` in proxy.conf, SPEC §1 and §9).
public struct StoreConfiguration: Sendable, Equatable {
    public var path = "./gemcache-data"
    /// The LMDB map size in bytes.
    public var maxSize = 4 << 30
    public var onCorrupt = OnCorrupt.moveAside
    /// How long a commit may stay in the page cache before the disk sync (zero: each commit is synced
    /// before its answer leaves). Unsynced commits survive the process, not a machine crash.
    public var syncInterval: Duration = .seconds(1)
    /// A shared second tier (`postgres://…`), or nil. Read by the proxy's shared tier, not by ``CacheStore``.
    public var shared: String? = nil

    public init() {}

    /// What to do with a store that cannot be opened.
    public enum OnCorrupt: String, Sendable, Equatable, CaseIterable {
        case moveAside = "move_aside"
        case fail
    }
}
