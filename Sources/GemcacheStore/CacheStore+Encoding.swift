/// The byte forms of the store's keys and values: time-index keys and big-endian integers.
extension CacheStore {
    /// `time` (8 bytes, big-endian, so that byte order is time order) followed by the entry key.
    static func indexKey(_ time: Int64, _ key: [UInt8]) -> [UInt8] {
        bigEndian(UInt64(bitPattern: time)) + key
    }

    static func bigEndian(_ value: UInt64) -> [UInt8] {
        (0..<8).reversed().map { UInt8(truncatingIfNeeded: value >> (UInt64($0) * 8)) }
    }

    static func int64(_ bytes: UnsafeRawBufferPointer) -> Int64 {
        guard bytes.count >= 8 else { return 0 }
        return Int64(bitPattern: bytes.prefix(8).reduce(0) { $0 << 8 | UInt64($1) })
    }
}
