import AsyncHTTPClient
import Foundation
import HTTPTypes
import NIOCore
import NIOHTTP1

/// An upstream answer on a cached route: status, headers, and a body that is either still streaming or
/// was read already (to decide on a retry, then passed on as it came).
struct UpstreamResponse: Sendable {
    enum Body: Sendable {
        case streaming(HTTPClientResponse.Body)
        case read([UInt8])
    }

    let status: Int
    let headers: HTTPHeaders
    let body: Body

    /// The headers worth keeping with a stored answer or passing on.
    var replayableHeaders: [(name: String, value: String)] {
        ForwardedRequest.replayableHeaders(headers.map { ($0.name, $0.value) })
    }

    /// The whole body, bounded by `limit`.
    func collect(upTo limit: Int) async throws(ProxyError) -> [UInt8] {
        switch body {
        case .read(let bytes): return bytes
        case .streaming(let stream): return try await Self.collect(stream, upTo: limit)
        }
    }

    static func collect(_ stream: HTTPClientResponse.Body, upTo limit: Int) async throws(ProxyError) -> [UInt8] {
        do {
            var buffer = try await stream.collect(upTo: limit)
            return buffer.readBytes(length: buffer.readableBytes) ?? []
        } catch is NIOTooManyBytesError {
            throw ProxyError(.badGateway, "UNAVAILABLE", "The upstream answer is larger than limits.max_body.")
        } catch {
            throw UpstreamClient.mapError(error)
        }
    }
}

/// What Google's error envelope says about retrying (gemini-api.md §6): the `RetryInfo` delay.
enum UpstreamErrorDetails {
    /// `RetryInfo.retryDelay` (e.g. `"26s"`, `"1.5s"`) of an error body, plain or wrapped in an array.
    static func retryDelay(in body: [UInt8]) -> Duration? {
        for detail in details(body) where (detail["@type"] as? String)?.hasSuffix("google.rpc.RetryInfo") == true {
            if let text = detail["retryDelay"] as? String, text.hasSuffix("s"), let seconds = Double(text.dropLast()), seconds >= 0 {
                return .milliseconds(Int64(seconds * 1000))
            }
        }
        return nil
    }

    /// `QuotaFailure` violations as (quota id, limit value), e.g. `("GenerateRequestsPerDayPerProjectPerModel-FreeTier", 250)`.
    static func quotaViolations(in body: [UInt8]) -> [(String, Int)] {
        details(body).filter { ($0["@type"] as? String)?.hasSuffix("google.rpc.QuotaFailure") == true }.flatMap { detail in
            ((detail["violations"] as? [[String: Any]]) ?? []).compactMap { violation -> (String, Int)? in
                guard let id = violation["quotaId"] as? String, let value = (violation["quotaValue"] as? String).flatMap(Int.init) else { return nil }
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
