import CLIPImage
@testable import CLIPIndex
import CLIPKit
import CLIPTestSupport
import Foundation
import GRDB
import Testing

/// EXIF orientation in the index: the photo as it is shown, the index's fingerprint saying so, and an index made
/// before orientation was applied taken over without encoding its unturned photos again.
@Suite("the photo index and EXIF orientation")
struct OrientationIndexTests {
    static let fixtures = testsDirectory.appendingPathComponent("CLIPImageTests/Fixtures/orientation").path

    /// a.jpg declares a quarter turn, b.jpg the same picture with orientation 1, c.png a turn the other way.
    func library(_ name: String) throws -> String {
        let dir = try scratchDirectory(name)
        try FileManager.default.createDirectory(atPath: "\(dir)/photos", withIntermediateDirectories: true)
        for (from, to) in [("orientation_6.jpg", "a.jpg"), ("orientation_1.jpg", "b.jpg"), ("orientation_8.png", "c.png")] {
            try FileManager.default.copyItem(atPath: "\(Self.fixtures)/\(from)", toPath: "\(dir)/photos/\(to)")
        }
        return dir
    }

    func stored(_ index: PhotoIndex, _ model: IndexedModel, _ name: String) throws -> (vector: [Float]?, width: Int?, height: Int?) {
        let row = try index.read { db in
            try Row.fetchOne(db, sql: "SELECT hash, width, height FROM files WHERE path LIKE ?", arguments: ["%/\(name)"])
        }
        let hash: String = try #require(row?[0])
        return (index.storedEmbedding(hash, model: model), row?[1], row?[2])
    }

    @Test("an index run turns each photo by its orientation, records it in the fingerprint, and stores the size as shown")
    func orientedRun() throws {
        let dir = try library("orient-run")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let oriented = shippedPipeline.orientingImages()
        let index = try PhotoIndex(path: "\(dir)/index.sqlite")
        let model = try ModelFingerprint.indexedModel(oriented, name: "default", in: index, registering: true)
        let plain = try ModelFingerprint.indexedModel(shippedPipeline, name: "default", in: index, registering: true)
        #expect(model.fingerprint != plain.fingerprint)
        let report = try Indexer(index: index, pipeline: oriented, model: model).run(folders: ["\(dir)/photos"])
        #expect(report.embedded == 3)
        for name in ["a.jpg", "c.png"] {
            let (vector, width, height) = try stored(index, model, name)
            let shown = try oriented.imageEmbeddings(files: ["\(dir)/photos/\(name)"]).scalars
            let asStored = try shippedPipeline.imageEmbeddings(files: ["\(dir)/photos/\(name)"]).scalars
            #expect(relativeError(try #require(vector), shown) <= 1e-5, "\(name): the embedding of the photo as shown")
            #expect(relativeError(try #require(vector), asStored) > 1e-3, "\(name): not of the pixels as stored")
            #expect((width, height) == (15, 23), "\(name): the size as shown")
        }
        #expect(try stored(index, model, "b.jpg").width == 23)
    }

    /// exiftool -P rewrites the orientation tag in place and keeps the modification time: size and time say
    /// "unchanged", but a run that reads the bytes must not file them under the old content's hash.
    @Test("a tag rewritten in place with size and time kept is hashed as the content it now is")
    func tagRewrittenInPlace() throws {
        let dir = try library("orient-rewrite")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = "\(dir)/photos/a.jpg", b = "\(dir)/photos/b.jpg"
        let before = try FileManager.default.attributesOfItem(atPath: a)
        let replacement = try Data(contentsOf: URL(fileURLWithPath: b))
        try #require(replacement.count == (before[.size] as? Int), "the fixtures differ only in the tag's value")
        let index = try PhotoIndex(path: "\(dir)/index.sqlite")
        let plain = try ModelFingerprint.indexedModel(shippedPipeline, name: "default", in: index, registering: true)
        _ = try Indexer(index: index, pipeline: shippedPipeline, model: plain).run(folders: ["\(dir)/photos"])
        var st = stat()
        try #require(stat(a, &st) == 0)
        try replacement.write(to: URL(fileURLWithPath: a))
        // The time to the nanosecond, as exiftool -P keeps it.
        #if canImport(Darwin)
        var times = [st.st_atimespec, st.st_mtimespec]
        #else
        var times = [st.st_atim, st.st_mtim]
        #endif
        try #require(utimensat(AT_FDCWD, a, &times, 0) == 0)
        let oriented = shippedPipeline.orientingImages()
        let model = try ModelFingerprint.indexedModel(oriented, name: "default", in: index, registering: true)
        _ = try Indexer(index: index, pipeline: oriented, model: model, unoriented: plain).run(folders: ["\(dir)/photos"])
        let hashes = try index.read { db in try String.fetchAll(db, sql: "SELECT hash FROM files WHERE path LIKE '%.jpg' ORDER BY path") }
        #expect(hashes.count == 2 && hashes[0] == hashes[1], "a.jpg now holds b.jpg's bytes")
    }

