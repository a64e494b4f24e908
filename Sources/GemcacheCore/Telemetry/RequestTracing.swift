import GemcacheKey
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import OTel
import ServiceLifecycle
import Synchronization
import Tracing

/// Traces of proxied requests (SPEC §7), when `telemetry.otlp_endpoint` is set: a server span per
/// request, child spans for the store lookup, the upstream call and the commit, and the W3C
/// `traceparent` continued from the client and sent upstream.
///
/// swift-otel batches the finished spans and exports them over OTLP/HTTP from its own tasks: a request
/// only hands its spans over, so a collector that is away never slows or fails one. Spans it gives up
/// on are counted (``SpanDropCounter``) and shown in `/_gemcache/stats`.
///
/// With no endpoint there is no `RequestTracing` at all: whoever holds an optional one skips every
/// span with one branch.
///
/// No attribute carries a credential: URLs are recorded as their path and query less the credential
/// parameters (``UpstreamTarget/removingCredentials``), and no header is recorded.
final class RequestTracing: Sendable {
    let tracer: any Tracer
    /// Where the spans go (`…/v1/traces`), for the stats.
    let endpoint: String
    let dropped: SpanDropCounter.Count

    private init(tracer: any Tracer, endpoint: String, dropped: SpanDropCounter.Count) {
        self.tracer = tracer
        self.endpoint = endpoint
        self.dropped = dropped
    }

    /// The tracer and the service that exports its spans (run it until shutdown); nil when
    /// `telemetry.otlp_endpoint` is not set. The standard `OTEL_*` variables (`OTEL_BSP_SCHEDULE_DELAY`,
    /// `OTEL_EXPORTER_OTLP_HEADERS`, …) still apply.
    /// - Throws: ``ConfigurationError`` naming `telemetry.otlp_endpoint` when the exporter cannot be made.
    static func make(
        configuration: ProxyConfiguration.Telemetry,
        logger: Logger
    ) throws(ConfigurationError) -> (tracing: RequestTracing, service: any Service)? {
        guard let base = configuration.otlpEndpoint else { return nil }
        let endpoint = base + "/v1/traces"
        let dropped = SpanDropCounter.Count()
        var otel = OTel.Configuration.default
        otel.serviceName = configuration.serviceName
        otel.diagnosticLogger = .custom(
            Logger(label: "gemcache.telemetry") { _ in SpanDropCounter(passingTo: logger.handler, count: dropped) }
        )
        otel.diagnosticLogLevel = .warning
        otel.propagators = [.traceContext]
        otel.metrics.enabled = false
        otel.logs.enabled = false
        otel.traces.exporter = .otlp
        otel.traces.otlpExporter.protocol = .httpProtobuf
        otel.traces.otlpExporter.endpoint = endpoint
        do {
            let (tracer, service) = try OTel.makeTracingBackend(configuration: otel)
            backends.withLock { $0.append((tracer, service)) }
            return (RequestTracing(tracer: tracer, endpoint: endpoint, dropped: dropped), service)
        } catch {
            throw ConfigurationError(key: "telemetry.otlp_endpoint", problem: "cannot export traces: \(error)")
        }
    }

    /// Every backend made, kept until the process ends, as a bootstrapped one would be: swift-otel's
    /// OTLP/HTTP exporter shuts its HTTP client down synchronously when it is freed, which traps on an
    /// event loop thread, and this process runs its Swift concurrency jobs on the event loops.
    private static let backends = Mutex<[(any Tracer, any Service)]>([])

    /// What `/_gemcache/stats` shows under `telemetry`.
    var report: TelemetryReport {
        TelemetryReport(endpoint: endpoint, spansDropped: dropped.value)
    }

    // MARK: - The slow path

    /// Answers a request inside its server span: continues the client's `traceparent`, records the
    /// request's method, path and route, lets `answer` run with the span as the current context (the
    /// proxy's steps add their child spans and attributes, ``recordAnswer(model:namespace:tokens:)``),
    /// then records the answer's status, `X-Gemcache` and `X-Gemcache-Key`. The span ends once the body is written.
    func serve(
        _ request: Request,
        target: UpstreamTarget,
        route: CachedRoute?,
        answer: () async throws -> Response
    ) async throws -> Response {
        var parent = InstrumentationContext.topLevel
        tracer.extract(request.headers, into: &parent, using: HTTPFieldsExtractor())
        let method = request.method.rawValue
        let span = tracer.startSpan(route.map { "\(method) \($0.endpoint)" } ?? method, context: parent, ofKind: .server)
        let visible = target.removingCredentials
        span.updateAttributes { attributes in
            attributes["http.request.method"] = method
            attributes["url.path"] = visible.path
            attributes["url.query"] = visible.query
            attributes["gemcache.route"] = route?.endpoint
            attributes["gen_ai.request.model"] = route.flatMap { $0.model.isEmpty ? nil : $0.model }
        }
        var context = span.context
        context.requestSpan = span
        do {
            var response = try await InstrumentationContext.$current.withValue(context) { try await answer() }
            let status = Int(response.status.code)
            span.updateAttributes { attributes in
                attributes["http.response.status_code"] = status
                attributes["gemcache.status"] = response.headers[.gemcache]
                attributes["gemcache.key"] = response.headers[.gemcacheKey]
            }
            if status >= 500 { span.setStatus(SpanStatus(code: .error)) }
            let body = response.body
            response.body = ResponseBody(contentLength: body.contentLength) { writer in
                defer { span.end() }
                try await body.write(writer)
            }
            return response
        } catch {
            let status = Int((error as? any HTTPResponseError)?.status.code ?? 500)
            span.attributes["http.response.status_code"] = status
            if status >= 500 { span.setStatus(SpanStatus(code: .error)) }
            span.end()
            throw error
        }
    }

