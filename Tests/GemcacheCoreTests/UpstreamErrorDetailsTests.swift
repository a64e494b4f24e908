import Testing

@testable import GemcacheCore

/// What the proxy reads from Google's error details: numbers from the upstream, parsed into a bounded
/// range (SPEC §4), never a trap.
struct UpstreamErrorDetailsTests {
    private static func body(retryDelay: String) -> [UInt8] {
        Array(
            #"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"\#(retryDelay)"}]}}"#
                .utf8
        )
    }

    @Test(arguments: [
        ("26s", Duration.seconds(26)), ("1.5s", .milliseconds(1500)), ("0s", .zero), ("0.000000001s", .nanoseconds(1)),
        ("3600s", .seconds(3600)), ("3600.5s", .seconds(3600)), ("86400s", .seconds(3600)), ("9223372036854775807s", .seconds(3600)),
        ("99999999999999999999999s", .seconds(3600)),
    ])
    func wellFormedDelaysAreReadAndCappedAtAnHour(text: String, delay: Duration) {
        #expect(UpstreamErrorDetails.retryDelay(in: Self.body(retryDelay: text)) == delay)
    }

    @Test(arguments: ["infs", "inf", "nans", "nan", "1e300s", "-5s", "+5s", "5", "s", ".5s", "5.s", "1.0000000001s", "0x10s", " 5s", "5 s", "٣s"])
    func malformedDelaysAreIgnored(text: String) {
        #expect(UpstreamErrorDetails.retryDelay(in: Self.body(retryDelay: text)) == nil)
    }

    @Test func quotaValuesOutsideZeroToIntMaxAreLeftOut() {
        let violations = ["250", "-1", "9223372036854775808", "1e3", "0"].map { #"{"quotaId":"Q\#($0)","quotaValue":"\#($0)"}"# }
        let body =
            #"{"error":{"details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[\#(violations.joined(separator: ","))]}]}}"#
        let read = UpstreamErrorDetails.quotaViolations(in: Array(body.utf8))
        #expect(read.map(\.0) == ["Q250", "Q0"])
        #expect(read.map(\.1) == [250, 0])
    }
}
