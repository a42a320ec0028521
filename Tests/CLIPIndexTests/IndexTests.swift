import CLIPImage
@testable import CLIPIndex
import CLIPKit
import CLIPTestSupport
import Foundation
import GRDB
import Testing

/// A small PNG whose pixels depend on `seed` (a different seed, different contents and hash).
func writeImage(_ path: String, seed: Int, width: Int = 37, height: Int = 29) throws {
    var rgb = [UInt8](repeating: 0, count: width * height * 3)
    var state = UInt64(seed) &* 0x9E37_79B9_7F4A_7C15 &+ 1
    let base = [UInt8(truncatingIfNeeded: seed * 67), UInt8(truncatingIfNeeded: seed * 131), UInt8(truncatingIfNeeded: seed * 29)]
    for i in 0..<(width * height) {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        for c in 0..<3 { rgb[i * 3 + c] = base[c] &+ UInt8(truncatingIfNeeded: state >> (33 + c * 8)) / 4 }
    }
    try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try Data(PNGEncoder.encode(rgb: rgb, width: width, height: height)).write(to: URL(fileURLWithPath: path))
}

let shippedPipeline: CLIPPipeline = {
    // The shipped default model is in the package's resources: no network.
    try! CLIPPipeline.load("default", showProgress: false)
}()

func openIndex(_ db: String) throws -> (PhotoIndex, IndexedModel) {
    let index = try PhotoIndex(path: db)
    return (index, try ModelFingerprint.indexedModel(shippedPipeline, name: "default", in: index, registering: true))
}

func update(_ index: PhotoIndex, _ model: IndexedModel, _ folders: [String], batchSize: Int = 4) throws -> IndexingReport {
    var options = IndexingOptions()
    options.batchSize = batchSize
    return try Indexer(index: index, pipeline: shippedPipeline, model: model).run(folders: folders, options: options)
}

@Suite("the photo index")
struct IndexTests {
    @Test("new, unchanged, moved, copied, changed, damaged and deleted files are each handled as their kind")
    func lifecycle() throws {
        let dir = try scratchDirectory("lifecycle")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let photos = dir + "/photos"
        for i in 0..<7 { try writeImage("\(photos)/\(i < 4 ? "a" : "b/c")/\(i).png", seed: i) }
        try Data("not an image".utf8).write(to: URL(fileURLWithPath: "\(photos)/broken.jpg"))
        try Data("notes".utf8).write(to: URL(fileURLWithPath: "\(photos)/notes.txt"))
        try writeImage("\(photos)/.hidden/x.png", seed: 99)
        try writeImage("\(photos)/skipme/y.png", seed: 98)
        let (index, model) = try openIndex(dir + "/index.sqlite")
        var options = IndexingOptions()
        options.excludedDirectories = ["skipme"]
        options.batchSize = 3
        var r = try Indexer(index: index, pipeline: shippedPipeline, model: model).run(folders: [photos], options: options)
        #expect((r.scanned, r.embedded, r.unchanged, r.reused, r.deleted) == (8, 7, 0, 0, 0))
        #expect(r.failed.count == 1 && r.failed[0].path.hasSuffix("broken.jpg") && r.failed[0].reason.contains("not a"),
                "\(r.failed)")

        r = try Indexer(index: index, pipeline: shippedPipeline, model: model).run(folders: [photos], options: options)
        #expect((r.embedded, r.unchanged, r.failedBefore, r.failed.count) == (0, 7, 1, 0))

        // Moved and renamed: the embedding is reused; copied: reused; rewritten: embedded anew.
        try FileManager.default.moveItem(atPath: "\(photos)/a/0.png", toPath: "\(photos)/b/moved.png")
        try FileManager.default.copyItem(atPath: "\(photos)/a/1.png", toPath: "\(photos)/copy.png")
        try writeImage("\(photos)/a/2.png", seed: 1002)
        try FileManager.default.removeItem(atPath: "\(photos)/a/3.png")
        r = try Indexer(index: index, pipeline: shippedPipeline, model: model).run(folders: [photos], options: options)
        #expect((r.embedded, r.reused, r.deleted, r.unchanged) == (1, 2, 2, 4), "\(r)")

