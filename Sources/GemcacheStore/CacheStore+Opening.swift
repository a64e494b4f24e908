import Foundation
import LMDBKit
public import Logging

/// Opening a store: its format version, its scope salt, and moving an unreadable store aside (SPEC §9).
extension CacheStore {
    /// Opens (or creates) the store at `configuration.path`.
    ///
    /// A store that cannot be opened or is of another format is never deleted: with
    /// `on_corrupt: move_aside` it is renamed to `<path>.corrupt-<UTC time>` and an empty store is
    /// created; with `salvage` likewise, and `salvage` is called with the moved-aside folder before the
    /// store is opened again (so that the salvaged store's scope salt can still be adopted); with `fail`
    /// this throws. An existing store that other users may read or write is used, with a warning naming
    /// its path and modes (``warnIfShared(_:logger:)``).
    /// - Parameters:
    ///   - scopeSalt: The salt from the environment, or nil to use (or create) the one kept in the store.
    ///   - now: Unix time in milliseconds; tests inject their own.
    ///   - salvage: With `on_corrupt: salvage`, fills the store at `configuration.path` from the folder
    ///     moved aside (it may create the store).
    public static func open(
        configuration: StoreConfiguration,
        scopeSalt: [UInt8]?,
        logger: Logger,
        now: @escaping @Sendable () -> Int64 = CacheStore.wallClock,
        salvage: (_ movedAside: String) async -> Void = { _ in }
    ) async throws(StoreError) -> CacheStore {
        do {
            let store = try await openChecked(configuration: configuration, scopeSalt: scopeSalt, recoveredFrom: nil, logger: logger, now: now)
            warnIfShared(configuration.path, logger: logger)
            return store
        } catch let failure {
            guard configuration.onCorrupt != .fail else {
                throw StoreError("store at \(configuration.path) cannot be opened (\(failure.reason)); store.on_corrupt is fail")
            }
            let stamp = Self.utcStamp(now())
            let aside = "\(configuration.path).corrupt-\(stamp)"
            do {
                try FileManager.default.moveItem(atPath: configuration.path, toPath: aside)
            } catch {
                throw StoreError(
                    "store at \(configuration.path) cannot be opened (\(failure.reason)) and cannot be moved aside: \(error.localizedDescription)"
                )
            }
            logger.error(
                "store could not be opened; moved aside and starting empty",
                metadata: ["store.path": "\(configuration.path)", "store.moved_to": "\(aside)", "store.reason": "\(failure.reason)"]
            )
            if configuration.onCorrupt == .salvage { await salvage(aside) }
            do {
                return try await openChecked(configuration: configuration, scopeSalt: scopeSalt, recoveredFrom: aside, logger: logger, now: now)
            } catch {
                throw StoreError("store at \(configuration.path) cannot be created: \(error.reason)")
            }
        }
    }

    /// Logs a warning when the store's folder or files are open to other users (any group or other
    /// permission bit): a store holds every client's answers (SPEC §8). A new store is created 0700/0600;
    /// an existing one keeps the modes it has (made by hand, copied in, a loose umask elsewhere).
    static func warnIfShared(_ path: String, logger: Logger) {
        let loose = [path, path + "/data.mdb", path + "/lock.mdb"].compactMap { file -> String? in
            guard let mode = (try? FileManager.default.attributesOfItem(atPath: file))?[.posixPermissions] as? Int,
                mode & 0o077 != 0
            else { return nil }
            return "\(file) 0\(String(mode & 0o777, radix: 8))"
        }
        guard !loose.isEmpty else { return }
        logger.warning(
            "store is open to other users (it holds every client's answers): chmod 700 the folder and 600 its files",
            metadata: ["store.path": "\(path)", "store.modes": "\(loose.joined(separator: ", "))"]
        )
    }

    private struct OpenFailure: Error {
        let reason: String
    }

    private static func openChecked(
        configuration: StoreConfiguration,
        scopeSalt: [UInt8]?,
        recoveredFrom: String?,
        logger: Logger,
        now: @escaping @Sendable () -> Int64
    ) async throws(OpenFailure) -> CacheStore {
        let environment: LMDBEnvironment
        do {
            environment = try LMDBEnvironment(
                path: configuration.path,
                mapSize: configuration.maxSize,
                maxDatabases: 8,
                deferSync: configuration.durability == .deferred
            )
        } catch {
            throw OpenFailure(reason: "\(error)")
        }
        // A store of another format is refused before anything is created or written in it.
        if let format = existingFormat(environment), format != formatVersion {
            environment.close()
            throw OpenFailure(reason: "store format \(format), this gemcache reads \(formatVersion)")
        }
        do {
            let store = try CacheStore(environment: environment, recoveredFrom: recoveredFrom, scopeSalt: [], logger: logger, now: now)
            let (format, salt) = try await store.checkFormat(saltFromEnvironment: scopeSalt)
            guard format == formatVersion else {
                environment.close()
                throw OpenFailure(reason: format.map { "store format \($0), this gemcache reads \(formatVersion)" } ?? "not a gemcache store")
            }
            if environment.staleReadersClearedAtOpen > 0 {
                logger.notice("cleared stale LMDB reader slots", metadata: ["store.readers_cleared": "\(environment.staleReadersClearedAtOpen)"])
            }
            return try CacheStore(environment: environment, recoveredFrom: recoveredFrom, scopeSalt: salt, logger: logger, now: now)
        } catch let error as OpenFailure {
            throw error
        } catch {
            environment.close()
            throw OpenFailure(reason: "\(error)")
        }
    }

    /// The format recorded in an existing store, read without writing; nil when none is recorded.
    private static func existingFormat(_ environment: LMDBEnvironment) -> UInt32? {
        guard let meta = try? environment.openDatabase("meta", create: false),
            let stored = try? environment.withReadTransaction({ try $0.get(meta, key: Array("format".utf8)) })
        else { return nil }
        return stored.count == 4 ? stored.reduce(0) { $0 << 8 | UInt32($1) } : 0
    }

    /// Reads (or, in an empty store, writes) the format version and the scope salt.
    private func checkFormat(saltFromEnvironment: [UInt8]?) async throws -> (UInt32?, [UInt8]) {
        let (entries, meta) = (self.entries, self.meta)
        return try await environment.write { txn in
            let stored = try txn.get(meta, key: Array("format".utf8))
            let format: UInt32?
            if let stored {
                format = stored.count == 4 ? stored.reduce(0) { $0 << 8 | UInt32($1) } : 0
            } else if try txn.count(entries) == 0 {
                try txn.put(meta, key: Array("format".utf8), value: Self.bigEndian(UInt64(Self.formatVersion)).suffix(4))
                format = Self.formatVersion
            } else {
                format = nil
            }
            if let saltFromEnvironment {
                return (format, saltFromEnvironment)
            }
            if let salt = try txn.get(meta, key: Array("scope_salt".utf8)) {
                return (format, salt)
            }
            let salt = (0..<32).map { _ in UInt8.random(in: .min ... .max) }
            try txn.put(meta, key: Array("scope_salt".utf8), value: salt)
            return (format, salt)
        }
    }

    static func utcStamp(_ milliseconds: Int64) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return formatter.string(from: Date(timeIntervalSince1970: Double(milliseconds) / 1000))
    }
}

/// The store could not be opened, named with its path and reason (one line, for start-up).
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public let description: String
    package init(_ description: String) { self.description = description }
}
