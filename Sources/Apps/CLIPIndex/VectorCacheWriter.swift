#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLIPFiles
import CLIPTensor
import Foundation
import GRDB

/// Brings a model's vector cache up to the database's generation: the rows changed since the cache's generation
/// (`files.changed`) become one appended segment, so an index run that added ten photos to a million costs
/// milliseconds, not a rebuild; a cache that is missing, damaged, from another database state, or whose
/// segments and dead rows have grown past `compactionDue` is rewritten whole.
///
/// Writers of one cache take an exclusive lock on its file (searches and index runs may race to update it);
/// readers take none (see `VectorCacheFormat`).
struct VectorCacheWriter {
    let index: PhotoIndex
    let model: IndexedModel
    let path: String

    /// How long a process waits for another to finish updating the cache before it reads the vectors itself.
    static let lockWait: Double = 120
    /// More changed rows (a video's moments each count) than this are read by a rebuild, not held in memory for an
    /// append.
    static let appendLimit = 65_536
    /// Segments after which the next update compacts.
    static let segmentLimit = 32

    func bringUpToDate() throws(IndexError) -> VectorStore {
        // The file may be replaced (a compaction's rename) while this process waits for its lock: then again.
        for _ in 0..<4 {
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0o644)
            // A folder this user cannot write, or something not a file at the cache's name.
            guard fd >= 0 else { return try inMemory() }
            defer { close(fd) }
            var st = stat(), now = stat()
            guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { return try inMemory() }
            guard Self.lock(fd) else { return try inMemory() }
            // Unlocked explicitly: a store mapped from this descriptor keeps its open file, and with it the lock,
            // alive after close.
            defer { flock(fd, LOCK_UN) }
            guard stat(path, &now) == 0, now.st_ino == st.st_ino, now.st_dev == st.st_dev else { continue }
            return try update(fd)
        }
        return try inMemory()
    }

    /// An exclusive flock on `fd`, waiting at most `lockWait` seconds.
    static func lock(_ fd: Int32) -> Bool {
        let deadline = Date().addingTimeInterval(lockWait)
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR, Date() < deadline else { return false }
            usleep(20_000)
        }
        return true
    }

    /// A changed file's row: its new vector (nil when it has none now: gone, failed) and, for a video's moment,
    /// the time.
    struct Change {
        var id: Int64
        var vector: [Float]?
        var time: Double?
    }

    /// The rows a search sees, in ascending file id, a video's moments in time order: a still image's embedding,
    /// or each frame of a video (whose embeddings row, the mean, is not searched itself). Columns: file id, vector,
    /// time (NULL for a still), stored path; the model id is the one argument before `filter`'s.
    static func liveRows(_ filter: String) -> String {
        """
        SELECT f.id, coalesce(fr.vector, e.vector), fr.time, f.path
        FROM files f JOIN embeddings e ON e.hash = f.hash AND e.model = ?
        LEFT JOIN frames fr ON fr.hash = e.hash AND fr.model = e.model
        WHERE \(filter) ORDER BY f.id, fr.time
        """
    }

    /// What the database says to do with the cache, read in one snapshot with the generation.
    enum Step {
        case current
        case append(generation: Int64, nonce: Int64, changes: [Change])
        case rebuild
    }

    /// Under the lock: appends, compacts or rebuilds, then maps the result.
    private func update(_ fd: Int32) throws(IndexError) -> VectorStore {
        let d = model.dimension
        let existing = VectorStore.mapped(fd: fd, path: path, dimension: d)
        let step = try index.read { db -> Step in
            let (generation, nonce) = try index.state(db)
            // Only onto the state it was written from: a recreated database, or a restored copy that went on to
            // the same or a later generation by another history, gets a new cache.
            guard let existing, let nonce, existing.generation <= generation,
                  try PhotoIndex.nonce(of: existing.generation, db) == existing.nonce else { return .rebuild }
            if VectorStore.isCurrent(existing, (generation, nonce)) { return .current }
            let n = try Int.fetchOne(db, sql: "SELECT count(*) FROM files WHERE changed > ?", arguments: [existing.generation]) ?? 0
            guard n <= Self.appendLimit else { return .rebuild }
            let rowCount = try Int.fetchOne(db, sql: "SELECT count(*) FROM (\(Self.liveRows("f.changed > ? AND f.deleted = 0 AND f.error IS NULL")))",
                                            arguments: [model.id, existing.generation]) ?? 0
            guard rowCount <= Self.appendLimit else { return .rebuild }
            var changes: [Change] = []
            // Every changed file supersedes its old rows; those live now bring their new ones.
            for id in try Int64.fetchAll(db, sql: "SELECT id FROM files WHERE changed > ? ORDER BY id", arguments: [existing.generation]) {
                changes.append(Change(id: id))
            }
            let rows = try Row.fetchCursor(db, sql: Self.liveRows("f.changed > ? AND f.deleted = 0 AND f.error IS NULL"),
                                           arguments: [model.id, existing.generation])
            while let r = try rows.next() {
                let blob: Data? = r[1]
                guard let blob, let v = Self.floats(blob, dimension: d) else { throw badEmbedding(r[3]) }
                changes.append(Change(id: r[0], vector: v, time: r[2]))
            }
            return .append(generation: generation, nonce: nonce, changes: changes)
        }
        switch step {
        case .current:
            if let existing { return existing }
        case .append(let generation, let nonce, let changes):
            // An append that fails (a full disk) leaves the committed cache as it was; a rebuild tries next.
            if let existing, let store = try? append(fd, existing, generation: generation, nonce: nonce, changes: changes) {
                return store
            }
        case .rebuild:
            break
        }
        return try rebuild()
    }

    private func badEmbedding(_ stored: String) -> IndexError {
        IndexError.corrupt(path: index.path, reason: "the embedding of \(stored) is not \(model.dimension) float32 values; the database was altered (re-index the file)")
    }

    /// `blob` as `dimension` little-endian float32 values, or nil when it has another size.
    static func floats(_ blob: Data, dimension d: Int) -> [Float]? {
        guard blob.count == d * 4 else { return nil }
        return blob.withUnsafeBytes { raw in
            (0..<d).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
        }
    }

    /// Whether the next update should rewrite the cache whole: too many segments, or rows outside the first
    /// segment plus dead rows past a quarter of it (a scan would read too much that a rewrite drops).
    static func compactionDue(segments: Int, rows: Int, baseRows: Int, dead: Int) -> Bool {
        segments + 1 > segmentLimit || (rows - baseRows) + dead > max(baseRows / 4, 4096)
    }

    // MARK: Appending

    private func append(_ fd: Int32, _ existing: VectorStore, generation: Int64, nonce: Int64,
                        changes: [Change]) throws(IndexError) -> VectorStore {
        let d = model.dimension
        // A changed file's old rows are dead whether or not it has new ones.
        var superseded: [Int64] = []
        var newlyDead = 0
        for change in changes where change.vector == nil {
            let old = existing.liveRows(of: change.id).count
            if old > 0 { superseded.append(change.id); newlyDead += old }
        }
        let added = changes.filter { $0.vector != nil }
        let rows = existing.rows + added.count
        let dead = existing.rows - existing.count + newlyDead
        if Self.compactionDue(segments: existing.segmentCount, rows: rows, baseRows: existing.baseRows, dead: dead) {
            return try compact(existing, generation: generation, nonce: nonce, superseded: Set(superseded), added: added)
        }
        guard let h = VectorStore.header(fd: fd) else { throw IndexError.unusable(path: path, reason: "the cache changed while locked") }
        var header = h
        (header.generation, header.nonce) = (generation, nonce)
        if !superseded.isEmpty || !added.isEmpty {
            guard let plan = VectorCacheFormat.Plan(rows: added.count, superseded: superseded.count, dimension: d),
                  let end = Checked.sum(h.committed, plan.length) else { throw IndexError.unusable(path: path, reason: "the cache is too large to append to") }
            // What a crashed writer left past the committed bytes goes; the committed bytes stay as they are.
            guard ftruncate(fd, off_t(h.committed)) == 0 else { throw IndexError.unusable(path: path, reason: String(cString: strerror(errno))) }
            let out = DescriptorOutput(fd: fd)
            let segment = SegmentWriter(output: out, at: h.committed, plan: plan, generation: generation)
            for change in added {
                change.vector!.withUnsafeBufferPointer { segment.add(id: change.id, time: change.time, vector: $0.baseAddress!) }
            }
            segment.finish(superseded: superseded)
            if let failure = out.failure { throw IndexError.unusable(path: path, reason: "\(failure)") }
            // The last part's padding is not written: the length makes it.
            guard ftruncate(fd, off_t(end)) == 0 else { throw IndexError.unusable(path: path, reason: String(cString: strerror(errno))) }
            // The segment is on disk before the header that counts it.
            guard fsync(fd) == 0 else { throw IndexError.unusable(path: path, reason: String(cString: strerror(errno))) }
            header.segments += 1
            header.committed = end
            header.rows = rows
        }
        let headerOutput = DescriptorOutput(fd: fd)
        VectorCacheFormat.encode(header).withUnsafeBytes { headerOutput.write($0, at: 0) }
        if let failure = headerOutput.failure { throw IndexError.unusable(path: path, reason: "\(failure)") }
        guard fsync(fd) == 0, let store = VectorStore.mapped(fd: fd, path: path, dimension: d),
              store.generation == generation else {
            throw IndexError.unusable(path: path, reason: "the appended cache does not read back")
        }
        return store
    }

    // MARK: Rewriting

    /// The live rows of `existing` but `superseded`, and `added`, as one segment in a new file renamed over.
    private func compact(_ existing: VectorStore, generation: Int64, nonce: Int64, superseded: Set<Int64>,
                         added: [Change]) throws(IndexError) -> VectorStore {
        var sources: [(id: Int64, row: Int)] = []
        sources.reserveCapacity(existing.count + added.count)
        existing.forEachLive { row, id, _, _ in if !superseded.contains(id) { sources.append((id, row)) } }
        for (i, a) in added.enumerated() { sources.append((a.id, -1 - i)) }
        // Stable in each file's rows (a video's moments stay in time order): old rows come in row order, new ones in
        // the order read, and never both for one file.
        sources.sort { $0.id != $1.id ? $0.id < $1.id : ($0.row >= 0 ? $0.row < $1.row : $0.row > $1.row) }
        return try write(rows: sources.count, generation: generation, nonce: nonce) { segment in
            for s in sources {
                if s.row >= 0 {
                    segment.add(id: s.id, time: existing.time(s.row), vector: existing.rowPointer(s.row))
                } else {
                    let a = added[-1 - s.row]
                    a.vector!.withUnsafeBufferPointer { segment.add(id: s.id, time: a.time, vector: $0.baseAddress!) }
                }
            }
        }
    }

    /// Every live row from the database, read in one snapshot, as a new file renamed over the cache.
    private func rebuild() throws(IndexError) -> VectorStore {
        // The int8 file of the format before this one is part of the cache now.
        if path.hasSuffix(".vectors") { unlink(String(path.dropLast(".vectors".count)) + ".int8") }
        do {
            return try fromDatabase { (generation, nonce, rows, fill) throws(IndexError) -> VectorStore in
                try write(rows: rows, generation: generation, nonce: nonce, fill)
            }
        } catch {
            // A full disk, a read-only folder: the search goes on from memory.
            return try inMemory()
        }
    }

    /// The cache read into memory of its own (a cache that cannot be written).
    private func inMemory() throws(IndexError) -> VectorStore {
        try fromDatabase { generation, nonce, rows, fill throws(IndexError) -> VectorStore in
            guard let plan = VectorCacheFormat.Plan(rows: rows, superseded: 0, dimension: model.dimension) else {
                throw IndexError.unusable(path: index.path, reason: "too many vectors")
            }
            let out = MemoryOutput(length: VectorCacheFormat.headerSize + plan.length)
            let segment = SegmentWriter(output: out, at: VectorCacheFormat.headerSize, plan: plan, generation: generation)
            try fill(segment)
            segment.finish(superseded: [])
            let header = VectorCacheFormat.Header(generation: generation, dimension: model.dimension, segments: 1,
                                                  committed: VectorCacheFormat.headerSize + plan.length, rows: rows, nonce: nonce)
            VectorCacheFormat.encode(header).withUnsafeBytes { out.write($0, at: 0) }
            guard let store = VectorStore(memory: out.memory, header: header, cachePath: path) else {
                throw IndexError.corrupt(path: index.path, reason: "the vectors read do not form a store")
            }
            return store
        }
    }

    /// Calls `make` inside one read transaction with the generation and its nonce, the number of live rows, and a
    /// function that adds them to a segment in ascending file id.
    private func fromDatabase(_ make: (Int64, Int64, Int, (SegmentWriter) throws(IndexError) -> Void) throws(IndexError) -> VectorStore) throws(IndexError) -> VectorStore {
        let d = model.dimension
        let modelID = model.id
        return try index.read { db in
            let (generation, stateNonce) = try index.state(db)
            // A generation the database holds no nonce for (an altered database) gets a cache no load takes as
            // current: every search rebuilds it, none trusts it.
            let nonce = stateNonce ?? 0
            let live = Self.liveRows("f.deleted = 0 AND f.error IS NULL")
            let expected = try Int.fetchOne(db, sql: "SELECT count(*) FROM (\(live))", arguments: [modelID]) ?? 0
            return try make(generation, nonce, expected) { segment throws(IndexError) in
                var row = [Float](repeating: 0, count: d)
                var bad: String?
                do {
                    let rows = try Row.fetchCursor(db, sql: live, arguments: [modelID])
                    while let r = try rows.next() {
                        // The blob is read in place (no Data copy): this loop is the whole cost of a rebuild.
                        let ok = try r.withUnsafeData(atIndex: 1) { (blob: Data?) -> Bool in
                            guard let blob, blob.count == d * 4 else { return false }
                            blob.withUnsafeBytes { raw in
                                for j in 0..<d {
                                    row[j] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: j * 4, as: UInt32.self)))
                                }
                            }
                            return true
                        }
                        guard ok else { bad = r[3]; break }
                        let time: Double? = r[2]
                        row.withUnsafeBufferPointer { segment.add(id: r[0], time: time, vector: $0.baseAddress!) }
                    }
                } catch {
                    throw IndexError.database(index.path, error)
                }
                if let bad { throw badEmbedding(bad) }
                guard segment.added == expected else { throw IndexError.unusable(path: index.path, reason: "the live files changed while read") }
            }
        }
    }

    /// A new cache file of one segment of `rows` rows, filled by `fill`, renamed over the old one and mapped.
    private func write(rows: Int, generation: Int64, nonce: Int64,
                       _ fill: (SegmentWriter) throws(IndexError) -> Void) throws(IndexError) -> VectorStore {
        let d = model.dimension
        guard let plan = VectorCacheFormat.Plan(rows: rows, superseded: 0, dimension: d) else {
            throw IndexError.unusable(path: index.path, reason: "too many vectors")
        }
        // Under the lock every writer takes: a temporary left here is a crashed writer's.
        PartialFile.removeLeftovers(of: path)
        let file: PartialFile
        do { file = try PartialFile(destination: path) } catch { throw IndexError.file(error) }
        let length = VectorCacheFormat.headerSize + plan.length
        file.setLength(length)
        let segment = SegmentWriter(output: file, at: VectorCacheFormat.headerSize, plan: plan, generation: generation)
        try fill(segment)
        segment.finish(superseded: [])
        let header = VectorCacheFormat.Header(generation: generation, dimension: d, segments: 1, committed: length, rows: rows,
                                              nonce: nonce)
        VectorCacheFormat.encode(header).withUnsafeBytes { file.write($0, at: 0) }
        // Mapped through the temporary's own descriptor, before the rename: by path it could be another writer's
        // file by the time it is read back.
        let store = file.descriptor.flatMap { VectorStore.mapped(fd: $0, path: path, dimension: d) }
        do { try file.commit() } catch { throw IndexError.file(error) }
        guard let store, store.generation == generation, store.nonce == nonce else {
            throw IndexError.unusable(path: path, reason: "the written cache does not read back")
        }
        return store
    }
}

