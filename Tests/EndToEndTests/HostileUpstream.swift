import Foundation
import GemcacheTestSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// An upstream on 127.0.0.1 that answers with raw bytes from a script, for answers no well-behaved
/// server gives: streams that never end, bodies that trickle, a `Content-Length` that lies.
///
/// Every connection is served on its own thread with blocking sockets: the script reads like the
/// misbehaviour it plays (write, sleep, stall, close), and never blocks the proxy's threads.
final class HostileUpstream: Sendable {
    /// One accepted connection whose request has been read.
    final class Connection: Sendable {
        fileprivate let socket: Int32
        /// The request's head and body as received.
        let request: String
        /// Which request this is, from 1.
        let number: Int

        fileprivate init(socket: Int32, request: String, number: Int) {
            self.socket = socket
            self.request = request
            self.number = number
        }

        /// Writes `bytes`; false once the proxy closed the connection.
        @discardableResult
        func write(_ bytes: [UInt8]) -> Bool {
            var offset = 0
            while offset < bytes.count {
                let written = bytes[offset...].withUnsafeBytes { Glibc.send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                guard written > 0 else { return false }
                offset += written
            }
            return true
        }

        @discardableResult
        func write(_ text: String) -> Bool { write(Array(text.utf8)) }

        /// Writes one chunk of a chunked body; false once the proxy closed the connection.
        @discardableResult
        func writeChunk(_ bytes: [UInt8]) -> Bool {
            write(Array((String(bytes.count, radix: 16) + "\r\n").utf8) + bytes + Array("\r\n".utf8))
        }

        /// Waits until the proxy closes the connection (or `timeout` passes); true if it did.
        func awaitClose(timeout: Duration) -> Bool {
            let deadline = ContinuousClock.now + timeout
            var buffer = [UInt8](repeating: 0, count: 4096)
            while ContinuousClock.now < deadline {
                var poller = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
                guard poll(&poller, 1, 50) > 0 else { continue }
                if buffer.withUnsafeMutableBytes({ recv(socket, $0.baseAddress, $0.count, 0) }) <= 0 { return true }
            }
            return false
        }
    }

    /// What happened so far, shared with the connections' threads.
    private final class Counts: Sendable {
        let requestLines = Mutex<[String]>([])
        let finished = Atomic(0)
    }

    private let listener: Int32
    private let counts = Counts()
    /// The port it listens on.
    let port: Int

    /// Listens on a free loopback port and answers every request with `script`, then closes the connection.
    init(_ script: @escaping @Sendable (Connection) -> Void) throws {
        let (listener, port) = try listenOnLoopback()
        self.listener = listener
        self.port = port
        let counts = counts
        Thread.detachNewThread {
            while true {
                let socket = accept(listener, nil, nil)
                guard socket >= 0 else { return }
                Thread.detachNewThread {
                    defer { close(socket) }
                    guard let request = Self.readRequest(socket) else { return }
                    let line = String(request.prefix { $0 != "\r" })
                    let number = counts.requestLines.withLock { lines in
                        lines.append(line)
                        return lines.count
                    }
                    script(Connection(socket: socket, request: request, number: number))
                    counts.finished.add(1, ordering: .sequentiallyConsistent)
                }
            }
        }
    }

    deinit {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    /// The request lines (`POST /v1beta/… HTTP/1.1`) received so far.
    var requestLines: [String] { counts.requestLines.withLock { $0 } }

    /// Requests received so far.
    var requests: Int { requestLines.count }

    /// Requests whose script has returned (the answer ended, or the proxy closed the connection).
    var finished: Int { counts.finished.load(ordering: .sequentiallyConsistent) }

    /// Reads a request head and its `Content-Length` body.
    private static func readRequest(_ socket: Int32) -> String? {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let text = String(decoding: received, as: UTF8.self)
            if let end = text.range(of: "\r\n\r\n") {
                let length = text[..<end.lowerBound].firstMatch(of: /(?i)content-length: *(\d+)/).flatMap { Int($0.1) } ?? 0
                if text.utf8.distance(from: end.upperBound, to: text.utf8.endIndex) >= length { return text }
            }
            let count = buffer.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { return nil }
            received += buffer[0..<count]
        }
    }

    /// Polls `condition` every 20 ms until it holds or `timeout` passes; returns whether it held.
    static func eventually(within timeout: Duration, _ condition: () -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            guard ContinuousClock.now < deadline else { return false }
            // Real time is the subject: a real process and real sockets, observed from outside.
            try await Task.sleep(for: .milliseconds(20))
        }
        return true
    }
}
