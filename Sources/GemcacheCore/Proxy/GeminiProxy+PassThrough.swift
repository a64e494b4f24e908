import AsyncHTTPClient
import HTTPTypes
import Hummingbird
import NIOCore
import NIOHTTP1

/// Routes that are not cached.
extension GeminiProxy {
    /// Streams a request that is not cached to the upstream and its answer back, both ways unbuffered.
    func passThrough(_ request: Request, target: UpstreamTarget, context: some RequestContext) async throws -> Response {
        do {
            try access.admit(credential: Credential(headers: request.headers, query: ForwardedRequest.queryItems(target.query)))
        } catch {
            ledger.recordRejected()
            throw error
        }
        let length = request.headers[.contentLength].flatMap { Int64($0) }
        let upload = length.map { $0 > 0 } ?? (request.headers[.transferEncoding] != nil) ? UploadBody(request.body) : nil
        let response: HTTPClientResponse
        do {
            response = try await upstreamCall(headers: ForwardedRequest.upstreamHeaders(request.headers, dropCacheControls: false)) {
                headers throws(ProxyError) in
                try await upstream.send(
                    method: request.method,
                    target: target,
                    headers: headers,
                    body: upload.map { .stream($0.chunks, length: length.map { .known($0) } ?? .unknown) },
                    decode: false
                )
            }
        } catch {
            await upload?.finish()
            throw error
        }
        var headers = HTTPFields()
        for header in response.headers where !ForwardedRequest.hopByHop.subtracting(["content-length"]).contains(header.name.lowercased()) {
            if let name = HTTPField.Name(header.name) { headers.append(HTTPField(name: name, value: header.value)) }
        }
        headers[.gemcache] = "PASS"
        headers[.cacheStatus] = "gemcache; fwd=bypass"
        // Hummingbird reads what is left of the request body once the response ends: never while the upload still does.
        return Response(
            status: .init(code: Int(response.status.code)),
            headers: headers,
            body: ResponseBody { writer in
                do {
                    for try await chunk in response.body { try await writer.write(chunk) }
                } catch {
                    await upload?.finish()
                    throw error
                }
                await upload?.finish()
                try await writer.finish(nil)
            }
        )
    }
}
