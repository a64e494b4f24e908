import CLibCrypto
import NIOSSL

extension ProxyConfiguration.Listen.TLSFiles {
    /// The server TLS configuration of `listen.tls`: HTTP/1.1 over TLS 1.2 or later.
    ///
    /// - Throws: ``ConfigurationError`` naming `listen.tls.cert_file` or `listen.tls.key_file` when a
    ///   file is missing or unreadable, holds no PEM certificate or key, or the key does not belong to
    ///   the certificate.
    func serverConfiguration() throws(ConfigurationError) -> TLSConfiguration {
        guard let certFile, let keyFile else {
            throw ConfigurationError(key: "listen.tls", problem: "needs both cert_file and key_file (PEM)")
        }
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certFile)
        } catch {
            throw ConfigurationError(key: "listen.tls.cert_file", problem: "cannot read a PEM certificate from \(certFile): \(error)")
        }
        guard let leaf = chain.first else {
            throw ConfigurationError(key: "listen.tls.cert_file", problem: "\(certFile) holds no PEM certificate")
        }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: keyFile, format: .pem)
        } catch {
            throw ConfigurationError(key: "listen.tls.key_file", problem: "cannot read a PEM private key from \(keyFile): \(error)")
        }
        guard let certificate = try? leaf.toDERBytes(), let privateKey = try? key.derBytes,
            Self.keyMatches(certificate: certificate, privateKey: privateKey)
        else {
            throw ConfigurationError(key: "listen.tls.key_file", problem: "the key in \(keyFile) does not belong to the certificate in \(certFile)")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        configuration.applicationProtocols = ["http/1.1"]
        return configuration
    }

    /// Whether the DER private key belongs to the DER certificate (OpenSSL's `X509_check_private_key`;
    /// swift-nio-ssl does not check it, and the mismatch would only show at the first handshake).
    private static func keyMatches(certificate: [UInt8], privateKey: [UInt8]) -> Bool {
        certificate.withUnsafeBufferPointer { certificate in
            var cursor = certificate.baseAddress
            guard let x509 = d2i_X509(nil, &cursor, certificate.count) else { return false }
            defer { X509_free(x509) }
            return privateKey.withUnsafeBufferPointer { privateKey in
                var cursor = privateKey.baseAddress
                guard let key = d2i_AutoPrivateKey(nil, &cursor, privateKey.count) else { return false }
                defer { EVP_PKEY_free(key) }
                return X509_check_private_key(x509, key) == 1
            }
        }
    }
}
