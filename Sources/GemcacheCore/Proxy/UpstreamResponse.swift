import AsyncHTTPClient
import Foundation
import HTTPTypes
import NIOCore
import NIOHTTP1

/// An upstream answer on a cached route: status, headers, and a body that is either still streaming or
/// was read already (to decide on a retry, then passed on as it came).
///
/// Every read of the body ends by ``deadline``: `upstream.timeout` bounds the whole exchange, body
/// included (SPEC §1), so an upstream that trickles or stalls after its head cannot hold a client longer.
struct UpstreamResponse: Sendable {
    enum Body: Sendable {
        case streaming(HTTPClientResponse.Body)
        case read([UInt8])
    }

    let status: Int
    let headers: HTTPHeaders
    let body: Body
    /// When the exchange must be over: `upstream.timeout` after the attempt that answered began.
    let deadline: ContinuousClock.Instant

    /// The headers worth keeping with a stored answer or passing on.
    var replayableHeaders: [(name: String, value: String)] {
        ForwardedRequest.replayableHeaders(headers.map { ($0.name, $0.value) })
    }

    /// The whole body, bounded by `limit`.
    /// - Throws: 502 when it is larger, or the upstream broke off (fewer bytes than its `Content-Length`);
    ///   504 DEADLINE_EXCEEDED when it did not arrive by ``deadline``.
    func collect(upTo limit: Int) async throws(ProxyError) -> [UInt8] {
        switch body {
        case .read(let bytes):
            return bytes
        case .streaming(let stream):
            return try await withinDeadline {
                do {
                    var buffer = try await stream.collect(upTo: limit)
                    return buffer.readBytes(length: buffer.readableBytes) ?? []
                } catch is NIOTooManyBytesError {
                    throw ProxyError.upstreamAnswerTooLarge
                }
            }
        }
    }

    /// Passes the body on chunk by chunk as it arrives, until it ends or `each` answers false.
    /// - Returns: Whether the body was read to its end.
    /// - Throws: What ``collect(upTo:)`` throws, once the body breaks off or ``deadline`` passes.
    func relay(_ each: @escaping @Sendable (ByteBuffer) async -> Bool) async throws(ProxyError) -> Bool {
        try await withinDeadline { [body] in
            switch body {
            case .read(let bytes):
                return await each(ByteBuffer(bytes: bytes))
            case .streaming(let stream):
                for try await chunk in stream {
                    guard await each(chunk) else { return false }
                }
                return true
            }
        }
    }

    /// Runs `read` in a child task that is cancelled (which ends the upstream request) at ``deadline``.
    private func withinDeadline<T: Sendable>(_ read: @escaping @Sendable () async throws -> T) async throws(ProxyError) -> T {
        let deadline = self.deadline
        do {
            return try await withThrowingTaskGroup(of: T?.self) { group in
                group.addTask { try await read() }
                group.addTask {
                    try await Task.sleep(until: deadline, clock: .continuous)
                    return nil
                }
                defer { group.cancelAll() }
                guard let value = try await group.next() ?? nil else { throw HTTPClientError.deadlineExceeded }
                return value
            }
        } catch let error as ProxyError {
            throw error
        } catch {
            throw UpstreamClient.mapError(error)
        }
    }
}

/// What Google's error envelope says about retrying (gemini-api.md §6): the `RetryInfo` delay.
enum UpstreamErrorDetails {
    /// The longest `RetryInfo` delay honoured (an hour); a longer one counts as this long.
    static let maxRetryDelay = Duration.seconds(3600)

    /// `RetryInfo.retryDelay` of an error body, plain or wrapped in an array, at most ``maxRetryDelay``.
    /// Only the protobuf JSON form of a duration counts (`"26s"`, `"1.5s"`: digits, up to nine decimals,
    /// `s`); anything else (`"-5s"`, `"infs"`, `"nan"`, `"1e300s"`, no unit) is ignored, as if absent.
    static func retryDelay(in body: [UInt8]) -> Duration? {
        for detail in details(body) where (detail["@type"] as? String)?.hasSuffix("google.rpc.RetryInfo") == true {
            if let delay = (detail["retryDelay"] as? String).flatMap(duration) { return delay }
        }
        return nil
    }

    /// A protobuf JSON duration of zero or more seconds, capped at ``maxRetryDelay``; nil if malformed.
    static func duration(_ text: String) -> Duration? {
        guard text.hasSuffix("s") else { return nil }
        let parts = text.dropLast().split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        let isDigits = { (part: Substring) in !part.isEmpty && part.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) } }
        guard parts.allSatisfy(isDigits), parts.count == 1 || parts[1].count <= 9 else { return nil }
        // Digits only: a number too large for Int64 is past the cap anyway.
        let seconds = min(Int64(parts[0]) ?? .max, maxRetryDelay.components.seconds)
        let nanoseconds = parts.count == 2 ? Int64(parts[1] + String(repeating: "0", count: 9 - parts[1].count)) ?? 0 : 0
        return min(.seconds(seconds) + .nanoseconds(nanoseconds), maxRetryDelay)
    }

    /// `QuotaFailure` violations as (quota id, limit value), e.g. `("GenerateRequestsPerDayPerProjectPerModel-FreeTier", 250)`;
    /// a limit value that is not a whole number from 0 to `Int.max` is left out.
    static func quotaViolations(in body: [UInt8]) -> [(String, Int)] {
        details(body).filter { ($0["@type"] as? String)?.hasSuffix("google.rpc.QuotaFailure") == true }.flatMap { detail in
            ((detail["violations"] as? [[String: Any]]) ?? []).compactMap { violation -> (String, Int)? in
                guard let id = violation["quotaId"] as? String, let value = (violation["quotaValue"] as? String).flatMap(Int.init), value >= 0 else {
                    return nil
                }
                return (id, value)
            }
        }
    }

    private static func details(_ body: [UInt8]) -> [[String: Any]] {
        var object = try? JSONSerialization.jsonObject(with: Data(body))
        if let array = object as? [Any] { object = array.first }
        return (((object as? [String: Any])?["error"] as? [String: Any])?["details"] as? [[String: Any]]) ?? []
    }
}
