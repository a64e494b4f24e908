import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// An upstream on loopback that answers every request with the same `200` JSON body, over keep-alive
/// connections: a stand-in for a Gemini that answers what a test chooses (numbers no real one sends).
///
/// Plain sockets served on dispatch threads, never the cooperative pool, like ``RawConnection``.
final class FixedAnswerUpstream: Sendable {
    let port: Int
    private let listener: Int32
    private let answer: [UInt8]
    private let state = Mutex<(requests: Int, connections: [Int32])>((0, []))

    /// Listens on 127.0.0.1 on a free port.
    init(body: String) throws {
        answer = Array("HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=UTF-8\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let listening = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, length) == 0 && listen(listener, 64) == 0 && getsockname(listener, $0, &length) == 0
            }
        }
        guard listening else {
            close(listener)
            throw POSIXError(.EADDRNOTAVAIL)
        }
        self.listener = listener
        port = Int(UInt16(bigEndian: address.sin_port))
        DispatchQueue.global().async { self.acceptConnections() }
    }

    /// Requests answered so far.
    var requests: Int { state.withLock { $0.requests } }

    /// Stops listening and ends every connection.
    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        for connection in state.withLock({ $0.connections }) { shutdown(connection, Int32(SHUT_RDWR)) }
    }

    private func acceptConnections() {
        while true {
            let connection = accept(listener, nil, nil)
            guard connection >= 0 else {
                close(listener)
                return
            }
            state.withLock { $0.connections.append(connection) }
            DispatchQueue.global().async { self.serve(connection) }
        }
    }

    /// Answers each complete request (a head and its `Content-Length` body) until the peer closes.
    private func serve(_ connection: Int32) {
        defer { close(connection) }
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            while let headEnd = received.firstRange(of: Array("\r\n\r\n".utf8)) {
                let head = String(decoding: received[..<headEnd.lowerBound], as: UTF8.self)
                let length = head.firstMatch(of: /(?i)content-length: *(\d+)/).flatMap { Int($0.1) } ?? 0
                guard received.count >= headEnd.upperBound + length else { break }
                received.removeFirst(headEnd.upperBound + length)
                state.withLock { $0.requests += 1 }
                var offset = 0
                while offset < answer.count {
                    let written = answer[offset...].withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                    guard written > 0 else { return }
                    offset += written
                }
            }
            let count = chunk.withUnsafeMutableBytes { recv(connection, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { return }
            received += chunk[0..<count]
        }
    }
}
