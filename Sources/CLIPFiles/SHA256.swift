import CCLIPKernels
import Foundation

/// SHA-256 (FIPS 180-4), streamed over files so multi-gigabyte checkpoints are verified in constant memory and
/// photo libraries are fingerprinted without holding a file. Written here rather than taken from swift-crypto:
/// this is the one primitive needed, swift-crypto adds a minute and a half to every clean build, and the
/// compression runs in C with the CPU's SHA extensions (`clip_sha256_blocks`).
public struct SHA256: Sendable {
    private var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
    private var buffer: [UInt8] = []
    private var length: UInt64 = 0

    /// An empty hash state.
    public init() {}

    /// Adds bytes to the message.
    public mutating func update(_ data: UnsafeRawBufferPointer) {
        length += UInt64(data.count)
        var rest = data[...]
        if !buffer.isEmpty {
            let take = min(64 - buffer.count, rest.count)
            buffer += rest.prefix(take)
            rest = rest.dropFirst(take)
            if buffer.count == 64 { buffer.withUnsafeBytes { blocks($0) }; buffer.removeAll() }
        }
        let whole = rest.count / 64 * 64
        if whole > 0 {
            blocks(UnsafeRawBufferPointer(rebasing: rest.prefix(whole)))
            rest = rest.dropFirst(whole)
        }
        buffer += rest
    }

    /// The lowercase hex digest of everything added; the state is spent.
    public mutating func finish() -> String {
        var tail = buffer + [0x80]
        while tail.count % 64 != 56 { tail.append(0) }
        let bits = length * 8
        for i in (0..<8).reversed() { tail.append(UInt8(truncatingIfNeeded: bits >> (UInt64(i) * 8))) }
        buffer.removeAll()
        tail.withUnsafeBytes { blocks($0) }
        return h.map { String(format: "%08x", $0) }.joined()
    }

    /// Compresses whole 64-byte blocks (`p.count` a multiple of 64) in C, with the SHA extensions where the CPU
    /// has them.
    private mutating func blocks(_ p: UnsafeRawBufferPointer) {
        guard let base = p.baseAddress, p.count >= 64 else { return }
        h.withUnsafeMutableBufferPointer { state in
            clip_sha256_blocks(state.baseAddress!, base.assumingMemoryBound(to: UInt8.self), p.count / 64)
        }
    }

    /// The digest of a regular file, read in 4 MiB chunks (a FIFO or device is refused without blocking).
    public static func file(_ path: String) throws(FileError) -> String {
        let file = try RegularFile(path: path)
        var hasher = SHA256()
        var offset = 0
        while offset < file.size {
            let chunk = try file.read(at: offset, count: min(1 << 22, file.size - offset))
            chunk.withUnsafeBytes { hasher.update($0) }
            offset += chunk.count
        }
        return hasher.finish()
    }

    /// The digest of bytes in memory.
    public static func hex(_ data: [UInt8]) -> String {
        var hasher = SHA256()
        data.withUnsafeBytes { hasher.update($0) }
        return hasher.finish()
    }
}
