import Logging
import Synchronization

/// The log handler of swift-otel's own diagnostics: passes its messages on to gemcache's log, and
/// counts the spans they report dropped.
///
/// swift-otel 1.6 has no API that tells how many spans it dropped; its batch span processor says so
/// only in two warnings: a batch it failed to export (collector away, refusing or too slow; the batch's
/// size in `batch_size`), and spans refused because its queue was full (`dropped_count`). This handler
/// reads those two. It always takes warnings, whatever level `OTEL_LOG_LEVEL` sets, so that the count
/// does not depend on the log level; what reaches gemcache's log still does.
struct SpanDropCounter: LogHandler {
    /// The running count, shared by every copy of the handler.
    final class Count: Sendable {
        private let spans = Atomic<Int>(0)

        var value: Int { spans.load(ordering: .relaxed) }

        func add(_ count: Int) {
            spans.wrappingAdd(count, ordering: .relaxed)
        }
    }

    private var passingTo: any LogHandler
    private let count: Count
    var metadata: Logger.Metadata = [:]

    init(passingTo handler: any LogHandler, count: Count) {
        self.passingTo = handler
        self.count = count
    }

    /// The level of gemcache's log, but never above `warning`.
    var logLevel: Logger.Level {
        get { min(passingTo.logLevel, .warning) }
        set { passingTo.logLevel = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var event = event
        event.metadata = metadata.merging(event.metadata ?? [:]) { $1 }
        if event.level >= .warning, let dropped = Self.droppedSpans(event) {
            count.add(dropped)
        }
        if event.level >= passingTo.logLevel {
            passingTo.log(event: event)
        }
    }

    /// The spans a warning of the batch span processor reports dropped, if it is one of the two.
    static func droppedSpans(_ event: LogEvent) -> Int? {
        let field: String? =
            switch event.message.description {
            case "Failed to export batch.": "batch_size"
            case "Spans were dropped this iteration because queue was full": "dropped_count"
            default: nil
            }
        return field.flatMap { event.metadata?[$0] }.flatMap { Int($0.description) }
    }
}