/// Where a segment's bytes go.
protocol CacheOutput: AnyObject {
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int)
}

extension PartialFile: CacheOutput {}

/// Writes at offsets of an open file (an append past the committed bytes); keeps the first failure.
final class DescriptorOutput: CacheOutput {
    let fd: Int32
    private(set) var failure: String?
    init(fd: Int32) { self.fd = fd }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) {
        guard failure == nil else { return }
        failure = writeAll(fd, bytes, at: offset)
    }
}

/// Writes into memory of its own.
final class MemoryOutput: CacheOutput {
    let memory: CacheMemory
    init(length: Int) { memory = CacheMemory(owned: length) }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) {
        guard let base = bytes.baseAddress, offset >= 0, offset + bytes.count <= memory.length else { return }
        (memory.base + offset).copyMemory(from: base, byteCount: bytes.count)
    }
}

/// Fills one segment row by row, in ascending file id, through a buffer of rows written as they fill.
final class SegmentWriter {
    let output: CacheOutput
    let offset: Int
    let plan: VectorCacheFormat.Plan
    let generation: Int64
    private(set) var added = 0
    private var ids: [Int64] = []
    private var vectors: [Float] = []
    private var scales: [Float] = []
    private var times: [Float] = []
    private var codes: [Int8] = []
    private var flushed = 0
    static let chunk = 1024

