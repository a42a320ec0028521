@testable import CLIPIndex
import CLIPTestSupport
import Foundation
import GRDB
import Synchronization
import Testing

/// The live vectors of `model` as the database holds them, by file id.
private func databaseVectors(_ index: PhotoIndex, _ model: IndexedModel) throws -> [Int64: [Float]] {
    try index.read { db in
        var out: [Int64: [Float]] = [:]
        for r in try Row.fetchAll(db, sql: """
            SELECT f.id, e.vector FROM files f JOIN embeddings e ON e.hash = f.hash AND e.model = ?
            WHERE f.deleted = 0 AND f.error IS NULL
            """, arguments: [model.id]) {
            out[r[0]] = VectorCacheWriter.floats(r[1], dimension: model.dimension)
        }
        return out
    }
}

/// The store's live rows by file id; a file with two live rows fails the test.
private func storeVectors(_ store: VectorStore) -> [Int64: [Float]] {
    var out: [Int64: [Float]] = [:]
    for row in 0..<store.rows where store.isLive(row) {
        #expect(out[store.fileID(row)] == nil, "file \(store.fileID(row)) has two live rows")
        out[store.fileID(row)] = store.vector(row)
    }
    return out
}

/// Loads the store and checks it against the database: the same files with the same vectors, and a scan that
/// returns every live file once (exact and int8) and no dead one.
@discardableResult
private func expectCurrent(_ index: PhotoIndex, _ model: IndexedModel, _ step: String) throws -> VectorStore {
    let store = try VectorStore.load(index: index, model: model)
    let expected = try databaseVectors(index, model)
    #expect(storeVectors(store) == expected, "\(step): the cache differs from the database")
    #expect(store.count == expected.count, "\(step)")
    if let query = expected.values.first {
        for compressed in [false, true] {
            let all = store.nearest(to: query, k: store.count + 5, compressed: compressed, candidates: store.count)
            #expect(Set(all.map { store.fileID($0.row) }) == Set(expected.keys) && all.count == expected.count,
                    "\(step): a scan (compressed \(compressed)) returns another set of files")
        }
    }
    return store
}

/// A new index in a scratch folder holding `count` random vectors of `dimension`, with its cache built.
private func syntheticIndex(_ name: String, dimension: Int, count: Int) throws -> (dir: String, index: PhotoIndex, model: IndexedModel) {
    let dir = try scratchDirectory(name)
    let index = try PhotoIndex(path: "\(dir)/index.sqlite")
    let model = try index.model(fingerprint: "f", name: "random", dimension: dimension)
    try SyntheticVectors.add(count, index: index, model: model, seed: 1)
    try expectCurrent(index, model, "built")
    return (dir, index, model)
}

@Suite("the vector cache, brought up to date by appending")
struct VectorCacheTests {
    @Test("added, changed, vanished and failed files, a merge and an import each append a segment that matches the database")
    func appendsFollowTheDatabase() throws {
        let dir = try scratchDirectory("vector-append")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let photos = dir + "/photos"
        for i in 0..<6 { try writeImage("\(photos)/\(i).png", seed: 40 + i) }
        let (index, model) = try openIndex("\(dir)/index.sqlite")
        _ = try update(index, model, [photos])
        var store = try expectCurrent(index, model, "first build")
        #expect(store.segmentCount == 1)

        for i in 6..<8 { try writeImage("\(photos)/\(i).png", seed: 40 + i) }
        _ = try update(index, model, [photos])
        let before = try expectCurrent(index, model, "two photos added")
        #expect(before.segmentCount == 2, "appended, not rebuilt")
        let snapshot = storeVectors(before)

        try writeImage("\(photos)/1.png", seed: 91)
        try FileManager.default.removeItem(atPath: "\(photos)/2.png")
        try Data("no image".utf8).write(to: URL(fileURLWithPath: "\(photos)/3.png"))
        _ = try update(index, model, [photos])
        store = try expectCurrent(index, model, "one changed, one gone, one broken")
        #expect(store.segmentCount == 3 && store.rows - store.count == 3, "three rows superseded")
        #expect(storeVectors(before) == snapshot, "a store mapped before the append reads what it read")

        // Another index's photos merged in, and this index's vectors imported again as a second model.
        let other = dir + "/other"
        for i in 0..<2 { try writeImage("\(other)/m\(i).png", seed: 70 + i) }
        let (otherIndex, otherModel) = try openIndex("\(other)/index.sqlite")
        _ = try update(otherIndex, otherModel, [other])
        _ = try index.merge(from: "\(other)/index.sqlite")
        store = try expectCurrent(index, model, "merged")
        #expect(store.count == 8, "six left here, two merged")
        let layout = dir + "/layout"
        _ = try RetrievalLayout.export(index, model: model, to: layout)
        let second = try index.model(fingerprint: "second", name: "second", dimension: model.dimension)
        _ = try RetrievalLayout.importEmbeddings(from: layout, into: index, model: second)
        try expectCurrent(index, second, "imported as a second model")
        try expectCurrent(index, model, "the first model after the import")
    }

