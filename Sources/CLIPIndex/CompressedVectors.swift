#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CCLIPKernels
import CLIPFiles
import CLIPTensor
import Foundation

/// The same vectors as a `VectorStore`, each row stored as int8 codes with one scale (row ≈ scale · codes, the
/// scale max|x|/127): a quarter of the bytes, so a scan bound by memory bandwidth runs about four times faster.
/// Searches scan the codes for candidates and re-rank them with the exact fp32 rows, so the scores returned are
/// exact and only the candidate list is approximate (recall measured in `clip bench --search-vectors`).
/// Cached beside the database (`<db>.model-<id>.int8`) with the generation of the vectors it was made from.
public final class CompressedVectors: @unchecked Sendable {
    // Immutable after init; the buffer is a read-only mapping or owned memory, released in deinit.
    public let count: Int
    public let dimension: Int
    private let scales: UnsafePointer<Float>
    private let codes: UnsafePointer<Int8>
    private let base: UnsafeMutableRawPointer
    private let length: Int
    private let mapped: Bool

    static let magic = Array("CLIPI8V1".utf8)
    static let headerSize = 64

    private init(count: Int, dimension: Int, base: UnsafeMutableRawPointer, length: Int, mapped: Bool) {
        (self.count, self.dimension, self.base, self.length, self.mapped) = (count, dimension, base, length, mapped)
        scales = UnsafePointer(base.advanced(by: Self.headerSize).assumingMemoryBound(to: Float.self))
        codes = UnsafePointer(base.advanced(by: Self.headerSize + count * 4).assumingMemoryBound(to: Int8.self))
    }

    deinit {
        if mapped { munmap(base, length) } else { base.deallocate() }
    }

    /// The compressed form of `store`, from the cache when it matches `generation`, else made and cached.
    static func load(for store: VectorStore, path: String, generation: Int64) -> CompressedVectors {
        if let cached = map(path, generation: generation, count: store.count, dimension: store.dimension) { return cached }
        let (n, d) = (store.count, store.dimension)
        let length = headerSize + n * 4 + n * d
        var bytes = [UInt8](repeating: 0, count: length)
        bytes.withUnsafeMutableBytes { raw in
            let base = raw.baseAddress!
            base.copyMemory(from: magic, byteCount: 8)
            base.storeBytes(of: UInt64(bitPattern: generation).littleEndian, toByteOffset: 8, as: UInt64.self)
            base.storeBytes(of: UInt64(n).littleEndian, toByteOffset: 16, as: UInt64.self)
            base.storeBytes(of: UInt64(d).littleEndian, toByteOffset: 24, as: UInt64.self)
            let scales = base.advanced(by: headerSize).assumingMemoryBound(to: Float.self)
            let codes = base.advanced(by: headerSize + n * 4).assumingMemoryBound(to: Int8.self)
            let bounds = chunkBounds(total: n, parts: min(max(availableCores, 1) * 4, max(n, 1)), granule: 1)
            parallelFor(bounds.count - 1) { part in
                for r in bounds[part]..<bounds[part + 1] {
                    let row = store.rowPointer(r)
                    var m: Float = 0
                    for j in 0..<d { m = max(m, abs(row[j])) }
                    let scale = m > 0 ? m / 127 : 1
                    scales[r] = scale
                    for j in 0..<d { codes[r * d + j] = Int8(max(-127, min(127, (row[j] / scale).rounded()))) }
                }
            }
        }
        // The file just written is mapped like any cache; a private copy only when it could not be written.
        if (try? OutputFile.write(bytes, to: path)) != nil,
           let written = map(path, generation: generation, count: n, dimension: d) {
            return written
        }
        let base = UnsafeMutableRawPointer.allocate(byteCount: max(length, 1), alignment: 64)
        bytes.withUnsafeBytes { base.copyMemory(from: $0.baseAddress!, byteCount: length) }
        return CompressedVectors(count: n, dimension: d, base: base, length: length, mapped: false)
    }

    static func map(_ path: String, generation: Int64, count: Int, dimension: Int) -> CompressedVectors? {
        guard let (base, length) = mapCache(path, magic: magic, generation: generation, validate: { raw in
            raw.count == headerSize + count * 4 + count * dimension && raw.u64(16) == UInt64(count)
                && raw.u64(24) == UInt64(dimension)
        }) else { return nil }
        return CompressedVectors(count: count, dimension: dimension, base: base, length: length, mapped: true)
    }

    /// Approximate scores of rows `rows` against `query`, into `out`.
    func scores(rows: Range<Int>, query: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>) {
        clip_dot_rows_i8(codes + rows.lowerBound * dimension, scales + rows.lowerBound, rows.count, dimension, query, out)
    }
}