        // Searching with an indexed image finds that image first, at cosine 1.
        let search = try PhotoSearch(index: index, model: model)
        #expect(search.vectors.count == 7)
        let query = try PhotoSearch.queryVector([QueryTerm(.image("\(photos)/b/moved.png"))], pipeline: shippedPipeline)
        let hits = try search.search(query, top: 3)
        #expect(hits.count == 3)
        #expect(hits[0].path == "\(photos)/b/moved.png" || hits[0].path == "\(photos)/b/c/0.png", "\(hits)")
        #expect(abs(hits[0].score - 1) < 1e-5)
        #expect(hits[0].width == 37 && hits[0].height == 29)
        let s = try index.statistics()
        #expect((s.files, s.failed, s.deleted) == (7, 1, 2))
    }

    @Test("a run reads only its folders' rows: a sibling folder sharing a name's prefix, and folders outside, are left alone")
    func runsReadOnlyTheirFolders() throws {
        let dir = try scratchDirectory("ranges")
        let outside = try scratchDirectory("ranges-outside")
        defer { for d in [dir, outside] { try? FileManager.default.removeItem(atPath: d) } }
        let folders = ["\(dir)/p", "\(dir)/p2", "\(dir)/p-x", outside]
        for (i, f) in folders.enumerated() { for j in 0..<2 { try writeImage("\(f)/\(j).png", seed: 100 + 10 * i + j) } }
        let (index, model) = try openIndex("\(dir)/index.sqlite")
        #expect(try update(index, model, folders).embedded == 8)
        for f in folders { try FileManager.default.removeItem(atPath: "\(f)/0.png") }
        var r = try update(index, model, ["\(dir)/p"])
        #expect((r.scanned, r.unchanged, r.deleted) == (1, 1, 1), "only p's vanished file")
        r = try update(index, model, [outside])
        #expect((r.scanned, r.unchanged, r.deleted) == (1, 1, 1), "the folder outside the index's own")
        // The index's own folder holds p, p2 and p-x: the two not yet scanned lose their file now.
        r = try update(index, model, [dir])
        #expect((r.scanned, r.unchanged, r.deleted) == (3, 3, 2))
        #expect(try index.statistics().files == 4)
    }

    @Test("an index kept in a subfolder of the folder scanned sees the deletions and unchanged files under itself")
    func indexInsideTheScannedFolder() throws {
        let dir = try scratchDirectory("ranges-inside")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for j in 0..<2 {
            try writeImage("\(dir)/2024/\(j).png", seed: 200 + j)
            try writeImage("\(dir)/2025/\(j).png", seed: 210 + j)
        }
        // The database's own folder is 2024: its photos are stored relative to it, the others absolute.
        let (index, model) = try openIndex("\(dir)/2024/.clip-index.sqlite")
        #expect(try update(index, model, [dir]).embedded == 4)
        try FileManager.default.removeItem(atPath: "\(dir)/2024/0.png")
        try FileManager.default.removeItem(atPath: "\(dir)/2025/0.png")
        let r = try update(index, model, [dir])
        #expect((r.scanned, r.unchanged, r.embedded, r.deleted) == (2, 2, 0, 2))
    }

    /// Linux holds "é" as one scalar and as "e" with a combining accent as two names; Swift's Strings call them
    /// equal. The index compares paths as bytes, as the file system does.
    @Test("sibling folders whose names differ only in Unicode form stay two folders")
    func unicodeFormSiblings() throws {
        let dir = try scratchDirectory("unicode-forms")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let composed = "\(dir)/caf\u{E9}", decomposed = "\(dir)/cafe\u{301}"
        #expect(composed == decomposed, "Swift compares them by canonical equivalence")
        for (i, f) in [composed, decomposed].enumerated() { for j in 0..<2 { try writeImage("\(f)/\(j).png", seed: 300 + 10 * i + j) } }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).count == 2, "two folders on disk")
        let (index, model) = try openIndex("\(dir)/index.sqlite")
        #expect(try update(index, model, [composed, decomposed]).embedded == 4)
        var r = try update(index, model, [composed, decomposed])
        #expect((r.scanned, r.unchanged, r.embedded, r.deleted) == (4, 4, 0, 0), "both folders' rows read")
        try FileManager.default.removeItem(atPath: "\(decomposed)/0.png")
        r = try update(index, model, [composed])
        #expect((r.scanned, r.unchanged, r.deleted) == (2, 2, 0), "the sibling's vanished file is not this folder's")
        #expect(!PhotoIndex.isInside("\(decomposed)/1.png", folders: [composed]), "nor served as inside it")
        #expect(PhotoIndex.isInside("\(composed)/1.png", folders: [composed]))
    }

    /// Linux's Foundation resolves the link when it standardizes the path; Darwin's does not, and the index
    /// takes the real folder itself.
    @Test("an index opened through a symbolic link to its folder finds the rows it stored relative to that folder")
    func openedThroughALink() throws {
        let dir = try scratchDirectory("index-link")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for j in 0..<3 { try writeImage("\(dir)/real/2024/\(j).png", seed: 400 + j) }
        try FileManager.default.createSymbolicLink(atPath: "\(dir)/link", withDestinationPath: "\(dir)/real")
        do {
            let (index, model) = try openIndex("\(dir)/real/2024/.clip-index.sqlite")
            #expect(try update(index, model, ["\(dir)/real"]).embedded == 3)
        }
        let (index, model) = try openIndex("\(dir)/link/2024/.clip-index.sqlite")
        try FileManager.default.removeItem(atPath: "\(dir)/real/2024/0.png")
        let r = try update(index, model, ["\(dir)/link"])
        #expect((r.scanned, r.unchanged, r.embedded, r.deleted) == (2, 2, 0, 1))
        #expect(try index.statistics().files == 2)
    }

    @Test("an index kept inside its folder stores relative paths and works after the folder moves")
    func movesWithTheFolder() throws {
        let dir = try scratchDirectory("portable")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for i in 0..<3 { try writeImage("\(dir)/lib/\(i).png", seed: 10 + i) }
        do {
            let (index, model) = try openIndex("\(dir)/lib/.clip-index.sqlite")
            _ = try update(index, model, ["\(dir)/lib"])
            let stored = try index.read { db in try String.fetchAll(db, sql: "SELECT path FROM files ORDER BY path") }
            #expect(stored == ["0.png", "1.png", "2.png"])
        }
        try FileManager.default.moveItem(atPath: "\(dir)/lib", toPath: "\(dir)/moved")
        let (index, model) = try openIndex("\(dir)/moved/.clip-index.sqlite")
        let r = try update(index, model, ["\(dir)/moved"])
        #expect((r.unchanged, r.embedded, r.deleted) == (3, 0, 0))
        let q = try PhotoSearch.queryVector([QueryTerm(.image("\(dir)/moved/1.png"))], pipeline: shippedPipeline)
        #expect(try PhotoSearch(index: index, model: model).search(q, top: 1).first?.path == "\(dir)/moved/1.png")
    }

    @Test("the vector cache follows every commit, and a damaged cache is rebuilt rather than read")
    func vectorCache() throws {
        let dir = try scratchDirectory("cache")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for i in 0..<3 { try writeImage("\(dir)/p/\(i).png", seed: 20 + i) }
        let (index, model) = try openIndex("\(dir)/index.sqlite")
        _ = try update(index, model, ["\(dir)/p"])
        #expect(try VectorStore.load(index: index, model: model).count == 3)
        try writeImage("\(dir)/p/3.png", seed: 23)
        _ = try update(index, model, ["\(dir)/p"])
        #expect(try VectorStore.load(index: index, model: model).count == 4)
        let cache = VectorStore.cachePath(index: index, model: model)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: cache))
        bytes.removeLast(5)
        try bytes.write(to: URL(fileURLWithPath: cache))
        let rebuilt = try VectorStore.load(index: index, model: model)
        #expect(rebuilt.count == 4)
        #expect(VectorStore.mapped(cache, dimension: model.dimension).map { ($0.generation, $0.count) } ?? (0, 0) == (rebuilt.generation, 4),
                "the cache on disk is whole again")
    }

    @Test("a query with a model the index lacks names it and the models the index holds")
    func unknownModel() throws {
        let dir = try scratchDirectory("model")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (index, _) = try openIndex("\(dir)/index.sqlite")
        #expect {
            _ = try index.existingModel(fingerprint: "0123456789abcdef", name: "ViT-B/32")
        } throws: { error in
            let m = "\(error)"
            return m.contains("ViT-B/32") && m.contains("default")
        }
    }

    @Test("two models side by side in one index: each query uses its own model's embeddings")
    func twoModels() throws {
        let dir = try scratchDirectory("models")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for i in 0..<3 { try writeImage("\(dir)/p/\(i).png", seed: 60 + i) }
        let (index, shipped) = try openIndex("\(dir)/index.sqlite")
        let tiny = try CLIPPipeline.load(tinyModel, showProgress: false)
        let tinyModelRecord = try ModelFingerprint.indexedModel(tiny, name: "tiny", in: index, registering: true)
        _ = try update(index, shipped, ["\(dir)/p"])
        let r = try Indexer(index: index, pipeline: tiny, model: tinyModelRecord).run(folders: ["\(dir)/p"])
        #expect((r.embedded, r.unchanged) == (3, 0), "the files are known, but not to this model")
        #expect(try index.models().map(\.dimension).sorted() == [32, 64])
        for (pipeline, model) in [(shippedPipeline, shipped), (tiny, tinyModelRecord)] {
            let q = try PhotoSearch.queryVector([QueryTerm(.image("\(dir)/p/2.png"))], pipeline: pipeline)
            let hit = try PhotoSearch(index: index, model: model).search(q, top: 1).first
            #expect(hit?.path == "\(dir)/p/2.png" && abs((hit?.score ?? 0) - 1) < 1e-5)
        }
    }

    @Test("merging two indexes rewrites paths to the target's folder and reuses the embeddings")
    func merge() throws {
        let dir = try scratchDirectory("merge")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for i in 0..<2 { try writeImage("\(dir)/one/\(i).png", seed: 30 + i) }
        for i in 0..<3 { try writeImage("\(dir)/two/\(i).png", seed: 40 + i) }
        let (a, modelA) = try openIndex("\(dir)/one/.clip-index.sqlite")
        let (b, modelB) = try openIndex("\(dir)/two/.clip-index.sqlite")
        _ = try update(a, modelA, ["\(dir)/one"])
        _ = try update(b, modelB, ["\(dir)/two"])
        let target = try PhotoIndex(path: "\(dir)/all.sqlite")
        _ = try target.merge(from: a.path)
        let counts = try target.merge(from: b.path)
        #expect(counts.files == 3 && counts.embeddings == 3 && counts.models == 0)
        let model = try target.existingModel(fingerprint: modelA.fingerprint, name: "default")
        let paths = try target.read { db in try String.fetchAll(db, sql: "SELECT path FROM files ORDER BY path") }
        #expect(paths == ["one/0.png", "one/1.png", "two/0.png", "two/1.png", "two/2.png"])
        let q = try PhotoSearch.queryVector([QueryTerm(.image("\(dir)/two/2.png"))], pipeline: shippedPipeline)
        #expect(try PhotoSearch(index: target, model: model).search(q, top: 1).first?.path == "\(dir)/two/2.png")
        #expect(throws: IndexError.self) { try target.merge(from: target.path) }
    }

    @Test("files that are not an index are refused with the path named", arguments: ["text", "directory"])
    func hostileDatabase(kind: String) throws {
        let dir = try scratchDirectory("hostile")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = "\(dir)/index.sqlite"
        if kind == "text" {
            try Data(repeating: 0x41, count: 4096).write(to: URL(fileURLWithPath: path))
        } else {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        }
        #expect {
            _ = try PhotoIndex(path: path)
        } throws: { error in
            "\(error)".contains(path)
        }
    }
}

