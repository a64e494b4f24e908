import Hummingbird
import NIOCore

/// Wire framing of the three stream forms. Each returned piece is written separately, with a
/// pause before every piece after the first, so a client can observe the stream arriving.
enum StreamFraming {
    /// Native SSE (`?alt=sse`): `data: ` + single-line JSON + CRLF CRLF per event; no `[DONE]`.
    static func sse(_ events: [JSONValue]) -> [String] {
        events.map { "data: " + $0.compact + "\r\n\r\n" }
    }

    /// Native JSON-array stream (no `alt` or `alt=json`): `[`, pretty-printed elements
    /// separated by `,\r\n`, then `\n]`.
    static func jsonArray(_ elements: [JSONValue]) -> [String] {
        elements.enumerated().map { index, element in
            (index == 0 ? "[" : ",\r\n") + element.pretty + (index == elements.count - 1 ? "\n]" : "")
        }
    }

    /// OpenAI-compatible SSE: `data: {chunk}\n\n` … and `data: [DONE]\n\n` when `done`.
    static func openAI(_ chunks: [JSONValue], done: Bool) -> [String] {
        chunks.map { "data: " + $0.compact + "\n\n" } + (done ? ["data: [DONE]\n\n"] : [])
    }

    /// Interactions API SSE (`stream: true`): `event: <type>` and `data: <one-line JSON>` per event,
    /// LF line ends, and a last `event: done` whose data is `[DONE]`.
    static func interactions(_ events: [(type: String, data: JSONValue)]) -> [String] {
        events.map { "event: \($0.type)\ndata: " + $0.data.compact + "\n\n" } + ["event: done\ndata: [DONE]\n\n"]
    }

    /// A 200 response that writes `pieces` one by one, `delay` apart; when `held`, it waits after the
    /// first piece until `recorder` releases it. `recorder` learns whether the stream was written to
    /// its end or cut because its reader went away.
    static func response(_ pieces: [String], contentType: String, delay: Duration, held: Bool, recorder: MockUpstreamRecorder) -> Response {
        Response(
            status: .ok,
            headers: [.contentType: contentType],
            body: ResponseBody { writer in
                do {
                    for (index, piece) in pieces.enumerated() {
                        if index == 1, held { await recorder.waitForRelease() }
                        if index > 0, delay > .zero { try await Task.sleep(for: delay) }
                        try await writer.write(ByteBuffer(string: piece))
                    }
                    try await writer.finish(nil)
                } catch {
                    recorder.recordStream(completed: false)
                    throw error
                }
                recorder.recordStream(completed: true)
            }
        )
    }
}