    /// The server span of the request this task answers, if it is traced.
    var requestSpan: (any Span)? { InstrumentationContext.current?.requestSpan }

    /// Records on a request's span what its answer learnt: the model it counts under, its namespace and
    /// its tokens (of the upstream call or of the stored entry).
    func recordAnswer(model: String, namespace: String?, tokens: TokenUsage, on span: (any Span)?) {
        guard let span else { return }
        span.updateAttributes { attributes in
            attributes["gen_ai.request.model"] = model.isEmpty ? nil : model
            attributes["gemcache.namespace"] = namespace
            attributes["gen_ai.usage.input_tokens"] = tokens.prompt
            attributes["gen_ai.usage.output_tokens"] = max(0, tokens.total - tokens.prompt)
        }
    }

    /// Runs `operation` in a child span of the current request's span (none outside a traced request),
    /// passing the child's context, e.g. for ``propagating(_:from:)``.
    func span<Result, Failure: Error>(
        _ name: String,
        kind: SpanKind = .internal,
        _ operation: (InstrumentationContext?) async throws(Failure) -> Result
    ) async throws(Failure) -> Result {
        guard let parent = InstrumentationContext.current else { return try await operation(nil) }
        let span = tracer.startSpan(name, context: parent, ofKind: kind)
        defer { span.end() }
        return try await operation(span.context)
    }

    /// `headers` with the `traceparent` of `context` in place of any the client sent (W3C Trace Context).
    func propagating(_ headers: [(name: String, value: String)], from context: InstrumentationContext?) -> [(name: String, value: String)] {
        guard let context else { return headers }
        var propagated = headers.filter { !Self.traceHeaders.contains($0.name.lowercased()) }
        tracer.inject(context, into: &propagated, using: HeaderListInjector())
        return propagated
    }

    private static let traceHeaders: Set<String> = ["traceparent", "tracestate"]

    // MARK: - The fast path

    /// Records a hit the fast path answered, as a server span that ends now and `took` long, continuing
    /// the client's `traceparent` when it sent one.
    /// - Parameters:
    ///   - path: The request's path and query less the credential parameters (the raw key's target).
    ///   - key: The entry's cache key.
    func recordHit(
        took duration: TimeAmount,
        method: String,
        path: String,
        traceparent: String?,
        namespace: String?,
        key: [UInt8],
        model: String,
        tokens: TokenUsage
    ) {
        var parent = InstrumentationContext.topLevel
        if let traceparent { tracer.extract(traceparent, into: &parent, using: TraceparentExtractor()) }
        let end = DefaultTracerClock.now
        let start = DefaultTracerClock.Timestamp(nanosecondsSinceEpoch: end.nanosecondsSinceEpoch - UInt64(max(0, duration.nanoseconds)))
        let span = tracer.startSpan(method, context: parent, ofKind: .server, at: start)
        defer { span.end(at: end) }
        // A span the sampler dropped records nothing: the attributes cost more than the rest of a hit.
        guard span.isRecording else { return }
        let mark = path.firstIndex(of: "?")
        let route = try? CachedRoute(method: HTTPRequest.Method(method) ?? .post, path: String(path[..<(mark ?? path.endIndex)]))
        if let route { span.operationName = "\(method) \(route.endpoint)" }
        span.updateAttributes { attributes in
            attributes["http.request.method"] = method
            attributes["url.path"] = String(path[..<(mark ?? path.endIndex)])
            attributes["url.query"] = mark.map { String(path[path.index(after: $0)...]) }
            attributes["gemcache.route"] = route?.endpoint
            attributes["http.response.status_code"] = 200
            attributes["gemcache.status"] = CacheOutcome.hit.rawValue
            attributes["gemcache.key"] = Digest.hex(key)
        }
        recordAnswer(model: model, namespace: namespace, tokens: tokens, on: span)
    }
}

/// What `/_gemcache/stats` shows of the traces, under `telemetry`.
public struct TelemetryReport: Sendable {
    /// Where spans are exported.
    public var endpoint: String
    /// Spans the exporter gave up on (collector away or refusing, queue full) since start-up.
    public var spansDropped: Int

    var json: [String: Any] { ["otlp_endpoint": endpoint, "spans_dropped": spansDropped] }
}

extension InstrumentationContext {
    /// The server span of the request being answered (``RequestTracing/serve(_:target:route:answer:)``).
    fileprivate var requestSpan: (any Span)? {
        get { self[RequestSpanKey.self] }
        set { self[RequestSpanKey.self] = newValue }
    }
}

private enum RequestSpanKey: InstrumentationContextKey {
    typealias Value = any Span
}

/// Reads `traceparent` and `tracestate` from a request's headers.
private struct HTTPFieldsExtractor: Extractor {
    func extract(key: String, from headers: HTTPFields) -> String? {
        HTTPField.Name(key).flatMap { headers[$0] }
    }
}

/// Reads the one `traceparent` value the fast path found.
private struct TraceparentExtractor: Extractor {
    func extract(key: String, from traceparent: String) -> String? {
        key == "traceparent" ? traceparent : nil
    }
}

/// Adds propagation headers to the header list that goes upstream.
private struct HeaderListInjector: Injector {
    func inject(_ value: String, forKey key: String, into headers: inout [(name: String, value: String)]) {
        headers.append((key, value))
    }
}
