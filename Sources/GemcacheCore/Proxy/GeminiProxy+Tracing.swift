import Tracing

/// The proxy's steps in the request's trace, when tracing is on (``RequestTracing``); with it off,
/// each is one branch.
extension GeminiProxy {
    /// Runs `operation` in a child span `name` of the request's span; `operation` gets the child's
    /// context (nil when not traced).
    func traced<Result, Failure: Error>(
        _ name: String,
        kind: SpanKind = .internal,
        _ operation: (InstrumentationContext?) async throws(Failure) -> Result
    ) async throws(Failure) -> Result {
        guard let tracing else { return try await operation(nil) }
        return try await tracing.span(name, kind: kind, operation)
    }

    /// Runs an upstream call in its span (`upstream call`), passing it the headers to send: `headers`
    /// with the span's `traceparent` when traced.
    func upstreamCall<Result>(
        headers: [(name: String, value: String)],
        _ call: ([(name: String, value: String)]) async throws(ProxyError) -> Result
    ) async throws(ProxyError) -> Result {
        try await traced("upstream call", kind: .client) { context throws(ProxyError) in
            try await call(tracing?.propagating(headers, from: context) ?? headers)
        }
    }

    /// Records on the request's span (or `span`, captured where the task no longer has it) the model,
    /// namespace and tokens of `prepared`'s answer.
    func traceAnswer(_ prepared: Prepared, tokens: TokenUsage, span: (any Span)? = nil) {
        guard let tracing else { return }
        tracing.recordAnswer(model: prepared.model, namespace: prepared.controls.namespace, tokens: tokens, on: span ?? tracing.requestSpan)
    }
}
