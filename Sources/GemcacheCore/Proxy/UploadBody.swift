import AsyncAlgorithms
import Hummingbird
import NIOCore

/// A pass-through request's body on its way upstream, read from the client by one task of its own.
///
/// Why: the upstream may answer before the client has sent its whole body (an error for an upload,
/// a route that takes no body), and AsyncHTTPClient may then stop reading it. Once the response is
/// written, Hummingbird reads the rest of the request body itself; if anything else still waited on
/// the same body then, the two reads would overlap and NIO traps ("only allow a single Iterator"):
/// one request would stop the process. So only the task here reads the client's body, handing each
/// chunk upstream as the upstream takes it (backpressure), and ``finish()`` lets the rest go unread
/// by the upstream and waits until the task has read the body to its end.
final class UploadBody: Sendable {
    /// What AsyncHTTPClient sends upstream.
    let chunks = AsyncChannel<ByteBuffer>()
    private let reader: Task<Void, Never>

    init(_ body: RequestBody) {
        reader = Task { [chunks] in
            do {
                for try await chunk in body { await chunks.send(chunk) }
            } catch {
                // The client went away: the upstream sees its body end early.
            }
            chunks.finish()
        }
    }

    /// Stops handing chunks upstream (the rest is read and dropped) and returns once the client's body
    /// has been read to its end or the client has gone.
    func finish() async {
        chunks.finish()
        await reader.value
    }
}
