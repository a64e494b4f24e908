import Foundation

/// A self-signed certificate for 127.0.0.1 and its key, made by the openssl command line in a
/// directory of the test's (Debian's `openssl` package; `make test` installs it).
public struct TestCertificate: Sendable {
    public let certFile: String
    public let keyFile: String

    /// Makes a new P-256 key and a certificate for `IP:127.0.0.1` and `DNS:localhost`, valid one day.
    public init(in directory: String, name: String = "listener") throws {
        certFile = directory + "/\(name)-cert.pem"
        keyFile = directory + "/\(name)-key.pem"
        let openssl = Process()
        openssl.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        openssl.arguments = [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", keyFile, "-out", certFile, "-days", "1", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ]
        openssl.standardOutput = FileHandle.nullDevice
        openssl.standardError = FileHandle.nullDevice
        try openssl.run()
        openssl.waitUntilExit()
        guard openssl.terminationStatus == 0 else { throw CocoaError(.fileWriteUnknown) }
    }
}
