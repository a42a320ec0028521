#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CCLIPKernels
import CLIPFiles
import CLIPTensor
import Foundation
import GRDB

/// One model's embeddings of the files a search can return, as one contiguous row-major [count, dimension]
/// float32 matrix with the file id of each row: the layout a SIMD scan reads at memory bandwidth.
///
/// The matrix is cached beside the database (`<db>.model-<id>.vectors`) and memory-mapped, so a query reads no
/// SQL rows and copies nothing; the cache carries the database's generation counter and is rebuilt when any
/// committed change made it stale.
public final class VectorStore: @unchecked Sendable {
    // Immutable after init; the mapping is read-only and released in deinit.
    public let count: Int
    public let dimension: Int
    private let ids: UnsafePointer<Int64>
    private let vectors: UnsafePointer<Float>
    private let mapping: (base: UnsafeMutableRawPointer, length: Int)?
    private let owned: UnsafeMutableRawPointer?

    static let magic = Array("CLIPVEC1".utf8)
    static let headerSize = 64

    /// The file id of row `row`.
    public func fileID(_ row: Int) -> Int64 { ids[row] }

    /// Row `row` in place.
    func rowPointer(_ row: Int) -> UnsafePointer<Float> { vectors + row * dimension }

    /// The database generation these vectors are from.
    public let generation: Int64
    /// The cache file of the index and model.
    let cachePath: String

    /// The int8 form of these vectors (mapped from its cache, or made and cached): a quarter of the bytes to scan.
    public func compressed() -> CompressedVectors {
        CompressedVectors.load(for: self, path: cachePath.replacingOccurrences(of: ".vectors", with: ".int8", options: .backwards),
                               generation: generation)
    }

    /// Row `row` of the matrix.
    public func vector(_ row: Int) -> [Float] { Array(UnsafeBufferPointer(start: vectors + row * dimension, count: dimension)) }

    private init(count: Int, dimension: Int, buffer: UnsafeMutableRawPointer, mapped: Bool, length: Int,
                 generation: Int64, cachePath: String) {
        self.count = count
        self.dimension = dimension
        self.generation = generation
        self.cachePath = cachePath
        ids = UnsafePointer(buffer.advanced(by: Self.headerSize).assumingMemoryBound(to: Int64.self))
        vectors = UnsafePointer(buffer.advanced(by: Self.headerSize + count * 8).assumingMemoryBound(to: Float.self))
        mapping = mapped ? (buffer, length) : nil
        owned = mapped ? nil : buffer
    }

    deinit {
        if let mapping { munmap(mapping.base, mapping.length) }
        owned?.deallocate()
    }

    /// Where the cache of `model` lives.
    static func cachePath(index: PhotoIndex, model: IndexedModel) -> String {
        index.path + ".model-\(model.id).vectors"
    }

