import Hummingbird
import HummingbirdTesting
import NIOCore
import Synchronization

/// An OTLP/HTTP collector on a free loopback port: takes `POST /v1/traces` (protobuf) and keeps each
/// body as it came, answering with an empty `ExportTraceServiceResponse`.
public final class FakeCollector: Sendable {
    private let bodies = Mutex<[[UInt8]]>([])

    init() {}

    /// Every export request's body, in arrival order.
    public var received: [[UInt8]] { bodies.withLock { $0 } }

    /// The spans of every export so far, once `ready` holds of them, or those of about 10 s later.
    public func spans(until ready: ([ExportedSpan]) -> Bool) async throws -> [ExportedSpan] {
        var spans: [ExportedSpan] = []
        for _ in 0..<200 {
            spans = received.flatMap(ExportedSpan.spans(in:))
            if ready(spans) { break }
            // Real time is the subject: spans leave the proxy in batches, on the exporter's own schedule.
            try await Task.sleep(for: .milliseconds(50))
        }
        return spans
    }

    fileprivate func receive(_ body: [UInt8]) {
        bodies.withLock { $0.append(body) }
    }
}

/// Runs a ``FakeCollector`` for the duration of `body`.
public func withFakeCollector<R: Sendable>(_ body: @Sendable (_ port: Int, _ collector: FakeCollector) async throws -> R) async throws -> R {
    let collector = FakeCollector()
    let router = Router()
    router.post("/v1/traces") { request, _ -> Response in
        let bytes = try await request.body.collect(upTo: 16 << 20)
        collector.receive(Array(buffer: bytes))
        return Response(status: .ok, headers: [.contentType: "application/x-protobuf"], body: .init())
    }
    let result = Mutex<R?>(nil)
    try await Application(router: router).test(.live) { client in
        guard let port = client.port else { throw CancellationError() }
        let value = try await body(port, collector)
        result.withLock { $0 = value }
    }
    return result.withLock { $0! }
}

/// One span of an OTLP export request (`opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest`),
/// read from its protobuf bytes: the fields the tests check, ids in hex, attribute values as text.
public struct ExportedSpan: Sendable {
    public var traceID = ""
    public var spanID = ""
    /// Empty for a root span.
    public var parentSpanID = ""
    public var name = ""
    /// `SpanKind`: 1 internal, 2 server, 3 client.
    public var kind = 0
    public var attributes: [String: String] = [:]

    /// The spans of an export request's body: resource_spans (1) → scope_spans (2) → spans (2).
    public static func spans(in body: [UInt8]) -> [ExportedSpan] {
        var spans: [ExportedSpan] = []
        for case (1, .bytes(let resourceSpans)) in Protobuf.fields(body[...]) {
            for case (2, .bytes(let scopeSpans)) in Protobuf.fields(resourceSpans) {
                for case (2, .bytes(let span)) in Protobuf.fields(scopeSpans) { spans.append(ExportedSpan(span)) }
            }
        }
        return spans
    }

    private init(_ bytes: ArraySlice<UInt8>) {
        for field in Protobuf.fields(bytes) {
            switch field {
            case (1, .bytes(let id)): traceID = Self.hex(id)
            case (2, .bytes(let id)): spanID = Self.hex(id)
            case (4, .bytes(let id)): parentSpanID = Self.hex(id)
            case (5, .bytes(let text)): name = String(decoding: text, as: UTF8.self)
            case (6, .varint(let value)): kind = Int(value)
            case (9, .bytes(let keyValue)):
                var key = ""
                var value = ""
                for part in Protobuf.fields(keyValue) {
                    switch part {
                    case (1, .bytes(let text)): key = String(decoding: text, as: UTF8.self)
                    case (2, .bytes(let anyValue)): value = Self.text(of: anyValue)
                    default: break
                    }
                }
                attributes[key] = value
            default: break
            }
        }
    }

    /// An `AnyValue`: string (1), bool (2) or int (3) as text.
    private static func text(of anyValue: ArraySlice<UInt8>) -> String {
        for field in Protobuf.fields(anyValue) {
            switch field {
            case (1, .bytes(let text)): return String(decoding: text, as: UTF8.self)
            case (2, .varint(let value)): return value == 0 ? "false" : "true"
            case (3, .varint(let value)): return String(Int64(bitPattern: value))
            default: continue
            }
        }
        return ""
    }

    private static func hex(_ bytes: ArraySlice<UInt8>) -> String {
        bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }
}

/// The wire format of protocol buffers, as far as reading ``ExportedSpan`` needs: a message's fields
/// by number, varints and length-delimited values (fixed-width ones skipped).
enum Protobuf {
    enum Value {
        case varint(UInt64)
        case bytes(ArraySlice<UInt8>)
        case fixed
    }

    static func fields(_ bytes: ArraySlice<UInt8>) -> [(Int, Value)] {
        var fields: [(Int, Value)] = []
        var index = bytes.startIndex
        func varint() -> UInt64? {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while index < bytes.endIndex, shift < 64 {
                let byte = bytes[index]
                index += 1
                value |= UInt64(byte & 0x7f) << shift
                if byte < 0x80 { return value }
                shift += 7
            }
            return nil
        }
        while index < bytes.endIndex, let tag = varint() {
            let number = Int(tag >> 3)
            switch tag & 7 {
            case 0:
                guard let value = varint() else { return fields }
                fields.append((number, .varint(value)))
            case 2:
                guard let length = varint(), length <= UInt64(bytes.endIndex - index) else { return fields }
                fields.append((number, .bytes(bytes[index..<(index + Int(length))])))
                index += Int(length)
            case 1, 5:
                index += tag & 7 == 1 ? 8 : 4
                fields.append((number, .fixed))
            default:
                return fields
            }
        }
        return fields
    }
}
