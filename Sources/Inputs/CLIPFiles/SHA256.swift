import CCLIPKernels
import Foundation

/// SHA-256 (FIPS 180-4), streamed over files so multi-gigabyte checkpoints are verified in constant memory and
/// photo libraries are fingerprinted without holding a file. Written here rather than taken from swift-crypto:
/// this is the one primitive needed, swift-crypto adds a minute and a half to every clean build, and the
/// compression runs in C with the CPU's SHA extensions (`clip_sha256_blocks`).
package struct SHA256: Sendable {
    private var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
    private var framing = BlockFraming()

    /// An empty hash state.
    package init() {}

    /// Adds bytes to the message.
    package mutating func update(_ data: UnsafeRawBufferPointer) {
        framing.update(data) { clip_sha256_blocks(&h, $0, $1) }
    }

    /// The lowercase hex digest of everything added; the state is spent.
    package mutating func finish() -> String {
        framing.finish { clip_sha256_blocks(&h, $0, $1) }
        return h.map { String(format: "%08x", $0) }.joined()
    }

    /// The digest of a regular file, read in 4 MiB chunks (a FIFO or device is refused without blocking).
    package static func file(_ path: String) throws(FileError) -> String {
        var hasher = SHA256()
        try BlockFraming.read(path) { hasher.update($0) }
        return hasher.finish()
    }

    /// The digest of bytes in memory.
    package static func hex(_ data: [UInt8]) -> String {
        var hasher = SHA256()
        data.withUnsafeBytes { hasher.update($0) }
        return hasher.finish()
    }
}

/// SHA-1, for one purpose: the git blob id (`SHA-1("blob <size>\0" + content)`) that the Hugging Face Hub gives
/// as the ETag of a small file, so such downloads are checked too. Not for anything security rests on.
package struct SHA1: Sendable {
    private var h: [UInt32] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0]
    private var framing = BlockFraming()

    /// An empty hash state.
    package init() {}

    /// Adds bytes to the message.
    package mutating func update(_ data: UnsafeRawBufferPointer) {
        framing.update(data) { clip_sha1_blocks(&h, $0, $1) }
    }

    /// The lowercase hex digest of everything added; the state is spent.
    package mutating func finish() -> String {
        framing.finish { clip_sha1_blocks(&h, $0, $1) }
        return h.map { String(format: "%08x", $0) }.joined()
    }

    /// The git blob id of a regular file, as `git hash-object` prints it.
    package static func gitBlobID(_ path: String) throws(FileError) -> String {
        let size = try RegularFile(path: path).size
        var hasher = SHA1()
        Array("blob \(size)\0".utf8).withUnsafeBytes { hasher.update($0) }
        try BlockFraming.read(path) { hasher.update($0) }
        return hasher.finish()
    }
}

/// The message framing SHA-1 and SHA-256 share: whole 64-byte blocks to the compression function, then the 0x80
/// byte, zeros and the big-endian bit length.
struct BlockFraming: Sendable {
    private var buffer: [UInt8] = []
    private var length: UInt64 = 0

    /// Feeds `data`, calling `compress(blocks, count)` with whole blocks only.
    mutating func update(_ data: UnsafeRawBufferPointer, compress: (UnsafePointer<UInt8>, Int) -> Void) {
        length += UInt64(data.count)
        var rest = data[...]
        if !buffer.isEmpty {
            let take = min(64 - buffer.count, rest.count)
            buffer += rest.prefix(take)
            rest = rest.dropFirst(take)
            if buffer.count == 64 {
                buffer.withUnsafeBytes { compress($0.baseAddress!.assumingMemoryBound(to: UInt8.self), 1) }
                buffer.removeAll()
            }
        }
        let whole = rest.count / 64 * 64
        if whole > 0, let base = UnsafeRawBufferPointer(rebasing: rest.prefix(whole)).baseAddress {
            compress(base.assumingMemoryBound(to: UInt8.self), whole / 64)
            rest = rest.dropFirst(whole)
        }
        buffer += rest
    }

    /// Pads the message and compresses the last one or two blocks.
    mutating func finish(compress: (UnsafePointer<UInt8>, Int) -> Void) {
        var tail = buffer + [0x80]
        while tail.count % 64 != 56 { tail.append(0) }
        let bits = length * 8
        for i in (0..<8).reversed() { tail.append(UInt8(truncatingIfNeeded: bits >> (UInt64(i) * 8))) }
        buffer.removeAll()
        tail.withUnsafeBytes { compress($0.baseAddress!.assumingMemoryBound(to: UInt8.self), tail.count / 64) }
    }

    /// A regular file in 4 MiB chunks (a FIFO or device is refused without blocking).
    static func read(_ path: String, _ body: (UnsafeRawBufferPointer) -> Void) throws(FileError) {
        let file = try RegularFile(path: path)
        var offset = 0
        while offset < file.size {
            let chunk = try file.read(at: offset, count: min(1 << 22, file.size - offset))
            if chunk.isEmpty { break }
            chunk.withUnsafeBytes(body)
            offset += chunk.count
        }
    }
}
