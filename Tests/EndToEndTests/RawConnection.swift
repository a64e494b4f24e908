import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A plain TCP connection for bytes no HTTP client would send: garbage request lines, truncated
/// heads, pipelined junk, clients that stall.
///
/// Reads block a dispatch thread, never the cooperative pool that the in-process proxy runs on.
final class RawConnection: Sendable {
    private let socket: Int32

    /// Connects to 127.0.0.1:`port`.
    init(port: Int) throws {
        socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(socket)
            throw POSIXError(.ECONNREFUSED)
        }
    }

    deinit { close(socket) }

    /// Whether `bytes` hold a whole head and the `Content-Length` bytes of body after it.
    private static func isCompleteAnswer(_ bytes: [UInt8]) -> Bool {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let end = text.utf8.firstRange(of: "\r\n\r\n".utf8),
            let length = text[..<end.lowerBound].firstMatch(of: /(?i)content-length: *(\d+)/).flatMap({ Int($0.1) })
        else { return false }
        return text.utf8.distance(from: end.upperBound, to: text.utf8.endIndex) >= length
    }

    /// Sends `bytes` (a peer that already closed is not an error: what it answered is still read).
    func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard written > 0 else { return }
            offset += written
        }
    }

    func send(_ text: String) { send(Array(text.utf8)) }

    /// Reads until the server closes the connection or `timeout` passes.
    /// - Returns: What arrived, and whether the server closed the connection.
    func readToEnd(timeout: Duration) async -> (text: String, closed: Bool) {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: self.blockingRead(timeout: timeout)) }
        }
    }

    /// Reads one answer with a `Content-Length` body (or what arrived until `timeout` or the close).
    func readAnswer(timeout: Duration) async -> String {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: self.blockingRead(timeout: timeout, until: Self.isCompleteAnswer).text) }
        }
    }

    /// Reads one head (a `101 Switching Protocols` has no body to wait for).
    func readHead(timeout: Duration) async -> String {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                let read = self.blockingRead(timeout: timeout) { $0.firstRange(of: Array("\r\n\r\n".utf8)) != nil }
                continuation.resume(returning: read.text)
            }
        }
    }

    private func blockingRead(timeout: Duration, until isComplete: ([UInt8]) -> Bool = { _ in false }) -> (text: String, closed: Bool) {
        var received: [UInt8] = []
        let deadline = ContinuousClock.now + timeout
        var buffer = [UInt8](repeating: 0, count: 65536)
        while ContinuousClock.now < deadline {
            var poller = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
            let left = deadline - ContinuousClock.now
            let milliseconds = Int32(max(1, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000))
            guard poll(&poller, 1, milliseconds) > 0 else { continue }
            let count = buffer.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
            if count <= 0 { return (String(decoding: received, as: UTF8.self), true) }
            received += buffer[0..<count]
            if isComplete(received) { break }
        }
        return (String(decoding: received, as: UTF8.self), false)
    }
}
