public import Foundation
import GemcacheKey

/// `gemcache export --fixtures` and `gemcache serve --replay` (SPEC §11): the recorded entries of a
/// store with their canonical requests, as JSON Lines meant to be committed beside the tests they serve.
///
/// The first line is `{"gemcache_fixtures": 1}`; every other line is one recorded entry, in key order,
/// its members sorted and nothing in it that changes from one export of the same entries to the next
/// (no times), so that two exports are byte-identical and re-recording one entry changes one line:
/// `key`, `model`, `endpoint`, `namespace` (when set), `request` (the canonical request, JSON), `status`,
/// `headers` (`"Name: value"` strings), the body as `body` (JSON, for a whole JSON answer), `body_text`
/// (streams and other text) or `body_base64`, and `prompt_tokens`, `total_tokens`.
///
/// Loading checks every line as a read from the store does (``EntryRecord/validate(_:)``, bodies within
/// `cache.max_entry_size`, lines within what such an entry can take) and stops at the first that fails,
/// naming it: a fixture file is input, and a replay that silently lost a fixture would fail far from
/// the cause.
public enum StoreFixtures {
    private typealias Reason = FixtureError.Reason

    /// The version of the fixture file format.
    public static let fileVersion = 1

    /// Writes every recorded entry of `store` to `output`.
    /// - Returns: How many entries were written.
    public static func export(_ store: CacheStore, to output: FileHandle) async throws -> Int {
        try output.write(contentsOf: Data("{\"gemcache_fixtures\":\(fileVersion)}\n".utf8))
        var written = 0
        var lines = Data()
        try await store.forEachEntry { key, entry in
            guard let request = entry.request else { return }
            lines += try line(key: key, entry: entry, request: request)
            lines.append(UInt8(ascii: "\n"))
            written += 1
            if lines.count >= 8 << 20 {
                try output.write(contentsOf: lines)
                lines.removeAll(keepingCapacity: true)
            }
        }
        try output.write(contentsOf: lines)
        return written
    }

    /// Reads a fixture file from `input` into `store`: every entry shared, stored now, never expiring.
    /// - Parameter maxEntrySize: `cache.max_entry_size`: the largest body a line may carry.
    /// - Returns: How many entries were loaded.
    /// - Throws: ``FixtureError`` naming the first line that is not a fixture (or the file, when it is
    ///   not a fixture file); errors of the store or the file.
    public static func load(_ store: CacheStore, from input: FileHandle, maxEntrySize: Int) async throws -> Int {
        let reader = LineReader(input, maxLength: StoreTransfer.longestLine(maxEntrySize: maxEntrySize))
        guard case .line(let first) = try reader.next(),
            let header = try? JSONSerialization.jsonObject(with: Data(first)) as? [String: Any],
            header["gemcache_fixtures"] as? Int == fileVersion
        else {
            throw FixtureError(line: 1, reason: "not a gemcache fixture file (the first line must be {\"gemcache_fixtures\":\(fileVersion)})")
        }
        let storedAt = store.now()
        var batch: [(CacheKey, CacheEntry)] = []
        var loaded = 0
        var number = 1
        while let next = try reader.next() {
            number += 1
            switch next {
            case .line(let line) where line.isEmpty:
                continue
            case .line(let line):
                do throws(Reason) {
                    batch.append(try entry(line, storedAt: storedAt, maxEntrySize: maxEntrySize))
                } catch {
                    throw FixtureError(line: number, reason: error.description)
                }
            case .tooLong(let length):
                throw FixtureError(
                    line: number,
                    reason: "a line of \(length) bytes is longer than any entry within cache.max_entry_size (\(maxEntrySize) bytes)"
                )
            }
            if batch.count >= 512 {
                loaded += try await storeAll(batch, into: store)
                batch.removeAll(keepingCapacity: true)
            }
        }
        return loaded + (try await storeAll(batch, into: store))
    }

    private static func storeAll(_ batch: [(CacheKey, CacheEntry)], into store: CacheStore) async throws -> Int {
        let stored = await store.storeAll(batch)
        guard stored == batch.count else { throw StoreTransferError("the store is full: raise store.max_size to load every fixture") }
        return stored
    }

    // MARK: - One line

