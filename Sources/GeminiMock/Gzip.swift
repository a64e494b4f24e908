import CZlib

/// gzip encoding, for answering like Google does when a client accepts it (`[[fault:gzip]]`).
enum Gzip {
    /// `bytes` as one gzip member (zlib's deflate with the gzip wrapper, window bits 15 + 16).
    static func encode(_ bytes: [UInt8]) -> [UInt8] {
        var stream = z_stream()
        // > deflateInit2: windowBits can also be greater than 15 for optional gzip encoding. Add 16 to
        // > windowBits to write a simple gzip header and trailer around the compressed data.
        guard
            deflateInit2_(
                &stream,
                Z_DEFAULT_COMPRESSION,
                Z_DEFLATED,
                15 + 16,
                8,
                Z_DEFAULT_STRATEGY,
                ZLIB_VERSION,
                Int32(MemoryLayout<z_stream>.size)
            ) == Z_OK
        else {
            return []
        }
        defer { deflateEnd(&stream) }
        var input = bytes
        var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, UInt(bytes.count))))
        let written = input.withUnsafeMutableBufferPointer { input in
            output.withUnsafeMutableBufferPointer { output -> Int in
                stream.next_in = input.baseAddress
                stream.avail_in = UInt32(input.count)
                stream.next_out = output.baseAddress
                stream.avail_out = UInt32(output.count)
                guard deflate(&stream, Z_FINISH) == Z_STREAM_END else { return 0 }
                return output.count - Int(stream.avail_out)
            }
        }
        return Array(output.prefix(written))
    }
}
