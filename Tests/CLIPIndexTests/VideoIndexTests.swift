import CLIPImage
@testable import CLIPIndex
import CLIPKit
import CLIPTestSupport
import Foundation
import GRDB
import Testing

/// A folder of two photos and scenes.mp4 (red 0–2 s, colour bars 2–4.5 s, blue 4.5–6 s; the moments a 2 s interval
/// with scene detection samples: 0, 2, 4, 4.5).
private func videoLibrary(_ name: String) throws -> (dir: String, photos: String) {
    let dir = try scratchDirectory(name)
    let photos = dir + "/photos"
    try writeImage("\(photos)/a.png", seed: 1)
    try writeImage("\(photos)/b/c.png", seed: 2)
    try FileManager.default.copyItem(atPath: "\(videoDirectory)/scenes.mp4", toPath: "\(photos)/b/scenes.mp4")
    return (dir, photos)
}

private func query(_ text: String) throws -> [Float] {
    try PhotoSearch.queryVector([QueryTerm(.text(text))], pipeline: shippedPipeline)
}

/// What the database holds as live rows (a search's ground truth), as (file id, time) in order.
private func liveRows(_ index: PhotoIndex, _ model: IndexedModel) throws -> [(Int64, Double?)] {
    try index.read { db in
        try Row.fetchAll(db, sql: VectorCacheWriter.liveRows("f.deleted = 0 AND f.error IS NULL"), arguments: [model.id])
            .map { ($0[0], $0[2]) }
    }
}

private func storeRows(_ store: VectorStore) -> [(Int64, Double?)] {
    store.liveRowsByID().map { (store.fileID($0), store.time($0)) }
}

private func same(_ a: [(Int64, Double?)], _ b: [(Int64, Double?)]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1.map(Float.init) == $1.1.map(Float.init) }
}