    @Test("an index made without orientation is searched as it was, and a run with it keeps the unturned photos' embeddings")
    func takesOverAnUnorientedIndex() throws {
        let dir = try library("orient-migrate")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let index = try PhotoIndex(path: "\(dir)/index.sqlite")
        let plain = try ModelFingerprint.indexedModel(shippedPipeline, name: "default", in: index, registering: true)
        #expect(try Indexer(index: index, pipeline: shippedPipeline, model: plain).run(folders: ["\(dir)/photos"]).embedded == 3)
        let oriented = shippedPipeline.orientingImages()
        // A query before the index is run again: the entry made without, with the pipeline that made it.
        let found = try ModelFingerprint.searchedModel(oriented, name: "default", in: index)
        #expect(found.model.id == plain.id && !found.pipeline.preprocessor.applyEXIFOrientation)
        let unoriented = try #require(ModelFingerprint.unorientedModel(oriented, name: "default", in: index))
        #expect(unoriented.id == plain.id)
        let model = try ModelFingerprint.indexedModel(oriented, name: "default", in: index, registering: true)
        // Registered, nothing embedded yet (a run that failed or was stopped at once): the older entry covers more.
        #expect(try ModelFingerprint.searchedModel(oriented, name: "default", in: index).model.id == plain.id)
        let report = try Indexer(index: index, pipeline: oriented, model: model, unoriented: unoriented).run(folders: ["\(dir)/photos"])
        #expect((report.embedded, report.carriedOver, report.reused) == (2, 1, 0), "only the turned photos are encoded")
        #expect(try stored(index, model, "b.jpg").vector == (try stored(index, plain, "b.jpg").vector))
        #expect(try stored(index, model, "a.jpg").vector != (try stored(index, plain, "a.jpg").vector))
        let now = try ModelFingerprint.searchedModel(oriented, name: "default", in: index)
        #expect(now.model.id == model.id && now.pipeline.preprocessor.applyEXIFOrientation)
        let again = try Indexer(index: index, pipeline: oriented, model: model, unoriented: unoriented).run(folders: ["\(dir)/photos"])
        #expect((again.unchanged, again.embedded, again.carriedOver) == (3, 0, 0))
    }
}

@Test("the orientation clip embed records is read back for an import; partitions that disagree are refused")
func recordedOrientationOfAnExport() throws {
    let dir = try scratchDirectory("recorded-orientation")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try FileManager.default.createDirectory(atPath: "\(dir)/metadata", withIntermediateDirectories: true)
    #expect(try RetrievalLayout.recordedOrientation(in: dir) == nil, "clip-retrieval's own output says nothing")
    try Data(#"{"exif_orientation": true}"#.utf8).write(to: URL(fileURLWithPath: "\(dir)/metadata/preprocessing_0.json"))
    #expect(try RetrievalLayout.recordedOrientation(in: dir) == true)
    try Data(#"{"exif_orientation": false}"#.utf8).write(to: URL(fileURLWithPath: "\(dir)/metadata/preprocessing_1.json"))
    #expect(throws: IndexError.self) { try RetrievalLayout.recordedOrientation(in: dir) }
    try Data("nonsense".utf8).write(to: URL(fileURLWithPath: "\(dir)/metadata/preprocessing_1.json"))
    #expect(throws: IndexError.self) { try RetrievalLayout.recordedOrientation(in: dir) }
}

@Test("HEIC and AVIF photos are found, embedded and turned like the others")
func indexesHEICAndAVIF() throws {
    let dir = try scratchDirectory("heif-index")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let fixtures = testsDirectory.appendingPathComponent("CLIPImageTests/Fixtures/heif").path
    try FileManager.default.createDirectory(atPath: "\(dir)/photos", withIntermediateDirectories: true)
    for name in ["heic_rgb.heic", "heic_rotated.heic", "avif_rgba.avif", "avif_rotated.avif"] {
        try FileManager.default.copyItem(atPath: "\(fixtures)/\(name)", toPath: "\(dir)/photos/\(name)")
    }
    let oriented = shippedPipeline.orientingImages()
    let index = try PhotoIndex(path: "\(dir)/index.sqlite")
    let model = try ModelFingerprint.indexedModel(oriented, name: "default", in: index, registering: true)
    let report = try Indexer(index: index, pipeline: oriented, model: model).run(folders: ["\(dir)/photos"])
    #expect(report.scanned == 4 && report.embedded == 4 && report.failed.isEmpty, "\(report.failed)")
    let sizes = try index.read { db in
        try Row.fetchAll(db, sql: "SELECT path, width, height FROM files ORDER BY path").map { [$0[0] as String, "\($0[1] as Int)x\($0[2] as Int)"] }
    }
    // As shown: the AVIF's irot turns it; libheif has already turned the HEIC.
    #expect(sizes.contains(["photos/avif_rotated.avif", "26x40"]) && sizes.contains(["photos/heic_rotated.heic", "26x40"]), "\(sizes)")
}

@Test("A strip too elongated for the shorter-side resize still gets a thumbnail: its centre square")
func elongatedStripThumbnail() throws {
    // 1 × 100,000: the shorter side at 160 would make 160 × 16,000,000 pixels, over the pixel limit.
    var pixels = [UInt8](repeating: 0, count: 100_000 * 3)
    for x in 0..<100_000 { pixels[3 * x] = UInt8(x % 256) }
    pixels[3 * 49_999 + 1] = 255  // the centre pixel ((100,000 − 1) / 2) is the square the thumbnail shows
    let strip = DecodedImage(width: 100_000, height: 1, mode: .rgb, pixels: pixels)
    let png = try PNGEncoder.encode(rgb: pixels, width: 100_000, height: 1)
    let rgb = try #require(ContactSheet.thumbnailRGB(encoded: png, name: "strip.png"))
    #expect(rgb.count == ContactSheet.thumbnail * ContactSheet.thumbnail * 3)
    #expect(rgb[0] == UInt8(49_999 % 256) && rgb[1] == 255 && rgb[2] == 0)
    #expect(ContactSheet.thumbnailRGB(strip, name: "strip", side: 8)?.count == 8 * 8 * 3)
}