@Suite("the vector scan")
struct VectorScanTests {
    /// The scan against a brute-force reference, on sizes that leave tails in every loop (odd dimensions, a row
    /// count not a multiple of the block or the thread count).
    @Test("top-k equals an exact brute-force ranking", arguments: [(1, 1, 1), (5, 13, 3), (4097, 512, 10), (10_001, 77, 25)])
    func matchesBruteForce(count: Int, dimension: Int, k: Int) throws {
        let dir = try scratchDirectory("scan")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let index = try PhotoIndex(path: "\(dir)/index.sqlite")
        let model = try index.model(fingerprint: "f", name: "random", dimension: dimension)
        var rng = SystemRandomNumberGenerator()
        var all: [[Float]] = []
        try index.write { db in
            for i in 0..<count {
                var v = (0..<dimension).map { _ in Float.random(in: -1...1, using: &rng) }
                let n = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
                v = v.map { $0 / n }
                all.append(v)
                try db.execute(sql: "INSERT INTO files (path, size, modified, hash) VALUES (?, 1, 1, ?)", arguments: ["f\(i)", "h\(i)"])
                try db.execute(sql: "INSERT INTO embeddings (hash, model, vector) VALUES (?, ?, ?)",
                               arguments: ["h\(i)", model.id, v.withUnsafeBufferPointer { vectorBlob($0) }])
            }
            try PhotoIndex.bumpGeneration(db)
        }
        let store = try VectorStore.load(index: index, model: model)
        let query = all[count / 2].map { $0 + Float.random(in: -0.1...0.1, using: &rng) }
        let exact = all.enumerated().map { (i, v) in
            (row: i, score: zip(v, query).reduce(Float(0)) { $0 + $1.0 * $1.1 })
        }.sorted { $0.score > $1.score }
        let found = store.nearest(to: query, k: k)
        #expect(found.count == min(k, count))
        // The int8 scan with an exact re-rank of 4k candidates returns the exact scan's rows with its scores.
        let approximate = store.nearest(to: query, k: k, compressed: true, candidates: max(40, 4 * k))
        #expect(approximate.map(\.row) == found.map(\.row))
        #expect(zip(approximate, found).allSatisfy { $0.score == $1.score })
        #expect(try VectorStore.load(index: index, model: model).count == count, "the cache maps back")
        for (f, e) in zip(found, exact) {
            #expect(abs(f.score - e.score) <= 1e-5 * max(1, abs(e.score)))
        }
        #expect(Set(found.map { store.fileID($0.row) }) == Set(exact.prefix(k).map { Int64($0.row + 1) }))
    }
}

