import Hummingbird

/// Sends every request outside the proxy's own endpoints to the Gemini proxy: cached operations
/// through the cache, everything else straight through.
///
/// A middleware rather than routes, because the API's paths (`/v1beta/models/m:generateContent`,
/// `/upload/v1beta/files`, `/v1beta/cachedContents/…`) are open-ended and the router's trie does not
/// fall back to a catch-all once a prefix such as `/v1beta/models` matched.
struct GeminiMiddleware: RouterMiddleware {
    let proxy: GeminiProxy

    func handle(
        _ request: Request,
        context: ProxyRequestContext,
        next: (Request, ProxyRequestContext) async throws -> Response
    ) async throws -> Response {
        let path = request.uri.path
        if path == "/_gemcache" || path.hasPrefix("/_gemcache/") || path == "/healthz" {
            return try await next(request, context)
        }
        // The raw target, not Hummingbird's parse of it: what goes upstream is what was checked.
        let target: UpstreamTarget
        do {
            target = try UpstreamTarget(request.uri.string)
            try ForwardedRequest.checkSize(request.headers)
        } catch {
            var error = error
            error.wrapped = path.hasPrefix("/v1beta/openai/")
            throw error
        }
        let route = try CachedRoute(method: request.method, path: target.path)
        func answer() async throws -> Response {
            if let route { return try await proxy.cached(request, target: target, context: context, route: route) }
            return try await proxy.passThrough(request, target: target, context: context)
        }
        guard let tracing = proxy.tracing else { return try await answer() }
        return try await tracing.serve(request, target: target, route: route, answer: answer)
    }
}
