import Foundation

/// SHA-256 (FIPS 180-4), streamed over files so multi-gigabyte checkpoints are verified in constant memory and
/// photo libraries are fingerprinted without holding a file. Written here rather than taken from swift-crypto:
/// this is the one primitive needed, and swift-crypto adds a minute and a half to every clean build.
public struct SHA256: Sendable {
    private var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
    private var buffer: [UInt8] = []
    private var length: UInt64 = 0

    private static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

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
            if buffer.count == 64 { buffer.withUnsafeBytes { block(UnsafeRawBufferPointer($0)) }; buffer.removeAll() }
        }
        while rest.count >= 64 {
            block(UnsafeRawBufferPointer(rebasing: rest.prefix(64)))
            rest = rest.dropFirst(64)
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
        tail.withUnsafeBytes { p in
            for o in stride(from: 0, to: p.count, by: 64) { block(UnsafeRawBufferPointer(rebasing: p[o..<(o + 64)])) }
        }
        return h.map { String(format: "%08x", $0) }.joined()
    }

    private mutating func block(_ p: UnsafeRawBufferPointer) {
        // The schedule lives on the stack: a heap array per 64-byte block costs more than the compression.
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { w in
            compress(p, w)
        }
    }

    private mutating func compress(_ p: UnsafeRawBufferPointer, _ w: UnsafeMutableBufferPointer<UInt32>) {
        for i in 0..<16 {
            w[i] = UInt32(p[4 * i]) << 24 | UInt32(p[4 * i + 1]) << 16 | UInt32(p[4 * i + 2]) << 8 | UInt32(p[4 * i + 3])
        }
        func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { x >> n | x << (32 - n) }
        for i in 16..<64 {
            let s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
            let s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
            w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
        }
        var (a, b, c, d, e, f, g, hh) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7])
        for i in 0..<64 {
            let t1 = hh &+ (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) &+ ((e & f) ^ (~e & g)) &+ Self.k[i] &+ w[i]
            let t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) &+ ((a & b) ^ (a & c) ^ (b & c))
            (hh, g, f, e, d, c, b, a) = (g, f, e, d &+ t1, c, b, a, t1 &+ t2)
        }
        h[0] &+= a; h[1] &+= b; h[2] &+= c; h[3] &+= d; h[4] &+= e; h[5] &+= f; h[6] &+= g; h[7] &+= hh
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