    private static func line(key: CacheKey, entry: CacheEntry, request: [UInt8]) throws -> Data {
        var line: [String: Any] = [
            "key": key.hex,
            "model": entry.model,
            "endpoint": entry.endpoint,
            "request": (try? JSONSerialization.jsonObject(with: Data(request), options: [.fragmentsAllowed]))
                ?? String(decoding: request, as: UTF8.self),
            "status": entry.status,
            "headers": entry.headers.map { "\($0.name): \($0.value)" },
            "prompt_tokens": entry.promptTokens,
            "total_tokens": entry.totalTokens,
        ]
        line["namespace"] = entry.namespace
        if isWholeJSON(entry), let body = try? JSONSerialization.jsonObject(with: Data(entry.body), options: [.fragmentsAllowed]) {
            line["body"] = body
        } else if let text = String(validating: entry.body, as: UTF8.self) {
            line["body_text"] = text
        } else {
            line["body_base64"] = Data(entry.body).base64EncodedString()
        }
        return try JSONSerialization.data(withJSONObject: line, options: [.sortedKeys, .withoutEscapingSlashes])
    }

    /// Whether the body is one JSON answer (not a stream, whose framing and chunk breaks must stay as
    /// they were recorded): such a body is written as JSON, to read and diff.
    private static func isWholeJSON(_ entry: CacheEntry) -> Bool {
        entry.endpoint != "streamGenerateContent"
            && entry.headers.contains { $0.name.lowercased() == "content-type" && $0.value.lowercased().contains("json") }
    }

    private static func entry(_ line: [UInt8], storedAt: Int64, maxEntrySize: Int) throws(Reason) -> (CacheKey, CacheEntry) {
        // The strict parser first: it bounds nesting and size before Foundation's parser sees the line.
        do {
            _ = try KeyJSONParser.parse(line)
        } catch {
            throw Reason(error.message)
        }
        guard let fields = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any] else { throw Reason("not a JSON object") }
        func string(_ name: String) throws(Reason) -> String {
            guard let value = fields[name] as? String else { throw Reason("\(name) must be a string") }
            guard value.utf8.count <= Int(UInt16.max) else { throw Reason("\(name) is longer than \(UInt16.max) bytes") }
            return value
        }
        func integer(_ name: String, in range: ClosedRange<Int>) throws(Reason) -> Int {
            guard let value = fields[name] as? Int, range.contains(value) else {
                throw Reason("\(name) must be an integer from \(range.lowerBound) to \(range.upperBound)")
            }
            return value
        }
        guard let key = CacheKey(hex: try string("key")) else { throw Reason("key must be 64 hex digits") }
        let namespace = try fields["namespace"] == nil ? nil : string("namespace")
        guard let headers = fields["headers"] as? [String] else { throw Reason("headers must be a list of \"Name: value\" strings") }
        guard let request = fields["request"] as? [String: Any],
            let requestBytes = try? JSONSerialization.data(withJSONObject: request, options: [.sortedKeys, .withoutEscapingSlashes])
        else { throw Reason("request must be a JSON object (the canonical request)") }
        let body: [UInt8]
        switch (fields["body"], fields["body_text"], fields["body_base64"]) {
        case (let json?, nil, nil):
            guard let data = try? JSONSerialization.data(withJSONObject: json, options: [.fragmentsAllowed, .sortedKeys, .withoutEscapingSlashes])
            else {
                throw Reason("body is not JSON")
            }
            body = Array(data)
        case (nil, let text as String, nil): body = Array(text.utf8)
        case (nil, nil, let base64 as String):
            guard let data = Data(base64Encoded: base64) else { throw Reason("body_base64 is not base64") }
            body = Array(data)
        default: throw Reason("exactly one of body, body_text (a string) and body_base64 (a string) must be there")
        }
        guard body.count <= maxEntrySize else { throw Reason("a body of \(body.count) bytes is over cache.max_entry_size (\(maxEntrySize) bytes)") }
        let entry = CacheEntry(
            status: try integer("status", in: 200...599),
            headerBlock: headers.reduce(into: []) { block, line in block += Array(line.utf8) + [13, 10] },
            body: body,
            storedAt: storedAt,
            expiresAt: EntryRecord.times.upperBound,
            model: try string("model"),
            namespace: namespace,
            endpoint: try string("endpoint"),
            promptTokens: try integer("prompt_tokens", in: EntryRecord.tokenCounts),
            totalTokens: try integer("total_tokens", in: EntryRecord.tokenCounts),
            scope: .shared,
            request: Array(requestBytes)
        )
        do {
            try EntryRecord.validate(entry)
        } catch {
            throw Reason(error.description)
        }
        return (key, entry)
    }
}

/// A fixture file that cannot be loaded: the line (counted from 1) and why.
public struct FixtureError: Error, Sendable, CustomStringConvertible {
    public let line: Int
    public let reason: String

    public var description: String { "fixture line \(line): \(reason)" }

    /// Why a line is refused.
    struct Reason: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }
}