    /// The vectors of `model` for every live file, from the cache when it is current, else read from the database
    /// and cached (a cache that cannot be written is skipped: the search still works, only slower to start).
    public static func load(index: PhotoIndex, model: IndexedModel) throws(IndexError) -> VectorStore {
        let path = cachePath(index: index, model: model)
        let generation = try index.read { db in try index.generation(db) }
        if let cached = map(path, generation: generation, dimension: model.dimension) { return cached }
        // Stale: the compressed copy is too (its generation says so), and is remade from these vectors when asked.
        let bytes = try build(index: index, model: model, generation: generation)
        // The file just written is mapped like any cache; a private copy only when it could not be written.
        if (try? OutputFile.write(bytes, to: path)) != nil,
           let written = map(path, generation: generation, dimension: model.dimension) {
            return written
        }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 64)
        bytes.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        let count = Int(header(bytes, 16))
        return VectorStore(count: count, dimension: model.dimension, buffer: buffer, mapped: false, length: bytes.count,
                           generation: generation, cachePath: path)
    }

    /// Rebuilds the cache now (after indexing), so the next query maps it at once.
    public static func refreshCache(index: PhotoIndex, model: IndexedModel) throws(IndexError) {
        _ = try load(index: index, model: model)
    }

    private static func header(_ bytes: [UInt8], _ offset: Int) -> UInt64 {
        bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) }
    }

    /// The cache file's bytes: magic, generation, count, dimension (u64 little-endian), padding to 64 bytes, the
    /// file ids (i64), the vectors (f32).
    static func build(index: PhotoIndex, model: IndexedModel, generation: Int64) throws(IndexError) -> [UInt8] {
        let d = model.dimension
        var ids: [Int64] = []
        var values: [Float] = []
        var bad: String?
        try index.read { db in
            let live = "FROM files f JOIN embeddings e ON e.hash = f.hash AND e.model = ? WHERE f.deleted = 0 AND f.error IS NULL"
            let expected = try Int.fetchOne(db, sql: "SELECT count(*) \(live)", arguments: [model.id]) ?? 0
            ids.reserveCapacity(expected)
            values.reserveCapacity(expected * d)
            let rows = try Row.fetchCursor(db, sql: "SELECT f.id, e.vector, f.path \(live) ORDER BY f.id", arguments: [model.id])
            while let r = try rows.next() {
                // The blob is read in place (no Data copy): this loop is the whole cost of rebuilding the cache.
                let ok = try r.withUnsafeData(atIndex: 1) { (blob: Data?) -> Bool in
                    guard let blob, blob.count == d * 4 else { return false }
                    blob.withUnsafeBytes { raw in
                        for j in 0..<d {
                            values.append(Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: j * 4, as: UInt32.self))))
                        }
                    }
                    return true
                }
                guard ok else {
                    bad = "the embedding of \(r[2] as String) is not \(d) float32 values"
                    break
                }
                ids.append(r[0])
            }
        }
        if let bad { throw IndexError("\(index.path): \(bad); the database was altered (re-index the file)") }
        var out = [UInt8](repeating: 0, count: headerSize)
        out.replaceSubrange(0..<8, with: magic)
        func put(_ v: UInt64, at o: Int) { withUnsafeBytes(of: v.littleEndian) { out.replaceSubrange(o..<(o + 8), with: $0) } }
        put(UInt64(bitPattern: generation), at: 8)
        put(UInt64(ids.count), at: 16)
        put(UInt64(d), at: 24)
        out.reserveCapacity(headerSize + ids.count * (8 + 4 * d))
        for id in ids { withUnsafeBytes(of: id.littleEndian) { out += $0 } }
        values.withUnsafeBytes { out += $0 }
        return out
    }

    /// The cache mapped read-only when it exists, is whole and matches the generation and dimension.
    static func map(_ path: String, generation: Int64, dimension: Int) -> VectorStore? {
        guard let (base, length) = mapCache(path, magic: magic, generation: generation, validate: { raw in
            let count = Int(clamping: raw.u64(16))
            return raw.u64(24) == UInt64(dimension) && count <= (raw.count - headerSize) / (8 + 4 * max(dimension, 1))
                && raw.count == headerSize + count * (8 + 4 * dimension)
        }) else { return nil }
        let count = Int(UnsafeRawBufferPointer(start: base, count: length).u64(16))
        return VectorStore(count: count, dimension: dimension, buffer: base, mapped: true, length: length,
                           generation: generation, cachePath: path)
    }

    // MARK: Scanning

    /// The `k` rows most similar to `query` (dot products; the stored vectors are unit length), best first,
    /// ties to the lower row. Scanned on all cores in chunks, each keeping its own best rows. With `compressed`,
    /// the int8 codes are scanned for the best `candidates` rows (at least `k`), which are then re-scored exactly:
    /// the scores are exact, the list is exact unless a true top-`k` row fell outside the candidates.
    public func nearest(to query: [Float], k: Int, compressed: CompressedVectors? = nil,
                        candidates: Int = 0) -> [(row: Int, score: Float)] {
        guard k > 0, count > 0, query.count == dimension else { return [] }
        // More than every row is every row: a k of 2^63 reserved that much and overflowed.
        let k = min(k, count)
        let keep = min(compressed == nil ? k : max(candidates, k), count)
        let parts = min(max(availableCores, 1) * 4, max(count / 4096, 1))
        let bounds = chunkBounds(total: count, parts: parts, granule: 1)
        var partial = [[(row: Int, score: Float)]](repeating: [], count: bounds.count - 1)
        partial.withUnsafeMutableBufferPointer { out in
            let o = out.baseAddress!
            query.withUnsafeBufferPointer { q in
                let qp = q.baseAddress!
                parallelFor(bounds.count - 1) { part in
                    o[part] = self.scan(rows: bounds[part]..<bounds[part + 1], query: qp, keep: keep, compressed: compressed)
                }
            }
        }
        let found = Self.best(partial.flatMap { $0 }, k: keep)
        guard compressed != nil else { return found }
        var exact = found
        query.withUnsafeBufferPointer { q in
            for i in exact.indices {
                var s: Float = 0
                clip_dot_rows(rowPointer(exact[i].row), 1, dimension, q.baseAddress!, &s)
                exact[i].score = s
            }
        }
        return Self.best(exact, k: k)
    }

    private func scan(rows: Range<Int>, query: UnsafePointer<Float>, keep k: Int,
                      compressed: CompressedVectors?) -> [(row: Int, score: Float)] {
        let block = 2048
        var scores = [Float](repeating: 0, count: block)
        var top: [(row: Int, score: Float)] = []
        top.reserveCapacity(k + 1)
        var start = rows.lowerBound
        while start < rows.upperBound {
            let n = min(block, rows.upperBound - start)
            scores.withUnsafeMutableBufferPointer { s in
                if let compressed {
                    compressed.scores(rows: start..<(start + n), query: query, into: s.baseAddress!)
                } else {
                    clip_dot_rows(vectors + start * dimension, n, dimension, query, s.baseAddress!)
                }
            }
            for j in 0..<n {
                let score = scores[j]
                if top.count == k, !(score > top[k - 1].score) { continue }
                // Insertion into the sorted list: k is small, and past the first rows almost nothing gets in.
                var at = top.count
                while at > 0 && top[at - 1].score < score { at -= 1 }
                top.insert((start + j, score), at: at)
                if top.count > k { top.removeLast() }
            }
            start += n
        }
        return top
    }

    static func best(_ candidates: [(row: Int, score: Float)], k: Int) -> [(row: Int, score: Float)] {
        Array(candidates.sorted { $0.score != $1.score ? $0.score > $1.score : $0.row < $1.row }.prefix(k))
    }
}

extension UnsafeRawBufferPointer {
    /// The little-endian UInt64 at `offset`.
    func u64(_ offset: Int) -> UInt64 { UInt64(littleEndian: loadUnaligned(fromByteOffset: offset, as: UInt64.self)) }
}

/// A cache file mapped read-only when it is a regular file of at least 64 bytes starting with `magic` and
/// `generation` (u64 at 8) and `validate` accepts the rest of it; nil (and nothing mapped) otherwise. A cache
/// that is missing, stale, truncated or damaged is simply rebuilt by the caller.
func mapCache(_ path: String, magic: [UInt8], generation: Int64,
              validate: (UnsafeRawBufferPointer) -> Bool) -> (UnsafeMutableRawPointer, Int)? {
    let fd = open(path, O_RDONLY | O_NONBLOCK)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_size >= 64 else { return nil }
    let length = Int(st.st_size)
    guard let base = mmap(nil, length, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else { return nil }
    let raw = UnsafeRawBufferPointer(start: base, count: length)
    guard Array(raw[0..<8]) == magic, Int64(bitPattern: raw.u64(8)) == generation, validate(raw) else {
        munmap(base, length)
        return nil
    }
    return (base, length)
}
