import Hummingbird

/// Sends every request outside the proxy's own endpoints to the Gemini proxy: cached operations
/// through the cache, everything else straight through.
///
/// A middleware rather than routes, because the API's paths (`/v1beta/models/m:generateContent`,
/// `/upload/v1beta/files`, `/v1beta/cachedContents/…`) are open-ended and the router's trie does not
/// fall back to a catch-all once a prefix such as `/v1beta/models` matched.
struct GeminiMiddleware<Context: RequestContext>: RouterMiddleware {
    let proxy: GeminiProxy

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        if path == "/_gemcache" || path.hasPrefix("/_gemcache/") || path == "/healthz" {
            return try await next(request, context)
        }
        if Self.hasPathTricks(path) {
            var error = ProxyError.invalidArgument("Invalid request path: dot segments and encoded separators are not allowed.")
            error.wrapped = path.hasPrefix("/v1beta/openai/")
            throw error
        }
        if let route = try CachedRoute(method: request.method, path: path) {
            return try await proxy.cached(request, context: context, route: route)
        }
        return try await proxy.passThrough(request, context: context)
    }

    /// Whether the raw path has a `.` or `..` segment or a percent-encoded `.`, `/` or `\`: no Gemini
    /// API path does, and such a path must not reach Google resolved differently than it was routed here.
    static func hasPathTricks(_ path: String) -> Bool {
        let lowercased = path.lowercased()
        return path.split(separator: "/").contains { $0 == "." || $0 == ".." } || ["%2e", "%2f", "%5c"].contains { lowercased.contains($0) }
    }
}
