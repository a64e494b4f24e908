public import Foundation
import GemcacheKey

/// `gemcache export` and `import`: entries as JSON Lines, streamed in batches (never the whole store
/// or file in memory).
///
/// The first line is a header, `{"gemcache_export": 1, "scope_salt": "<base64>", …}`; every other
/// line is one entry with every field of ``CacheEntry`` and its key, so a round trip is identical.
/// Headers and bodies are JSON strings when they are UTF-8, else `headers_base64` / `body_base64`.
public enum StoreTransfer {
    /// The version of the export file format.
    public static let fileVersion = 1

    /// Counts reported while a transfer runs.
    public struct Progress: Sendable {
        public var entries = 0
        /// Bytes written (export) or read (import) so far.
        public var bytes = 0
        /// The size of the input, when known (import from a file).
        public var totalBytes: Int?
    }

    /// What an export wrote.
    public struct ExportSummary: Sendable, Equatable {
        public var exported = 0
        /// Records this gemcache could not decode (not written).
        public var unreadable = 0
    }

    /// What an import did.
    public struct ImportSummary: Sendable, Equatable {
        public var imported = 0
        /// Per-key entries (and entries of unknown scope) left out because the scope salts differ.
        public var skipped = 0
        /// Entries that did not fit in the store even after eviction.
        public var dropped = 0
        /// Lines that are not entries a proxy may serve (each named through `refused` as it is met).
        public var refused = 0
        public var salt: ScopeSaltMatch = .matches
    }

    /// Writes every entry of `store` to `output`.
    /// - Parameter salt: The salt the store's proxies use (from the environment or the store), for the header.
    public static func export(
        _ store: CacheStore,
        salt: [UInt8]?,
        to output: FileHandle,
        progress: (Progress) -> Void = { _ in }
    ) async throws -> ExportSummary {
        let header = Header(
            gemcacheExport: fileVersion,
            storeFormat: CacheStore.formatVersion,
            scopeSalt: salt.map { Data($0).base64EncodedString() }
        )
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var state = Progress()
        var summary = ExportSummary()
        var lines = try encoder.encode(header) + [newline]
        var after: [UInt8]?
        while true {
            let batch = try await store.entryBatch(after: after, maxCount: 512, maxBytes: 8 << 20)
            for (key, entry) in batch.entries {
                lines += try encoder.encode(Line(key: key, entry: entry))
                lines.append(newline)
            }
            try output.write(contentsOf: lines)
            summary.exported += batch.entries.count
            summary.unreadable += batch.unreadable
            state.entries = summary.exported
            state.bytes += lines.count
            progress(state)
            lines.removeAll(keepingCapacity: true)
            guard let last = batch.lastKey else { return summary }
            after = last
        }
    }

    /// Reads an export from `input` into `store`.
    ///
    /// Each line must be an entry a proxy may serve: it passes the validation every reader of a stored
    /// record applies (``EntryRecord/Layout``), and its body is within `cache.max_entry_size`. A line
    /// that is not is refused, named to `refused` with its number and why, and the rest are imported.
    ///
    /// When the export's scope salt differs from the store's (see
    /// ``CacheStore/reconcileScopeSalt(exported:fromEnvironment:)``), per-key entries are skipped (their
    /// keys hold the other salt's tags and would never be found) and shared ones imported. Entries
    /// stored before entries recorded their scope are skipped too, unless `assumeShared`.
    /// - Parameters:
    ///   - maxEntrySize: `cache.max_entry_size`: the largest body a line may carry.
    ///   - saltFromEnvironment: The salt from the variable named by `cache.scope_salt_env`, if set.
    ///   - totalBytes: The size of the input, for progress.
    ///   - refused: Called with the number and the reason of each refused line.
    /// - Throws: ``StoreTransferError`` when the input is not an export (its first line).
    public static func `import`(
        _ store: CacheStore,
        from input: FileHandle,
        totalBytes: Int?,
        maxEntrySize: Int,
        saltFromEnvironment: [UInt8]?,
        assumeShared: Bool,
        refused: (_ line: Int, _ reason: String) -> Void = { _, _ in },
        progress: (Progress) -> Void = { _ in }
    ) async throws -> ImportSummary {
        let reader = LineReader(input, maxLength: longestLine(maxEntrySize: maxEntrySize))
        let decoder = JSONDecoder()
        guard case .line(let first) = try reader.next(), let header = try? decoder.decode(Header.self, from: Data(first)) else {
            throw StoreTransferError("not a gemcache export: the first line is not an export header")
        }
        guard header.gemcacheExport == fileVersion else {
            throw StoreTransferError("export file version \(header.gemcacheExport), this gemcache reads \(fileVersion)")
        }
        var summary = ImportSummary()
        summary.salt = try await store.reconcileScopeSalt(
            exported: header.scopeSalt.flatMap { Data(base64Encoded: $0) }.map(Array.init),
            fromEnvironment: saltFromEnvironment
        )
        let saltDiffers = summary.salt == .differs
        var state = Progress(totalBytes: totalBytes)
        var batch: [(CacheKey, CacheEntry)] = []
        var batchBytes = 0
        func flush() async {
            let stored = await store.storeAll(batch)
            summary.imported += stored
            summary.dropped += batch.count - stored
            batch.removeAll(keepingCapacity: true)
            batchBytes = 0
        }
        var lineNumber = 1
        while let next = try reader.next() {
            lineNumber += 1
            state.bytes = reader.bytesRead
            let record: (CacheKey, CacheEntry)
            switch next {
            case .line(let line) where line.isEmpty:
                continue
            case .line(let line):
                do {
                    record = try entry(line, decoder: decoder, maxEntrySize: maxEntrySize)
                } catch {
                    summary.refused += 1
                    refused(lineNumber, Self.reason(error))
                    continue
                }
                batchBytes += line.count
            case .tooLong(let length):
                summary.refused += 1
                refused(lineNumber, "a line of \(length) bytes is longer than any entry within cache.max_entry_size (\(maxEntrySize) bytes)")
                continue
            }
            state.entries += 1
            if !isFindable(scope: record.1.scope, saltDiffers: saltDiffers, assumeShared: assumeShared) {
                summary.skipped += 1
            } else {
                batch.append(record)
                if batch.count >= 512 || batchBytes >= 8 << 20 { await flush() }
            }
            if state.entries % 512 == 0 { progress(state) }
        }
        await flush()
        progress(state)
        return summary
    }