    init(output: CacheOutput, at offset: Int, plan: VectorCacheFormat.Plan, generation: Int64) {
        (self.output, self.offset, self.plan, self.generation) = (output, offset, plan, generation)
        ids.reserveCapacity(plan.rows)
    }

    /// Adds a row (`time`: its moment in a video, nil for a still); rows past the plan's count are dropped (the
    /// caller checks `added`).
    func add(id: Int64, time: Double?, vector: UnsafePointer<Float>) {
        guard added < plan.rows else { added += 1; return }
        let d = plan.dimension
        ids.append(id.littleEndian)
        vectors.append(contentsOf: UnsafeBufferPointer(start: vector, count: d))
        // A time the database holds out of range (an altered row) is still a moment, at 0.
        times.append(time.map { $0.isFinite && $0 >= 0 ? Float($0) : 0 } ?? -1)
        scales.append(0)
        codes.append(contentsOf: repeatElement(0, count: d))
        let r = scales.count - 1
        scales.withUnsafeMutableBufferPointer { s in
            codes.withUnsafeMutableBufferPointer { c in
                VectorCacheFormat.quantize(vector, dimension: d, scale: s.baseAddress! + r, codes: c.baseAddress! + r * d)
            }
        }
        added += 1
        if scales.count == Self.chunk { flush() }
    }

