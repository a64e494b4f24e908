import Hummingbird
import Synchronization

/// Counts what reached the mock, so tests can assert "exactly one upstream call". Thread-safe.
///
/// Every request except `GET /_mock/stats` is counted, including ones answered with an error.
public final class MockUpstreamRecorder: Sendable {
    private struct State {
        var total = 0
        var paths: [String: Int] = [:]
        var lastHeaders: [String: String] = [:]
        var seenOnceBodies: Set<UInt64> = []
        var uploads = 0
    }

    private let state = Mutex(State())

    /// Creates an empty recorder.
    public init() {}

    /// Requests received since creation or the last `reset()`.
    public var totalRequests: Int { state.withLock { $0.total } }

    /// Requests received for `path`, the exact path without query (e.g. `/v1beta/models/gemini-2.5-flash:generateContent`).
    public func requests(path: String) -> Int { state.withLock { $0.paths[path, default: 0] } }

    /// Headers of the last request: lowercased names → value (repeated fields joined with `, `).
    public var lastHeaders: [String: String] { state.withLock { $0.lastHeaders } }

    /// Forgets all counts, headers, `[[fault:once-500]]` bodies and the upload counter.
    public func reset() { state.withLock { $0 = State() } }

    /// Per-path counts, for `GET /_mock/stats`.
    var pathCounts: [String: Int] { state.withLock { $0.paths } }

    func record(path: String, headers: HTTPFields) {
        var lowercased: [String: String] = [:]
        for field in headers {
            let name = field.name.canonicalName
            lowercased[name] = lowercased[name].map { $0 + ", " + field.value } ?? field.value
        }
        state.withLock {
            $0.total += 1
            $0.paths[path, default: 0] += 1
            $0.lastHeaders = lowercased
        }
    }

    /// True only the first time a body with this digest is seen (drives `[[fault:once-500]]`).
    func isFirstSighting(of digest: UInt64) -> Bool {
        state.withLock { $0.seenOnceBodies.insert(digest).inserted }
    }

    /// 1, 2, 3, … for the `files/mock-<n>` names of uploads.
    func nextUploadNumber() -> Int {
        state.withLock {
            $0.uploads += 1
            return $0.uploads
        }
    }
}
