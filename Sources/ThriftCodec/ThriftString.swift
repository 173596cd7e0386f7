import OsqueryVocabulary

/// The vocabulary's word-at-a-time ASCII check, for inlinable code here (which may not call a
/// package function of another module).
@usableFromInline func bytesAreASCII(_ buffer: UnsafeRawBufferPointer) -> Bool { isASCII(buffer) }

/// A Thrift `string`: a sequence of bytes that is nearly always UTF-8.
///
/// Thrift strings are opaque bytes (osquery's C++ uses `std::string`), and table
/// values such as file names or command lines need not be valid UTF-8. Swift's
/// `String` would repair such bytes, so this type keeps valid UTF-8 as a `String`
/// (small ones stay inline, without allocating) and anything else as raw bytes,
/// so every byte a peer sent is carried through unchanged.
///
/// Equality, hashing and ordering are by bytes, like `std::string`: two
/// canonically-equivalent but differently-encoded strings are different values.
@usableFromInline package struct ThriftString: Sendable, Hashable, Comparable, ExpressibleByStringLiteral, ExpressibleByStringInterpolation,
    CustomStringConvertible, CustomDebugStringConvertible
{
    @usableFromInline
    enum Storage: Sendable {
        case text(String)
        case bytes([UInt8])  // always invalid UTF-8
    }

    @usableFromInline
    var storage: Storage

    /// Wraps a Swift string.
    @inlinable
    package init(_ string: String) { storage = .text(string) }

    /// A string from a literal.
    /// - Parameter value: the literal.
    @inlinable
    package init(stringLiteral value: String) { storage = .text(value) }

    /// Takes bytes as they are; valid UTF-8 is kept as a `String`.
    @usableFromInline
    package init<Bytes: Sequence>(bytes: Bytes) where Bytes.Element == UInt8 {
        let array = Array(bytes)
        let text = array.withUnsafeBufferPointer { String(validating: $0, as: UTF8.self) }
        storage = text.map(Storage.text) ?? .bytes(array)
    }

    /// Decodes from a buffer without an intermediate array when the bytes are UTF-8.
    @inlinable
    package init(decoding buffer: UnsafeRawBufferPointer) {
        let bytes = buffer.bindMemory(to: UInt8.self)
        // A concrete initializer: the generic `String(validating:)` costs a
        // runtime metadata lookup per call.
        let text = String(unsafeUninitializedCapacity: bytes.count) { target in
            _ = target.initialize(fromContentsOf: bytes)
            return bytes.count
        }
        // Table data is overwhelmingly ASCII: a word-at-a-time scan proves it.
        // Otherwise the initializer above repaired any invalid UTF-8, so the
        // input was valid exactly when the string's bytes equal it.
        if bytesAreASCII(buffer) || Self.sameBytes(text, buffer) {
            storage = .text(text)
        } else {
            storage = .bytes(Array(bytes))
        }
    }

    @usableFromInline
    static func sameBytes(_ text: String, _ buffer: UnsafeRawBufferPointer) -> Bool {
        var text = text
        return text.withUTF8 { utf8 in
            utf8.count == buffer.count
                && (buffer.count == 0 || memcmp(utf8.baseAddress!, buffer.baseAddress!, buffer.count) == 0)
        }
    }

    /// The value as a Swift string, when it is valid UTF-8.
    @inlinable
    package var string: String? {
        if case .text(let s) = storage { return s }
        return nil
    }

    /// The value as a Swift string; invalid UTF-8 sequences become U+FFFD.
    @usableFromInline
    package var lossyString: String {
        switch storage {
        case .text(let s): s
        case .bytes(let b): String(decoding: b, as: UTF8.self)
        }
    }

    /// The raw bytes.
    @usableFromInline
    package var bytes: [UInt8] {
        switch storage {
        case .text(let s): Array(s.utf8)
        case .bytes(let b): b
        }
    }

    /// The number of bytes on the wire.
    @inlinable
    package var byteCount: Int {
        switch storage {
        case .text(let s): s.utf8.count
        case .bytes(let b): b.count
        }
    }

    /// True when the bytes are valid UTF-8.
    @inlinable
    package var isValidUTF8: Bool {
        if case .text = storage { return true }
        return false
    }

    @inlinable
    package var isEmpty: Bool { byteCount == 0 }

    /// Calls `body` with the raw bytes, without copying when possible.
    @inlinable
    package func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        switch storage {
        case .text(var s):
            if let r = try s.utf8.withContiguousStorageIfAvailable({ try body(UnsafeRawBufferPointer($0)) }) {
                return r
            }
            s.makeContiguousUTF8()
            return try s.utf8.withContiguousStorageIfAvailable { try body(UnsafeRawBufferPointer($0)) }!
        case .bytes(let b):
            return try b.withUnsafeBytes(body)
        }
    }

    /// The text (invalid UTF-8 repaired); see ``lossyString``.
    @usableFromInline
    package var description: String { lossyString }

    /// The text quoted, or the bytes in hex when they are not UTF-8.
    @usableFromInline
    package var debugDescription: String {
        switch storage {
        case .text(let s): s.debugDescription
        case .bytes(let b): "<invalid UTF-8: " + b.map { String($0, radix: 16) }.joined(separator: " ") + ">"
        }
    }

    /// Byte equality (not Unicode canonical equivalence).
    /// - Parameters:
    ///   - lhs: a string.
    ///   - rhs: another string.
    /// - Returns: true when both hold the same bytes.
    @usableFromInline
    package static func == (lhs: ThriftString, rhs: ThriftString) -> Bool {
        switch (lhs.storage, rhs.storage) {
        case (.text(let a), .text(let b)):
            // Byte equality, not Unicode canonical equivalence.
            guard a.utf8.count == b.utf8.count else { return false }
            return lhs.withUnsafeBytes { x in
                rhs.withUnsafeBytes { y in x.count == 0 || memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0 }
            }
        case (.bytes(let a), .bytes(let b)):
            return a == b
        default:
            return false  // valid UTF-8 never equals invalid UTF-8
        }
    }

    /// Hashes the bytes.
    /// - Parameter hasher: the hasher to feed.
    @inlinable
    package func hash(into hasher: inout Hasher) {
        withUnsafeBytes { hasher.combine(bytes: $0) }
        hasher.combine(byteCount)
    }

    /// Unsigned byte-wise order, as `std::string` and `memcmp` sort.
    @usableFromInline
    package static func < (lhs: ThriftString, rhs: ThriftString) -> Bool {
        lhs.withUnsafeBytes { a in
            rhs.withUnsafeBytes { b in
                let n = min(a.count, b.count)
                if n > 0, let pa = a.baseAddress, let pb = b.baseAddress {
                    let c = memcmp(pa, pb, n)
                    if c != 0 { return c < 0 }
                }
                return a.count < b.count
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension String {
    /// Wraps this string for the wire.
    @inlinable
    package var thrift: ThriftString { ThriftString(self) }
}
