import Logging
import Testing

@testable import GemcacheCore

/// swift-otel reports dropped spans only in its diagnostic log: the counter reads the two warnings of
/// its batch span processor, as it logs them, whatever the log level.
struct SpanDropCounterTests {
    @Test func countsFailedBatchesAndQueueDropsAtAnyLogLevel() {
        let count = SpanDropCounter.Count()
        var logger = Logger(label: "otel") { _ in SpanDropCounter(passingTo: SwiftLogNoOpLogHandler(), count: count) }
        logger.logLevel = .error  // OTEL_LOG_LEVEL=error: the count still sees warnings
        var batch = logger
        batch[metadataKey: "batch_size"] = "5"
        batch.warning("Failed to export batch.")
        logger.warning("Spans were dropped this iteration because queue was full", metadata: ["dropped_count": "3"])
        #expect(count.value == 8)

        batch.warning("Partial success")
        batch.debug("Failed to export batch.")
        logger.warning("Failed to export batch.")  // no size: nothing to add
        #expect(count.value == 8)
    }
}
