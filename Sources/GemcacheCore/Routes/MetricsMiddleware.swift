import HTTPTypes
import Hummingbird
import NIOCore

/// Serves `GET /metrics` and times every request that the slow path answers on a cached route
/// (the fast path times its own hits).
///
/// A middleware, placed before the proxy's own, because the proxy sends every path outside
/// `/_gemcache/` and `/healthz` upstream: `/metrics` has to be answered before it gets there.
struct MetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let ledger: Ledger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.uri.path == "/metrics" {
            guard request.method == .get || request.method == .head else { throw ProxyError.metricsNeedGet }
            let text = ledger.metrics.exposition(try await ledger.document())
            return Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: text))
            )
        }
        let started = ContinuousClock.now
        let response = try await next(request, context)
        if let outcome = response.headers[.gemcache].flatMap(CacheOutcome.init(rawValue:)) {
            ledger.recordLatency(outcome: outcome, duration: ContinuousClock.now - started)
        }
        return response
    }
}
