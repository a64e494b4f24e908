import AsyncHTTPClient
import Foundation
import GemcacheCore
import GemcacheTestSupport
import GeminiMock
import HummingbirdWSClient
import NIOCore
import NIOHTTP1
import NIOSSL
import NIOWebSocket
import Testing

/// `listen.tls` (SPEC §1): HTTPS and `wss://` on the proxy's one port, with a certificate the test makes;
/// bad files stop start-up naming the setting.
@Suite(.timeLimit(.minutes(1)))
struct TLSEndToEndTests {
    let path = "/v1beta/models/gemini-2.5-flash:generateContent"

    @Test func httpsServesHitsAndTheLiveAPIOverWss() async throws {
        try await withTemporaryDirectory { directory in
            let certificate = try TestCertificate(in: directory.path)
            try await withProxyBehindMock(configure: { $0.listen.tls = .init(certFile: certificate.certFile, keyFile: certificate.keyFile) }) {
                port,
                recorder,
                _ in
                var tls = TLSConfiguration.makeClientConfiguration()
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(certificate.certFile))
                var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
                configuration.timeout = .init(connect: .seconds(2))
                let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)

                do {
                    func generate() async throws -> (status: String?, body: String) {
                        let request = testRequest(
                            url: "https://127.0.0.1:\(port)\(path)",
                            body: generateBody("over TLS"),
                            headers: ["x-goog-api-key": testKey]
                        )
                        let response = try await client.execute(request, timeout: .seconds(10))
                        return (response.headers.first(name: "x-gemcache"), String(buffer: try await response.body.collect(upTo: 1 << 20)))
                    }
                    let miss = try await generate()
                    let hit = try await generate()
                    await GeminiProxy.aliasWritesLanded()  // the raw-key alias lands after the first hit
                    let fastHit = try await generate()
                    #expect(miss.status == "MISS")
                    #expect(hit.status == "HIT" && hit.body == miss.body)
                    #expect(fastHit.status == "HIT" && fastHit.body == miss.body)
                    #expect(recorder.totalRequests == 1)

                    let closed = try await LiveEndToEndTests.setUp(
                        "wss://localhost:\(port)\(LiveEndToEndTests.livePath)?key=\(testKey)",
                        tls: tls
                    )
                    #expect(closed?.closeCode == .normalClosure)

                    // Plain HTTP on the TLS port gets no answer.
                    let plain = try? await send("GET", port: port, path: "/healthz")
                    #expect(plain == nil)
                } catch {
                    try await client.shutdown()
                    throw error
                }
                try await client.shutdown()
            }
        }
    }

    @Test func missingUnreadableOrMismatchedFilesStopStartUpNamingTheSetting() async throws {
        try await withTemporaryDirectory { directory in
            let first = try TestCertificate(in: directory.path, name: "first")
            let second = try TestCertificate(in: directory.path, name: "second")
            let garbage = directory.path + "/garbage.pem"
            try Data("not a certificate\n".utf8).write(to: URL(fileURLWithPath: garbage))
            let cases: [(cert: String, key: String, named: String)] = [
                (directory.path + "/absent.pem", first.keyFile, "listen.tls.cert_file"),
                (garbage, first.keyFile, "listen.tls.cert_file"),
                (first.certFile, directory.path + "/absent.pem", "listen.tls.key_file"),
                (first.certFile, garbage, "listen.tls.key_file"),
                (first.certFile, second.keyFile, "listen.tls.key_file"),
            ]
            for (cert, key, named) in cases {
                var configuration = ProxyConfiguration.testing(upstreamURL: "http://127.0.0.1:9", dataDirectory: directory.path)
                configuration.listen.tls = .init(certFile: cert, keyFile: key)
                do {
                    _ = try await buildApplication(configuration: configuration, environment: [:], logger: quietLogger)
                    Issue.record("started with \(cert) and \(key)")
                } catch let error as ConfigurationError {
                    #expect(error.key == named, "\(cert), \(key): \(error)")
                    #expect(!error.description.contains("\n"))
                }
            }
            do {
                _ = try await ProxyConfiguration.load(filePath: nil, environment: ["GEMCACHE_LISTEN_TLS_CERT_FILE": first.certFile])
                Issue.record("a certificate without a key was accepted")
            } catch let error as ConfigurationError {
                #expect(error.key == "listen.tls")
            }
        }
    }
}