@Suite("clip-retrieval's layout")
struct RetrievalLayoutTests {
    @Test("an export imports into another index with the same vectors and paths; misaligned metadata is refused")
    func roundTrip() throws {
        let dir = try scratchDirectory("layout")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for i in 0..<5 { try writeImage("\(dir)/p/\(i).png", seed: 50 + i) }
        let (a, modelA) = try openIndex("\(dir)/a.sqlite")
        _ = try update(a, modelA, ["\(dir)/p"])
        #expect(try RetrievalLayout.export(a, model: modelA, to: "\(dir)/out") == 5)
        let header = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/out/img_emb/img_emb_0.npy")).prefix(80)
        #expect(String(decoding: header, as: UTF8.self).contains("'shape': (5, 64)"))
        let (b, modelB) = try openIndex("\(dir)/b.sqlite")
        #expect(try RetrievalLayout.importEmbeddings(from: "\(dir)/out", into: b, model: modelB) == 5)
        let va = try VectorStore.load(index: a, model: modelA), vb = try VectorStore.load(index: b, model: modelB)
        #expect(va.count == vb.count)
        for r in 0..<va.count { #expect(zip(va.vector(r), vb.vector(r)).allSatisfy { abs($0 - $1) <= 1e-6 }) }
        // The imported rows are keyed by content: indexing the folder afterwards embeds nothing.
        let r = try update(b, modelB, ["\(dir)/p"])
        #expect((r.embedded, r.unchanged) == (0, 5))

        var lines = try String(contentsOfFile: "\(dir)/out/metadata/metadata_0.jsonl", encoding: .utf8).split(separator: "\n")
        lines.removeLast()
        try (lines.joined(separator: "\n") + "\n").write(toFile: "\(dir)/out/metadata/metadata_0.jsonl", atomically: true, encoding: .utf8)
        #expect {
            _ = try RetrievalLayout.importEmbeddings(from: "\(dir)/out", into: b, model: modelB)
        } throws: { error in
            "\(error)".contains("metadata_0.jsonl: it has 4 rows") && "\(error)".contains("5")
        }
    }
}

