import GemcacheKey
import Testing

@Suite struct DigestTests {
    @Test(arguments: [
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        (String(repeating: "a", count: 1_000_000), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
    ])
    func sha256KnownVectors(input: String, expected: String) {
        let bytes = Array(input.utf8)
        #expect(Digest.hex(Digest.sha256(bytes)) == expected)
        #expect(Digest.hex(bytes.withUnsafeBytes { Digest.sha256($0) }) == expected)
        #expect(Digest.hex(Digest.sha256(input)) == expected)
    }

    /// RFC 4231 test cases 1, 2 and 6, plus empty key and message.
    @Test(arguments: [
        (
            [UInt8](repeating: 0x0b, count: 20), Array("Hi There".utf8),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        ),
        (
            Array("Jefe".utf8), Array("what do ya want for nothing?".utf8),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        ),
        (
            [UInt8](repeating: 0xaa, count: 131), Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        ),
        ([], [], "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad"),
    ])
    func hmacSHA256KnownVectors(key: [UInt8], message: [UInt8], expected: String) {
        #expect(Digest.hex(Digest.hmacSHA256(key: key, message: message)) == expected)
    }

    @Test func hexIsLowercaseAndPadded() {
        #expect(Digest.hex([0x00, 0xff, 0x0a, 0xB0]) == "00ff0ab0")
        #expect(Digest.hex([]) == "")
    }
}
