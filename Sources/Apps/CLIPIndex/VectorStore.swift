#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLIPTensor
import Foundation

/// One model's embeddings of the files a search can return: row-major float32 matrices (one per cache segment)
/// with the file id of each row and an int8 copy of each row: the layout a SIMD scan reads at memory bandwidth.
///
/// The rows live in the vector cache beside the database (`VectorCacheFormat`), memory-mapped, so a query reads
/// no SQL rows and copies nothing. Rows a later segment superseded (the file changed, vanished or failed) are
/// dead: kept in the file, skipped by every scan.
package final class VectorStore: @unchecked Sendable {
    // Immutable after init; the segments point into `memory`, which lives as long as the store.
    /// Live vectors: one per image and one per sampled moment of each video a search can return.
    package let count: Int
    /// Whether any row is a video's moment (then a file may own several rows).
    package let hasMoments: Bool
    package let dimension: Int
    /// The database generation these vectors are from.
    package let generation: Int64
    /// The database's nonce for that generation.
    let nonce: Int64
    /// Rows, dead ones included: row numbers run over `0..<rows`.
    package let rows: Int
    /// The segments that hold rows, in row order.
    private let segments: [VectorCacheFormat.Segment]
    private let starts: [Int]
    /// One bit per row, set when the row is dead; empty when none is.
    private let dead: [UInt64]
    private let memory: CacheMemory
    /// The cache file of the index and model.
    let cachePath: String
    /// Segments in the cache, empty ones included (what compaction counts).
    let segmentCount: Int
    /// Rows of the first segment (the last full build's).
    let baseRows: Int

    /// Nil when the segments under `header` are not all inside `memory`.
    init?(memory: CacheMemory, header: VectorCacheFormat.Header, cachePath: String) {
        let raw = UnsafeRawBufferPointer(start: memory.base, count: memory.length)
        guard let all = VectorCacheFormat.segments(raw, header: header) else { return nil }
        var dead: [UInt64] = []
        var deadCount = 0
        for (s, segment) in all.enumerated() where !segment.superseded.isEmpty {
            if dead.isEmpty { dead = [UInt64](repeating: 0, count: (header.rows + 63) / 64) }
            for stored in segment.superseded {
                let id = Int64(littleEndian: stored)
                for earlier in all[..<s] {
                    for r in earlier.rows(of: id) {
                        let row = earlier.start + r
                        if dead[row >> 6] & (1 << UInt64(row & 63)) == 0 { deadCount += 1 }
                        dead[row >> 6] |= 1 << UInt64(row & 63)
                    }
                }
            }
        }
        self.memory = memory
        self.dead = dead
        self.rows = header.rows
        self.count = header.rows - deadCount
        self.dimension = header.dimension
        self.generation = header.generation
        self.nonce = header.nonce
        self.cachePath = cachePath
        self.segmentCount = all.count
        self.baseRows = all.first?.rows ?? 0
        segments = all.filter { $0.rows > 0 }
        hasMoments = segments.contains { s in (0..<s.rows).contains { s.times[$0] >= 0 } }
        starts = segments.map(\.start)
    }

    /// Where the cache of `model` lives.
    static func cachePath(index: PhotoIndex, model: IndexedModel) -> String {
        index.path + ".model-\(model.id).vectors"
    }

    /// The vectors of `model` for every live file, from the cache when it is current; else the cache is brought up
    /// to date (the rows changed since it was written are appended, or it is rebuilt) and mapped. A cache that
    /// cannot be written is skipped: the vectors are read into memory, and the search works, only slower to start.
    package static func load(index: PhotoIndex, model: IndexedModel) throws(IndexError) -> VectorStore {
        let path = cachePath(index: index, model: model)
        let state = try index.read { db in try index.state(db) }
        if let current = mapped(path, dimension: model.dimension), isCurrent(current, state) { return current }
        return try VectorCacheWriter(index: index, model: model, path: path).bringUpToDate()
    }

    /// Whether `store` shows the database state `state` (a generation and its nonce): the one check both the
    /// fast path of `load` and the writer make, so they never disagree about a cache.
    static func isCurrent(_ store: VectorStore, _ state: (generation: Int64, nonce: Int64?)) -> Bool {
        guard let nonce = state.nonce else { return false }
        return store.generation == state.generation && store.nonce == nonce
    }

    /// Brings the cache up to date now (after indexing), so the next query maps it at once.
    package static func refreshCache(index: PhotoIndex, model: IndexedModel) throws(IndexError) {
        _ = try load(index: index, model: model)
    }

    /// The cache at `path` mapped read-only, when it is a regular file whose header holds and whose committed
    /// segments are whole; nil otherwise. Which database state it is from is the caller's to check.
    static func mapped(_ path: String, dimension: Int) -> VectorStore? {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return mapped(fd: fd, path: path, dimension: dimension)
    }

    static func mapped(fd: Int32, path: String, dimension: Int) -> VectorStore? {
        guard let header = header(fd: fd), header.dimension == dimension,
              let memory = CacheMemory(fd: fd, length: header.committed) else { return nil }
        return VectorStore(memory: memory, header: header, cachePath: path)
    }

    /// The header of the regular file `fd` when it holds and the file is at least as long as it says.
    static func header(fd: Int32) -> VectorCacheFormat.Header? {
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_size >= 64 else { return nil }
        var bytes = [UInt8](repeating: 0, count: 64)
        guard bytes.withUnsafeMutableBytes({ pread(fd, $0.baseAddress, 64, 0) }) == 64,
              let header = bytes.withUnsafeBytes(VectorCacheFormat.header),
              header.committed >= 64, header.committed <= Int(st.st_size) else { return nil }
        return header
    }

    // MARK: Rows

    private func locate(_ row: Int) -> (segment: VectorCacheFormat.Segment, local: Int) {
        var (lo, hi) = (0, starts.count - 1)
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if starts[mid] <= row { lo = mid } else { hi = mid - 1 }
        }
        return (segments[lo], row - segments[lo].start)
    }

    /// The file id of row `row`.
    package func fileID(_ row: Int) -> Int64 {
        let (s, r) = locate(row)
        return Int64(littleEndian: s.ids[r])
    }

    /// The time in its video (seconds) of row `row`, or nil for a still image.
    package func time(_ row: Int) -> Double? {
        let (s, r) = locate(row)
        let t = s.times[r]
        return t >= 0 ? Double(t) : nil
    }

    /// Row `row` in place.
    func rowPointer(_ row: Int) -> UnsafePointer<Float> {
        let (s, r) = locate(row)
        return s.vectors + r * dimension
    }

    /// Row `row` of the matrix.
    package func vector(_ row: Int) -> [Float] { Array(UnsafeBufferPointer(start: rowPointer(row), count: dimension)) }

    /// The dot products of `query` with the given rows, in their order.
    func scores(rows: [Int], query: [Float]) -> [Float] {
        var out = [Float](repeating: 0, count: rows.count)
        query.withUnsafeBufferPointer { q in
            for (i, row) in rows.enumerated() {
                VectorScan.dot(rows: rowPointer(row), count: 1, dimension: dimension, query: q.baseAddress!, into: &out[i])
            }
        }
        return out
    }

    /// Whether row `row` is a live file's (not superseded by a later segment).
    package func isLive(_ row: Int) -> Bool {
        dead.isEmpty || dead[row >> 6] & (1 << UInt64(row & 63)) == 0
    }

    /// The live rows in ascending file id: the order a full build writes, whatever the segments.
    package func liveRowsByID() -> [Int] {
        var live = (0..<rows).filter(isLive)
        // A video's rows keep their time order: they are consecutive in one segment.
        if segments.count > 1 { live.sort { (fileID($0), $0) < (fileID($1), $1) } }
        return live
    }

    /// Every live row with its file id, segment by segment (for the writer's compaction).
    func forEachLive(_ body: (_ row: Int, _ id: Int64, _ segment: VectorCacheFormat.Segment, _ local: Int) -> Void) {
        for s in segments {
            for r in 0..<s.rows where isLive(s.start + r) { body(s.start + r, Int64(littleEndian: s.ids[r]), s, r) }
        }
    }

    /// The live rows holding file `id` (one for an image, one per moment for a video), from the newest segment
    /// that holds any: a file's rows are all in one segment, and a later one supersedes them all.
    func liveRows(of id: Int64) -> [Int] {
        for s in segments.reversed() {
            let live = s.rows(of: id).map { s.start + $0 }.filter(isLive)
            if !live.isEmpty { return live }
        }
        return []
    }

    // MARK: Scanning

    /// The `k` live rows most similar to `query` (dot products; the stored vectors are unit length), best first,
    /// ties to the lower row. Scanned on all cores in chunks, each keeping its own best rows. With `compressed`,
    /// the int8 codes are scanned for the best `candidates` rows (at least `k`), which are then re-scored exactly:
    /// the scores are exact, the list is exact unless a true top-`k` row fell outside the candidates.
    package func nearest(to query: [Float], k: Int, compressed: Bool = false,
                        candidates: Int = 0) -> [(row: Int, score: Float)] {
        guard k > 0, count > 0, query.count == dimension else { return [] }
        // More than every row is every row: a k of 2^63 reserved that much and overflowed.
        let k = min(k, count)
        let keep = min(compressed ? max(candidates, k) : k, count)
        let parts = min(max(availableCores, 1) * 4, max(rows / 4096, 1))
        let bounds = chunkBounds(total: rows, parts: parts, granule: 1)
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
        guard compressed else { return found }
        var exact = found
        query.withUnsafeBufferPointer { q in
            for i in exact.indices {
                var s: Float = 0
                VectorScan.dot(rows: rowPointer(exact[i].row), count: 1, dimension: dimension, query: q.baseAddress!, into: &s)
                exact[i].score = s
            }
        }
        // The codes may be finite where the row is not (a vector written by another program).
        return Self.best(exact.filter { $0.score.isFinite }, k: k)
    }

    private func scan(rows: Range<Int>, query: UnsafePointer<Float>, keep k: Int,
                      compressed: Bool) -> [(row: Int, score: Float)] {
        let block = 2048
        var scores = [Float](repeating: 0, count: block)
        var top: [(row: Int, score: Float)] = []
        top.reserveCapacity(k + 1)
        var start = rows.lowerBound
        while start < rows.upperBound {
            let (segment, local) = locate(start)
            // A block never crosses a segment: each is its own matrix.
            let n = min(block, rows.upperBound - start, segment.rows - local)
            scores.withUnsafeMutableBufferPointer { s in
                if compressed {
                    VectorScan.dot(codes: segment.codes + local * dimension, scales: segment.scales + local, count: n,
                                   dimension: dimension, query: query, into: s.baseAddress!)
                } else {
                    VectorScan.dot(rows: segment.vectors + local * dimension, count: n, dimension: dimension, query: query,
                                   into: s.baseAddress!)
                }
            }
            for j in 0..<n {
                let score = scores[j]
                if top.count == k, !(score > top[k - 1].score) { continue }
                // Only rows that would enter pay these checks. A NaN (a vector merged in from elsewhere) would sort
                // nowhere and stop every later row from entering.
                guard score.isFinite, isLive(start + j) else { continue }
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

/// The bytes a `VectorStore` reads: a read-only mapping of a cache file, or memory of its own (a cache that could
/// not be written).
final class CacheMemory: @unchecked Sendable {
    // Immutable; released in deinit.
    let base: UnsafeMutableRawPointer
    let length: Int
    private let mapped: Bool

    /// The first `length` bytes of `fd`, mapped read-only.
    init?(fd: Int32, length: Int) {
        guard length > 0, let p = mmap(nil, length, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else { return nil }
        (base, self.length, mapped) = (p, length, true)
    }

    /// `length` zeroed bytes of its own, 64-byte aligned.
    init(owned length: Int) {
        base = UnsafeMutableRawPointer.allocate(byteCount: max(length, 64), alignment: 64)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: max(length, 64))
        (self.length, mapped) = (length, false)
    }

    deinit {
        if mapped { munmap(base, length) } else { base.deallocate() }
    }
}