    /// Whether an entry of `scope` copied from another store can be found in this one: under another
    /// salt only shared entries can (and, if told so, those of unknown scope).
    static func isFindable(scope: CacheEntry.Scope?, saltDiffers: Bool, assumeShared: Bool) -> Bool {
        !saltDiffers || scope == .shared || (scope == nil && assumeShared)
    }

    /// The entry of one export line, if a proxy may serve it.
    private static func entry(_ line: [UInt8], decoder: JSONDecoder, maxEntrySize: Int) throws -> (CacheKey, CacheEntry) {
        let (key, entry) = try decoder.decode(Line.self, from: Data(line)).record()
        guard entry.body.count <= maxEntrySize else {
            throw StoreTransferError("a body of \(entry.body.count) bytes is over cache.max_entry_size (\(maxEntrySize) bytes)")
        }
        try EntryRecord.validate(entry)
        return (key, entry)
    }

    /// The longest line an entry within `maxEntrySize` can take: its body escaped in JSON (at most 6
    /// bytes a byte, `\u0000`), with room for the other fields. Longer lines are refused unread, so an
    /// import holds at most this much of a line in memory.
    static func longestLine(maxEntrySize: Int) -> Int {
        min(maxEntrySize, Int.max / 8) * 6 + (4 << 20)
    }

    private static let newline = UInt8(ascii: "\n")

    private static func reason(_ error: any Error) -> String {
        switch error {
        case let error as StoreTransferError: error.description
        case let error as RecordProblem: error.description
        case DecodingError.keyNotFound(let key, _): "missing \(key.stringValue)"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            "bad \(context.codingPath.map(\.stringValue).joined(separator: "."))"
        default: "malformed JSON"
        }
    }

    /// The first line of an export.
    struct Header: Codable {
        var gemcacheExport: Int
        var storeFormat: UInt32
        /// Base64; nil when the store had no salt yet.
        var scopeSalt: String?

        enum CodingKeys: String, CodingKey {
            case gemcacheExport = "gemcache_export"
            case storeFormat = "store_format"
            case scopeSalt = "scope_salt"
        }
    }

    /// One exported entry.
    struct Line: Codable {
        var key: String
        var status: Int
        var storedAt: Int64
        var expiresAt: Int64
        var model: String
        var namespace: String?
        var endpoint: String
        var promptTokens: Int
        var totalTokens: Int
        var headers: String?
        var headersBase64: String?
        var body: String?
        var bodyBase64: String?
        /// `shared` or `per_key`; absent for entries stored before entries recorded their scope.
        var scope: String?
        /// The canonical request of a recorded entry (JSON text); absent for the others.
        var request: String?

        enum CodingKeys: String, CodingKey {
            case key, status
            case storedAt = "stored_at"
            case expiresAt = "expires_at"
            case model, namespace, endpoint, scope, request
            case promptTokens = "prompt_tokens"
            case totalTokens = "total_tokens"
            case headers
            case headersBase64 = "headers_base64"
            case body
            case bodyBase64 = "body_base64"
        }