    @Test("a torn header, a crashed append's leftovers and a database older than the cache are each repaired")
    func damageIsRepaired() throws {
        let (dir, index, model) = try syntheticIndex("vector-damage", dimension: 19, count: 50)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = VectorStore.cachePath(index: index, model: model)

        // A writer killed while appending leaves bytes past the committed length: ignored, then cut.
        let committed = try #require(FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(repeating: 0xAB, count: 777))
        try handle.close()
        try expectCurrent(index, model, "leftovers past the end")
        try SyntheticVectors.add(3, index: index, model: model, seed: 2)
        let appended = try expectCurrent(index, model, "appended over leftovers")
        #expect(appended.segmentCount == 2)
        let size = try #require(FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        #expect(size > committed && (size - committed) % 64 == 0, "the leftovers were cut before the segment")

        // A header torn by a crash fails its checksum: the cache is rebuilt from the database.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[20] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: path))
        #expect(try expectCurrent(index, model, "torn header").segmentCount == 1)

        // The database put back to an older copy: its generation is below the cache's.
        try SyntheticVectors.add(2, index: index, model: model, seed: 3)
        try expectCurrent(index, model, "appended")
        try index.write { db in try db.execute(sql: "UPDATE meta SET value = '1' WHERE key = 'generation'") }
        #expect(try expectCurrent(index, model, "older database").generation == 1)
    }

