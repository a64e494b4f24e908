import GemcacheKey
import GemcacheStore

/// The recorded requests of a store in replay mode (SPEC §11), grouped by model and endpoint, so that a
/// request that was not recorded can be told which recording is nearest and where the two differ.
///
/// Each recording is kept as the leaves of its canonical request (``RecordedRequest``), flattened once
/// when the index is built: path → value. Nearest means fewest differing paths; a request is compared
/// only with the recordings of its own model and endpoint, and a comparison stops as soon as it cannot
/// beat the best so far, so thousands of recordings stay cheap.
struct ReplayIndex: Sendable {
    /// A recording: its key (hex, as in the fixture file) and its canonical request's leaves.
    private struct Recording: Sendable {
        let key: String
        let leaves: Leaves
    }

    private var recordings: [String: [Recording]] = [:]

    /// The number of recordings indexed.
    private(set) var count = 0

    /// How many differing paths a 404 names.
    static let pathsNamed = 3
    /// How much of a value a 404 shows.
    static let valueLength = 60

    /// Indexes every recorded entry of `store`.
    init(store: CacheStore) async throws {
        var index = ReplayIndex()
        try await store.forEachEntry { key, entry in
            if let request = entry.request { index.add(request, key: key.hex, model: entry.model, endpoint: entry.endpoint) }
        }
        self = index
    }

    /// An empty index, to ``add(_:key:model:endpoint:)`` to.
    init() {}

    /// Adds one recorded canonical request, stored under `key` (one that does not parse as JSON is left out).
    mutating func add(_ request: [UInt8], key: String, model: String, endpoint: String) {
        guard let leaves = Leaves(request) else { return }
        recordings[Self.group(model, endpoint), default: []].append(Recording(key: key, leaves: leaves))
        count += 1
    }

    /// The 404 for a request that was not recorded: it names the nearest recording of the same model
    /// and endpoint (by its key, as in the fixture file) and up to ``pathsNamed`` paths where they
    /// differ, with both values.
    /// - Parameter asked: The request's canonical form (``RecordedRequest``).
    func notRecorded(_ asked: [UInt8], model: String, endpoint: String) -> ProxyError {
        let subject = model.isEmpty ? endpoint : "\(model) \(endpoint)"
        guard let candidates = recordings[Self.group(model, endpoint)], let asked = Leaves(asked) else {
            return .notRecorded("gemcache replay: no request of \(subject) was recorded.")
        }
        var nearest = candidates[0]
        var fewest = Int.max
        for candidate in candidates {
            let count = candidate.leaves.differences(from: asked, stoppingAbove: fewest)
            if count < fewest { (nearest, fewest) = (candidate, count) }
        }
        let differing = nearest.leaves.differingPaths(from: asked)
        let named = differing.prefix(Self.pathsNamed).map { path in
            "\(Leaves.displayed(path)): \(nearest.leaves.value(at: path)) recorded, \(asked.value(at: path)) asked"
        }
        guard !named.isEmpty else {
            return .notRecorded(
                "gemcache replay: the recorded \(subject) request with this canonical form (key \(nearest.key)) is no longer in the store."
            )
        }
        let more = differing.count > Self.pathsNamed ? " (and \(differing.count - Self.pathsNamed) more)" : ""
        return .notRecorded(
            "gemcache replay: this request was not recorded; the nearest recorded \(subject) request (key \(nearest.key)) differs at "
                + named.joined(separator: "; ") + more + "."
        )
    }

    private static func group(_ model: String, _ endpoint: String) -> String { model + " " + endpoint }
}

/// A canonical request's leaves in document order: each scalar (or empty container) by its path,
/// `body.contents[0].parts[0].text` → `"Hi"`, as JSON text.
private struct Leaves: Sendable {
    private var order: [String] = []
    private var values: [String: String] = [:]

    init?(_ json: [UInt8]) {
        guard let value = try? KeyJSONParser.parse(json) else { return nil }
        add(value, at: "")
    }

    private mutating func add(_ value: KeyJSONValue, at path: String) {
        switch value {
        case .object(let members) where !members.isEmpty:
            for (key, member) in members { add(member, at: path.isEmpty ? key : path + "." + key) }
        case .array(let elements) where !elements.isEmpty:
            for (index, element) in elements.enumerated() { add(element, at: path + "[\(index)]") }
        default:
            order.append(path)
            values[path] = Self.text(value)
        }
    }

    /// How many paths differ from `other`'s (present in one only, or with other values); any count
    /// above `limit` is returned as soon as it is reached.
    func differences(from other: Leaves, stoppingAbove limit: Int) -> Int {
        var count = 0
        var shared = 0
        for path in order {
            if let value = other.values[path] {
                shared += 1
                if value != values[path] { count += 1 }
            } else {
                count += 1
            }
            if count > limit { return count }
        }
        return count + other.order.count - shared
    }

    /// The paths that differ from `other`'s: this request's in its order, then those only `other` has.
    func differingPaths(from other: Leaves) -> [String] {
        order.filter { other.values[$0] != values[$0] } + other.order.filter { values[$0] == nil }
    }

    /// The value at `path` as the 404 shows it (cut to ``ReplayIndex/valueLength``), or `(none)`.
    func value(at path: String) -> String {
        guard let value = values[path] else { return "(none)" }
        return value.count > ReplayIndex.valueLength ? String(value.prefix(ReplayIndex.valueLength)) + "…" : value
    }

    /// A path as the 404 names it: the body's paths without `body.`, as in the request the client wrote.
    static func displayed(_ path: String) -> String {
        path.hasPrefix("body.") ? String(path.dropFirst(5)) : path
    }

    private static func text(_ value: KeyJSONValue) -> String {
        switch value {
        case .null: "null"
        case .bool(let flag): flag ? "true" : "false"
        case .number(let text): text
        case .string(let text): CanonicalWriter.quoted(text)
        case .array: "[]"
        case .object: "{}"
        }
    }
}