@Suite("hostile embeddings files")
struct HostileNPYTests {
    /// A .npy with the given header dictionary and payload size.
    static func npy(_ header: String, payload: Int) -> Data {
        var h = header
        while (10 + h.count + 1) % 64 != 0 { h += " " }
        h += "\n"
        var d = Data([0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(h.utf8.count & 255), UInt8(h.utf8.count >> 8)])
        d += Data(h.utf8)
        d += Data(count: payload)
        return d
    }

    @Test("each malformed .npy is refused with the file and the problem named", arguments: [
        (npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 64), }", payload: 2 * 64 * 4 - 1), "bytes do not hold"),
        (npy("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 64), }", payload: 2 * 64 * 4), "dtype"),
        (npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 64), }", payload: 2 * 64 * 4), "Fortran"),
        (npy("{'descr': '<f4', 'fortran_order': False, 'shape': (64,), }", payload: 64 * 4), "shape"),
        (npy("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999, 64), }", payload: 16), "bytes do not hold"),
        (npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 32), }", payload: 2 * 32 * 4), "32 dimensions"),
        (Data("not numpy at all".utf8), "bad magic"),
    ])
    func refused(file: Data, message: String) throws {
        let dir = try scratchDirectory("npy")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: "\(dir)/out/img_emb", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: "\(dir)/out/metadata", withIntermediateDirectories: true)
        try file.write(to: URL(fileURLWithPath: "\(dir)/out/img_emb/img_emb_0.npy"))
        try Data("{\"image_path\": \"a.jpg\"}\n{\"image_path\": \"b.jpg\"}\n".utf8)
            .write(to: URL(fileURLWithPath: "\(dir)/out/metadata/metadata_0.jsonl"))
        let (index, model) = try openIndex("\(dir)/index.sqlite")
        #expect {
            _ = try RetrievalLayout.importEmbeddings(from: "\(dir)/out", into: index, model: model)
        } throws: { error in
            "\(error)".contains("img_emb_0.npy") && "\(error)".contains(message)
        }
        #expect(try VectorStore.load(index: index, model: model).count == 0, "nothing half-imported")
    }

    @Test("metadata lines from other writers (null captions, float widths, extra columns) import by their image_path")
    func foreignMetadataFields() throws {
        let dir = try scratchDirectory("npy-meta")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: "\(dir)/out/img_emb", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: "\(dir)/out/metadata", withIntermediateDirectories: true)
        var npy = Self.npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 64), }", payload: 0)
        for v in (0..<128).map({ Float($0 % 7) + 1 }) { withUnsafeBytes(of: v.bitPattern.littleEndian) { npy.append(contentsOf: $0) } }
        try npy.write(to: URL(fileURLWithPath: "\(dir)/out/img_emb/img_emb_0.npy"))
        try Data(("{\"image_path\": \"a.jpg\", \"caption\": null, \"width\": 512.0, \"height\": \"384\"}\n" +
                  "{\"image_path\": \"b.jpg\", \"caption\": 7, \"exif\": {\"Make\": \"x\"}, \"similarity\": 0.31}\n").utf8)
            .write(to: URL(fileURLWithPath: "\(dir)/out/metadata/metadata_0.jsonl"))
        let (index, model) = try openIndex("\(dir)/index.sqlite")
        #expect(try RetrievalLayout.importEmbeddings(from: "\(dir)/out", into: index, model: model) == 2)
    }
}