        init(key: CacheKey, entry: CacheEntry) {
            self.key = key.hex
            status = entry.status
            storedAt = entry.storedAt
            expiresAt = entry.expiresAt
            model = entry.model
            namespace = entry.namespace
            endpoint = entry.endpoint
            promptTokens = entry.promptTokens
            totalTokens = entry.totalTokens
            scope = entry.scope?.rawValue
            request = entry.request.map { String(decoding: $0, as: UTF8.self) }
            (headers, headersBase64) = Self.text(entry.headerBlock)
            (body, bodyBase64) = Self.text(entry.body)
        }

        /// The entry this line holds. Its fields must fit those of a stored record (which would clamp or
        /// cut them); whether the entry may be served is ``EntryRecord/validate(_:)``'s to say.
        func record() throws(StoreTransferError) -> (CacheKey, CacheEntry) {
            guard let cacheKey = CacheKey(hex: key) else { throw StoreTransferError("key must be 64 hex digits") }
            let entryScope = try scope.map { name throws(StoreTransferError) in
                guard let known = CacheEntry.Scope(rawValue: name) else { throw StoreTransferError("scope must be shared or per_key") }
                return known
            }
            guard UInt16(exactly: status) != nil else { throw StoreTransferError("status \(status) is not an HTTP status") }
            for (name, count) in [("prompt_tokens", promptTokens), ("total_tokens", totalTokens)] where !EntryRecord.tokenCounts.contains(count) {
                throw StoreTransferError("\(name) \(count) is outside \(EntryRecord.tokenCounts.lowerBound)...\(EntryRecord.tokenCounts.upperBound)")
            }
            for (name, text) in [("model", model), ("namespace", namespace ?? ""), ("endpoint", endpoint)] where text.utf8.count > Int(UInt16.max) {
                throw StoreTransferError("\(name) is longer than \(UInt16.max) bytes")
            }
            let entry = CacheEntry(
                status: status,
                headerBlock: try Self.bytes(headers, headersBase64, "headers"),
                body: try Self.bytes(body, bodyBase64, "body"),
                storedAt: storedAt,
                expiresAt: expiresAt,
                model: model,
                namespace: namespace,
                endpoint: endpoint,
                promptTokens: promptTokens,
                totalTokens: totalTokens,
                scope: entryScope,
                request: request.map { Array($0.utf8) }
            )
            return (cacheKey, entry)
        }

        /// The bytes as a string when they are UTF-8, else as base64.
        private static func text(_ bytes: [UInt8]) -> (String?, String?) {
            if let string = String(validating: bytes, as: UTF8.self) { return (string, nil) }
            return (nil, Data(bytes).base64EncodedString())
        }

        private static func bytes(_ text: String?, _ base64: String?, _ name: String) throws(StoreTransferError) -> [UInt8] {
            if let text { return Array(text.utf8) }
            guard let base64, let data = Data(base64Encoded: base64) else { throw StoreTransferError("missing \(name)") }
            return Array(data)
        }
    }
}

/// An export or import failed: one line for the command line.
public struct StoreTransferError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Reads a file line by line in 1 MiB chunks, never holding more than `maxLength` bytes of a line.
final class LineReader {
    /// What ``next()`` found.
    enum Item: Equatable {
        /// A line, without its newline.
        case line([UInt8])
        /// A line longer than `maxLength` (its length), skipped without keeping it.
        case tooLong(Int)
    }

    private let handle: FileHandle
    private let maxLength: Int
    private var buffer: [UInt8] = []
    private var start = 0
    private var atEnd = false
    /// Bytes handed out (or skipped) so far, newlines included.
    private(set) var bytesRead = 0

    init(_ handle: FileHandle, maxLength: Int = .max) {
        self.handle = handle
        self.maxLength = maxLength
    }

    /// The next line; nil at the end of the input.
    func next() throws -> Item? {
        var scanFrom = start
        var skipped = 0  // bytes of an over-long line already dropped
        while true {
            if let newline = buffer[scanFrom...].firstIndex(of: UInt8(ascii: "\n")) {
                return take(upTo: newline, skipping: 1, dropped: skipped)
            }
            if atEnd {
                return start < buffer.count || skipped > 0 ? take(upTo: buffer.count, skipping: 0, dropped: skipped) : nil
            }
            if skipped > 0 || buffer.count - start > maxLength {
                skipped += buffer.count - start
                bytesRead += buffer.count - start
                buffer.removeAll(keepingCapacity: true)
            } else {
                buffer.removeFirst(start)
            }
            start = 0
            scanFrom = buffer.count
            if let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
                buffer.append(contentsOf: chunk)
            } else {
                atEnd = true
            }
        }
    }

    private func take(upTo end: Int, skipping separator: Int, dropped: Int) -> Item {
        let length = dropped + end - start
        let item: Item = length > maxLength ? .tooLong(length) : .line(Array(buffer[start..<end]))
        bytesRead += end - start + separator
        start = end + separator
        return item
    }
}