@Suite("videos in the photo index")
struct VideoIndexTests {
    @Test("a search for a scene's content returns the video at that scene's time, once unless every moment is asked")
    func sceneSearch() throws {
        let (dir, photos) = try videoLibrary("video-scenes")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (index, model) = try openIndex(dir + "/index.sqlite")
        let r = try update(index, model, [photos])
        #expect((r.scanned, r.embedded, r.videos, r.frames, r.failed.count) == (3, 3, 1, 4, 0), "\(r)")
        let search = try PhotoSearch(index: index, model: model)
        #expect(search.vectors.count == 2 + 4 && search.vectors.hasMoments)

        // The shipped model tells red from blue: each query lands on its scene. The scenes are single-colour frames,
        // which the model (trained on backgrounds of every colour) reads as a background of that colour.
        for (text, scene) in [("a blue background", 4.5...6.0), ("a red background", 0.0...1.99)] {
            let hits = try search.search(try query(text), top: 3)
            #expect(hits.count == 3, "\(hits)")
            let video = hits.filter { $0.path.hasSuffix("scenes.mp4") }
            #expect(video.count == 1, "\(text): \(hits)")
            #expect(video.first?.time.map { scene.contains($0) } == true, "\(text): \(hits)")
            #expect(hits[0].path.hasSuffix("scenes.mp4"), "\(text): \(hits)")
            #expect(video.first.map { ($0.width, $0.height) == (64, 48) } == true)
            for h in hits where !h.path.hasSuffix(".mp4") { #expect(h.time == nil) }
        }
        let all = try search.search(try query("a blue background"), top: 10, everyMoment: true)
        #expect(all.count == 6)
        #expect(all.compactMap(\.time).sorted() == [0, 2, 4, 4.5], "\(all)")
        // --json carries the time for a video's hit, nothing for a photo's.
        let json = String(decoding: try JSONEncoder().encode(all), as: UTF8.self)
        #expect(json.contains("\"time\":4.5") && json.components(separatedBy: "\"time\"").count == 5, "\(json)")

        // "More like this" on a video: the mean of its moments, as stored for its contents.
        let videoID = all.first { $0.time != nil }!.id
        let like = try #require(search.vector(fileID: videoID))
        #expect(abs(like.reduce(0) { $0 + $1 * $1 } - 1) < 1e-4)
        #expect(search.vectors(fileIDs: [videoID]).count == 1)
    }

    @Test("the vector cache follows a video that is added, changed, copied and removed; a rebuild reads the same rows")
    func cacheLifecycle() throws {
        let (dir, photos) = try videoLibrary("video-cache")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (index, model) = try openIndex(dir + "/index.sqlite")
        _ = try update(index, model, [photos])
        var store = try VectorStore.load(index: index, model: model)
        #expect(same(storeRows(store), try liveRows(index, model)))

        func step(_ change: () throws -> Void) throws -> VectorStore {
            try change()
            _ = try update(index, model, [photos])
            let next = try VectorStore.load(index: index, model: model)
            let truth = try liveRows(index, model)
            #expect(same(storeRows(next), truth), "\(storeRows(next)) vs \(truth)")
            return next
        }
        // Appended segments: a new video (WebM), then one replaced by other contents, a copy, a removal.
        store = try step { try FileManager.default.copyItem(atPath: "\(videoDirectory)/scenes.webm", toPath: "\(photos)/new.webm") }
        #expect(store.segmentCount == 2 && store.count == 2 + 4 + 4, "\(store.count)")
        store = try step {
            try FileManager.default.removeItem(atPath: "\(photos)/b/scenes.mp4")
            try FileManager.default.copyItem(atPath: "\(videoDirectory)/rotated.mov", toPath: "\(photos)/b/scenes.mp4")
        }
        #expect(store.count == 2 + 4 + 4, "\(store.count)")
        store = try step { try FileManager.default.copyItem(atPath: "\(photos)/new.webm", toPath: "\(photos)/copy.webm") }
        #expect(store.count == 2 + 4 + 4 + 4)
        store = try step { try FileManager.default.removeItem(atPath: "\(photos)/new.webm") }
        #expect(store.count == 2 + 4 + 4)
        // The turned video is 48×64 as shown.
        let hits = try PhotoSearch(index: index, model: model).search(try query("a red square"), top: 10)
        #expect(hits.first { $0.path.hasSuffix("b/scenes.mp4") }.map { ($0.width, $0.height) == (48, 64) } == true, "\(hits)")

        // A rebuild from the database holds the same rows, times and vectors.
        let before = storeRows(store)
        let vectors = store.liveRowsByID().map { store.vector($0) }
        unlink(store.cachePath)
        let rebuilt = try VectorStore.load(index: index, model: model)
        #expect(same(storeRows(rebuilt), before))
        #expect(rebuilt.liveRowsByID().map { rebuilt.vector($0) } == vectors)
        #expect(rebuilt.segmentCount == 1)
    }

    @Test("a run stopped inside a video keeps nothing of it; the next run embeds it whole")
    func stoppedInsideAVideo() throws {
        let (dir, photos) = try videoLibrary("video-stop")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (index, model) = try openIndex(dir + "/index.sqlite")
        // Asked once before the images' batch, once before the video, then between its batches of one moment.
        let asked = Counter()
        var options = IndexingOptions()
        options.batchSize = 1
        let indexer = Indexer(index: index, pipeline: shippedPipeline, model: model)
        var r = try indexer.run(folders: [photos], options: options, shouldStop: { asked.next() >= 5 })
        #expect(r.interrupted && r.videos == 0 && r.embedded == 2, "\(r)")
        let stored = try index.read { db in
            (try Int.fetchOne(db, sql: "SELECT count(*) FROM frames") ?? -1,
             try Int.fetchOne(db, sql: "SELECT count(*) FROM files WHERE path LIKE '%.mp4'") ?? -1)
        }
        #expect(stored == (0, 0))
        r = try indexer.run(folders: [photos], options: options)
        #expect((r.videos, r.frames, r.unchanged, r.interrupted) == (1, 4, 2, false), "\(r)")
    }

    @Test("a damaged video fails alone, named, with nothing stored for it")
    func damagedVideo() throws {
        let (dir, photos) = try videoLibrary("video-damaged")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // scenes.mp4's media data cut after 600 bytes (its header, at the start, says how much there was).
        let bytes = try Data(contentsOf: URL(fileURLWithPath: "\(videoDirectory)/scenes.mp4"))
        try bytes.prefix(1348 + 600).write(to: URL(fileURLWithPath: "\(photos)/cut.mp4"))
        try Data("not a video".utf8).write(to: URL(fileURLWithPath: "\(photos)/text.mov"))
        let (index, model) = try openIndex(dir + "/index.sqlite")
        let r = try update(index, model, [photos])
        #expect((r.embedded, r.videos) == (3, 1), "\(r)")
        let failed = Dictionary(uniqueKeysWithValues: r.failed.map { (($0.path as NSString).lastPathComponent, $0.reason) })
        #expect(failed["cut.mp4"].map { $0.contains("truncated") || $0.contains("corrupt") } == true, "\(failed)")
        #expect(failed["text.mov"]?.contains("not a video") == true, "\(failed)")
        #expect(failed.values.allSatisfy { !$0.hasPrefix("/") }, "\(failed)")
        #expect(try PhotoSearch(index: index, model: model).vectors.count == 2 + 4)
        let again = try update(index, model, [photos])
        #expect((again.failedBefore, again.embedded) == (2, 0))
    }

    @Test("merging an index brings its videos' moments; contents both hold keep this index's sampling")
    func merge() throws {
        let (dir, photos) = try videoLibrary("video-merge")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (other, otherModel) = try openIndex(dir + "/other.sqlite")
        _ = try update(other, otherModel, [photos])
        let (index, model) = try openIndex(dir + "/index.sqlite")
        _ = try index.merge(from: dir + "/other.sqlite")
        var hits = try PhotoSearch(index: index, model: model).search(try query("a blue circle"), top: 10, everyMoment: true)
        #expect(hits.compactMap(\.time).sorted() == [0, 2, 4, 4.5], "\(hits)")

        // A third index sampled every second, merged in: the moments here stay as they are, not a mix.
        let (third, thirdModel) = try openIndex(dir + "/third.sqlite")
        var options = IndexingOptions()
        options.videoInterval = 1
        _ = try Indexer(index: third, pipeline: shippedPipeline, model: thirdModel).run(folders: [photos], options: options)
        _ = try index.merge(from: dir + "/third.sqlite")
        hits = try PhotoSearch(index: index, model: model).search(try query("a blue circle"), top: 20, everyMoment: true)
        #expect(hits.compactMap(\.time).sorted() == [0, 2, 4, 4.5], "\(hits)")
    }

    @Test("a run with another sampling samples the videos again; the next run with it leaves them")
    func resampling() throws {
        let (dir, photos) = try videoLibrary("video-resample")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (index, model) = try openIndex(dir + "/index.sqlite")
        _ = try update(index, model, [photos])
        _ = try VectorStore.load(index: index, model: model)
        var options = IndexingOptions()
        options.videoInterval = 1
        options.sceneThreshold = 0
        let indexer = Indexer(index: index, pipeline: shippedPipeline, model: model)
        var r = try indexer.run(folders: [photos], options: options)
        #expect((r.videos, r.frames, r.unchanged) == (1, 6, 2), "\(r)")
        let store = try VectorStore.load(index: index, model: model)
        #expect(same(storeRows(store), try liveRows(index, model)) && store.count == 2 + 6)
        r = try indexer.run(folders: [photos], options: options)
        #expect((r.videos, r.unchanged) == (0, 3), "\(r)")
    }

    @Test("export writes a video as one row, its mean; an import leaves its moments to clip index")
    func exportImport() throws {
        let (dir, photos) = try videoLibrary("video-export")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (index, model) = try openIndex(dir + "/index.sqlite")
        _ = try update(index, model, [photos])
        #expect(try RetrievalLayout.export(index, model: model, to: "\(dir)/out") == 3)
        let (fresh, freshModel) = try openIndex(dir + "/fresh.sqlite")
        #expect(try RetrievalLayout.importEmbeddings(from: "\(dir)/out", into: fresh, model: freshModel) == 2)
        #expect(try PhotoSearch(index: fresh, model: freshModel).vectors.count == 2)
        let r = try update(fresh, freshModel, [photos])
        #expect((r.videos, r.frames, r.unchanged) == (1, 4, 2), "\(r)")
        #expect(try PhotoSearch(index: fresh, model: freshModel).vectors.count == 2 + 4)
    }

    @Test("past the segment limit the cache is compacted with every moment of every video kept in order")
    func compaction() throws {
        let (dir, photos) = try videoLibrary("video-compact")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (index, model) = try openIndex(dir + "/index.sqlite")
        _ = try update(index, model, [photos])
        var store = try VectorStore.load(index: index, model: model)
        for i in 0...VectorCacheWriter.segmentLimit {
            try writeImage("\(photos)/more/\(i).png", seed: 100 + i)
            if i == 5 { try FileManager.default.copyItem(atPath: "\(videoDirectory)/scenes.webm", toPath: "\(photos)/more/v.webm") }
            _ = try update(index, model, [photos])
            store = try VectorStore.load(index: index, model: model)
        }
        #expect(store.segmentCount < VectorCacheWriter.segmentLimit, "\(store.segmentCount) segments")
        #expect(same(storeRows(store), try liveRows(index, model)))
        #expect(store.count == 2 + 4 + VectorCacheWriter.segmentLimit + 1 + 4)
    }
}

/// Counts calls from any thread.
private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func next() -> Int { lock.withLock { n += 1; return n } }
}
