import Hummingbird
import Synchronization

/// Counts what reached the mock, so tests can assert "exactly one upstream call", and how its streams
/// ended; holds the streams of `[[fault:hold]]` until ``release()``. Thread-safe.
///
/// Every request except `GET /_mock/stats` is counted, including ones answered with an error.
public final class MockUpstreamRecorder: Sendable {
    private struct State {
        var total = 0
        var paths: [String: Int] = [:]
        var lastHeaders: [String: String] = [:]
        var seenOnceBodies: Set<UInt64> = []
        var uploads = 0
        var streamsCompleted = 0
        var streamsCut = 0
        var released = false
        var held: [CheckedContinuation<Void, Never>] = []
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

    /// Streams written to their end.
    public var streamsCompleted: Int { state.withLock { $0.streamsCompleted } }

    /// Streams whose reader went away before their end (a write failed).
    public var streamsCut: Int { state.withLock { $0.streamsCut } }

    /// Lets every stream held by `[[fault:hold]]` go on, and those that come later (until ``reset()``).
    public func release() {
        let held = state.withLock { state in
            state.released = true
            defer { state.held = [] }
            return state.held
        }
        for stream in held { stream.resume() }
    }

    /// Forgets all counts, headers, `[[fault:once-500]]` bodies and the upload counter, and holds
    /// streams again (releasing those held now).
    public func reset() {
        let held = state.withLock { state in
            defer { state = State() }
            return state.held
        }
        for stream in held { stream.resume() }
    }

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

    /// Waits until ``release()`` (at once if it was called).
    func waitForRelease() async {
        await withCheckedContinuation { continuation in
            let released = state.withLock { state in
                if !state.released { state.held.append(continuation) }
                return state.released
            }
            if released { continuation.resume() }
        }
    }

    /// A stream ended: written to its end, or cut because its reader went away.
    func recordStream(completed: Bool) {
        state.withLock { state in
            if completed { state.streamsCompleted += 1 } else { state.streamsCut += 1 }
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
