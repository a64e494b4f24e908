import CLibCrypto

/// SHA-256 and HMAC-SHA-256 through the system OpenSSL libcrypto (EVP one-shot APIs).
public enum Digest {
    /// Length of a SHA-256 digest in bytes.
    public static let sha256Length = 32

    /// SHA-256 of `bytes` (32 bytes).
    public static func sha256(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        withNonNullBase(bytes) { data, count in
            [UInt8](unsafeUninitializedCapacity: sha256Length) { out, initialized in
                var length: UInt32 = 0
                let ok = EVP_Digest(data, count, out.baseAddress, &length, EVP_sha256(), nil)
                precondition(ok == 1 && length == sha256Length, "EVP_Digest(SHA-256) failed")
                initialized = Int(length)
            }
        }
    }

    /// SHA-256 of `bytes` (32 bytes).
    public static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        bytes.withUnsafeBytes { sha256($0) }
    }

    /// SHA-256 of the UTF-8 encoding of `string` (32 bytes).
    public static func sha256(_ string: String) -> [UInt8] {
        sha256(Array(string.utf8))
    }

    /// HMAC-SHA-256 of `message` under `key` (32 bytes).
    public static func hmacSHA256(key: [UInt8], message: [UInt8]) -> [UInt8] {
        key.withUnsafeBytes { keyBuffer in
            message.withUnsafeBytes { messageBuffer in
                withNonNullBase(keyBuffer) { keyPointer, keyCount in
                    withNonNullBase(messageBuffer) { messagePointer, messageCount in
                        [UInt8](unsafeUninitializedCapacity: sha256Length) { out, initialized in
                            var length: UInt32 = 0
                            let result = HMAC(
                                EVP_sha256(),
                                keyPointer,
                                Int32(keyCount),
                                messagePointer.assumingMemoryBound(to: UInt8.self),
                                messageCount,
                                out.baseAddress,
                                &length
                            )
                            precondition(result != nil && length == sha256Length, "HMAC(SHA-256) failed")
                            initialized = Int(length)
                        }
                    }
                }
            }
        }
    }

    /// Lowercase hexadecimal rendering of `bytes`.
    public static func hex(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.underestimatedCount * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Calls `body` with a non-null base pointer: libcrypto wants a valid pointer even for empty input.
    private static func withNonNullBase<R>(
        _ buffer: UnsafeRawBufferPointer,
        _ body: (UnsafeRawPointer, Int) -> R
    ) -> R {
        if let base = buffer.baseAddress {
            return body(base, buffer.count)
        }
        var placeholder: UInt8 = 0
        return withUnsafeBytes(of: &placeholder) { body($0.baseAddress!, 0) }
    }
}