    /// The database deleted and made again (or put back from a copy that went on by another history): its
    /// generation numbers repeat, with other rows behind them. The cache must not be taken, nor appended onto.
    @Test("a cache beside a database made again is not used, whether the new one's generation is equal or past it",
          arguments: [2, 3])
    func recreatedDatabase(generations: Int) throws {
        let (dir, index, model) = try syntheticIndex("vector-recreated", dimension: 11, count: 30)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try SyntheticVectors.add(3, index: index, model: model, seed: 2)
        #expect(try expectCurrent(index, model, "first database").generation == 2)
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: "\(dir)/index.sqlite\(suffix)") }
        let again = try PhotoIndex(path: "\(dir)/index.sqlite")
        let model2 = try again.model(fingerprint: "f", name: "random", dimension: 11)
        #expect(model2.id == model.id, "the same cache file name")
        for g in 0..<generations { try SyntheticVectors.add(4, index: again, model: model2, seed: UInt64(50 + g)) }
        let store = try expectCurrent(again, model2, "second database at generation \(generations)")
        #expect(store.count == 4 * generations)
    }

    @Test("a generation counter altered to near either end of its range is refused, not wrapped",
          arguments: ["-1", "-9223372036854775800", "9223372036854775807", "9223372036854770000"])
    func alteredGenerationCounter(value: String) throws {
        let (dir, index, model) = try syntheticIndex("vector-counter", dimension: 5, count: 10)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try index.write { db in try db.execute(sql: "UPDATE meta SET value = ? WHERE key = 'generation'", arguments: [value]) }
        // A typed catch: through #expect's matcher this enum error did not cast back (Swift 6.3.1, see the commit).
        do {
            try SyntheticVectors.add(2, index: index, model: model, seed: 3)
            Issue.record("an altered generation counter was accepted")
        } catch {
            guard case .corrupt(let path, let reason) = error else { Issue.record("\(error)"); return }
            #expect(path == index.path && reason.contains("generation counter reads \(value)"), "\(error)")
        }
    }

    @Test("when the database lost the current generation's nonce every load reads its vectors and none trusts the cache")
    func lostNonce() throws {
        let (dir, index, model) = try syntheticIndex("vector-nonce", dimension: 6, count: 12)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try index.write { db in try db.execute(sql: "DELETE FROM generations") }
        let state = try index.read { db in try index.state(db) }
        #expect(state.nonce == nil)
        for step in 0..<2 {
            let store = try expectCurrent(index, model, "load \(step)")
            #expect(!VectorStore.isCurrent(store, state), "a cache of a state without a nonce is never current")
        }
        try SyntheticVectors.add(3, index: index, model: model, seed: 4)
        let store = try expectCurrent(index, model, "after a new generation")
        #expect(VectorStore.isCurrent(store, try index.read { db in try index.state(db) }))
    }

    /// Headers forged with valid checksums (anyone can compute one): each must be refused by its sizes and the
    /// cache rebuilt, never read out of bounds.
    @Test("a forged cache header or segment header is refused and the cache rebuilt", arguments: [
        "rows 2^62", "segments 2^40", "committed 2^62", "committed 64", "segment rows 2^60", "superseded 2^59",
        "segment rows one more", "dimension 3", "generation ahead",
    ])
    func forgedHeaders(forgery: String) throws {
        let (dir, index, model) = try syntheticIndex("vector-forged", dimension: 9, count: 40)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try SyntheticVectors.add(5, index: index, model: model, seed: 2)
        try expectCurrent(index, model, "appended")
        let path = VectorStore.cachePath(index: index, model: model)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var header = try #require(bytes.withUnsafeBytes(VectorCacheFormat.header))
        let second = try #require(VectorCacheFormat.Plan(rows: 40, superseded: 0, dimension: 9)).length + 64
        func segment(rows: UInt64, superseded: UInt64) {
            bytes.replaceSubrange(second..<(second + 64), with: VectorCacheFormat.block(VectorCacheFormat.segmentMagic, [rows, superseded, 0]))
        }
        switch forgery {
        case "rows 2^62": header.rows = 1 << 62
        case "segments 2^40": header.segments = 1 << 40
        case "committed 2^62": header.committed = 1 << 62
        case "committed 64": header.committed = 64
        case "segment rows 2^60": segment(rows: 1 << 60, superseded: 0)
        case "superseded 2^59": segment(rows: 5, superseded: 1 << 59)
        case "segment rows one more": segment(rows: 6, superseded: 0)
        case "dimension 3": header.dimension = 3
        default: header.generation += 1000
        }
        bytes.replaceSubrange(0..<64, with: VectorCacheFormat.encode(header))
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        #expect(VectorStore.mapped(path, dimension: 9).map { _ in forgery == "generation ahead" } ?? true,
                "the forged cache is not mapped as it is")
        let store = try expectCurrent(index, model, forgery)
        #expect(store.count == 45 && store.segmentCount == 1, "rebuilt")
    }

    @Test("past the segment limit the cache is compacted into one segment and leaves no temporaries")
    func compaction() throws {
        let (dir, index, model) = try syntheticIndex("vector-compact", dimension: 7, count: 20)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var most = 0
        for step in 0..<(VectorCacheWriter.segmentLimit + 2) {
            try SyntheticVectors.add(1, index: index, model: model, seed: UInt64(100 + step))
            let store = try expectCurrent(index, model, "step \(step)")
            most = max(most, store.segmentCount)
            #expect(store.segmentCount <= VectorCacheWriter.segmentLimit)
        }
        #expect(most == VectorCacheWriter.segmentLimit, "segments grew to the limit before the compaction")
        #expect(try VectorStore.load(index: index, model: model).segmentCount < VectorCacheWriter.segmentLimit)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.contains(".partial-") }
        #expect(leftovers.isEmpty)
    }

    @Test("processes racing to bring one cache up to date each get the current vectors", arguments: [4])
    func concurrentUpdates(threads: Int) throws {
        let (dir, index, model) = try syntheticIndex("vector-race", dimension: 33, count: 300)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Each thread has its own connections, as another process would; opened first, so that the race is the
        // cache's alone.
        let opened = try (0..<threads).map { _ in try PhotoIndex(path: "\(dir)/index.sqlite") }
        for round in 0..<5 {
            try SyntheticVectors.add(7, index: index, model: model, seed: UInt64(10 + round))
            let expected = try databaseVectors(index, model)
            let results = Mutex<[Result<[Int64: [Float]], IndexError>]>([])
            DispatchQueue.concurrentPerform(iterations: threads) { t in
                let found = Result { () throws(IndexError) -> [Int64: [Float]] in
                    storeVectors(try VectorStore.load(index: opened[t], model: model))
                }
                results.withLock { $0.append(found) }
            }
            for result in results.withLock({ $0 }) {
                switch result {
                case .success(let found): #expect(found == expected, "round \(round)")
                case .failure(let error): Issue.record("round \(round): \(error)")
                }
            }
        }
    }
}