    private func flush() {
        let d = plan.dimension
        vectors.withUnsafeBytes { output.write($0, at: offset + plan.vectors + flushed * d * 4) }
        scales.withUnsafeBytes { output.write($0, at: offset + plan.scales + flushed * 4) }
        times.map { $0.bitPattern.littleEndian }.withUnsafeBytes { output.write($0, at: offset + plan.times + flushed * 4) }
        codes.withUnsafeBytes { output.write($0, at: offset + plan.codes + flushed * d) }
        flushed += scales.count
        vectors.removeAll(keepingCapacity: true)
        scales.removeAll(keepingCapacity: true)
        times.removeAll(keepingCapacity: true)
        codes.removeAll(keepingCapacity: true)
    }

    /// Writes what is buffered, the ids, the superseded ids (ascending) and the segment's header.
    func finish(superseded: [Int64]) {
        flush()
        ids.withUnsafeBytes { output.write($0, at: offset + plan.ids) }
        superseded.sorted().map(\.littleEndian).withUnsafeBytes { output.write($0, at: offset + plan.supersededIDs) }
        let block = VectorCacheFormat.block(VectorCacheFormat.segmentMagic,
                                            [UInt64(plan.rows), UInt64(plan.superseded), UInt64(bitPattern: generation)])
        block.withUnsafeBytes { output.write($0, at: offset) }
    }
}
