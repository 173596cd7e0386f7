/// Whether every byte is below 0x80, a word at a time (table text is overwhelmingly ASCII,
/// and an ASCII buffer is valid UTF-8 without further checks).
/// The one copy: the engine and ThriftCodec both use it.
@inlinable @inline(__always)
package func isASCII(_ buffer: UnsafeRawBufferPointer) -> Bool {
    var i = 0
    let n = buffer.count
    var any: UInt64 = 0
    while i &+ 8 <= n {
        any |= buffer.loadUnaligned(fromByteOffset: i, as: UInt64.self)
        i &+= 8
    }
    while i < n {
        any |= UInt64(buffer[i])
        i &+= 1
    }
    return any & 0x8080_8080_8080_8080 == 0
}
