import CLIPKit
import CLIPTestSupport
import Foundation
import Testing

// The one batch encoder behind CLIPPipeline, clip index, clip embed, clip serve and video moments: every source kind
// gives the pixels the preprocessor gives the file, a failure stays with its image, and the rows are the model's
// normalised encode_image rows (bitwise: the same batch through the same calls).

@Suite("the image batch encoder")
struct ImageBatchEncoderTests {
    @Test("files, bytes and tar-shard members give the file's pixels; each failure names its own image")
    func sourcesGiveTheFilesPixels() throws {
        let clip = try pipeline.get()
        let encoder = ImageBatchEncoder(pipeline: clip)
        let file = try PipelineReference.load().imagePaths[0]
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: file)))
        // A shard-like file: the image's bytes at an offset, between other bytes.
        let shard = NSTemporaryDirectory() + "encoder-\(getpid()).tar"
        try Data([UInt8](repeating: 7, count: 1000) + bytes + [UInt8](repeating: 9, count: 333)).write(to: URL(fileURLWithPath: shard))
        defer { unlink(shard) }
        let sources: [ImageSource] = [
            .file(file), .encoded(bytes, name: "in memory"), .member(file: shard, offset: 1000, size: bytes.count, name: "shard:member"),
            .file("/nonexistent/photo.jpg"), .encoded(Array("not an image".utf8), name: "text bytes"),
            .member(file: shard, offset: 0, size: ImageBatchEncoder.maxMemberBytes + 1, name: "huge member"),
        ]
        let results = encoder.pixels(sources)
        let expected = try clip.preprocessor.pixels(file: file)
        for i in 0..<3 { #expect(try results[i].get() == expected, "\(sources[i].name)") }
        for i in 3..<6 {
            guard case .failure(let error) = results[i] else { Issue.record("\(sources[i].name) was read"); continue }
            #expect(error.file == sources[i].name, "\(error)")
        }
    }

    @Test("rows are l2Normalized(encode_image) of the batch; an image the model refuses fails alone")
    func rowsAndRefusals() throws {
        let clip = try pipeline.get()
        let encoder = ImageBatchEncoder(pipeline: clip)
        let files = try PipelineReference.load().imagePaths
        let pixels = try files.map { try clip.preprocessor.pixels(file: $0) }
        let r = clip.preprocessor.resolution
        let reference = l2Normalized(try clip.model.encodeImage(Tensor(shape: [files.count, 3, r, r], scalars: pixels.flatMap { $0 })))
        let rows = try encoder.embeddings(pixels: pixels)
        #expect(rows.flatMap { $0 } == reference.scalars)
        #expect(try encoder.embeddings(pixels: pixels, normalized: false).flatMap { $0 }
            == clip.model.encodeImage(Tensor(shape: [files.count, 3, r, r], scalars: pixels.flatMap { $0 })).scalars)
        // A row with a NaN: the batch is refused, each image is encoded alone, only that one fails.
        var poisoned = pixels
        poisoned.insert([Float](repeating: .nan, count: 3 * r * r), at: 1)
        let outcomes = encoder.embeddingsPerImage(pixels: poisoned)
        #expect(outcomes.count == pixels.count + 1)
        if case .success = outcomes[1] { Issue.record("the NaN image was embedded") }
        for (k, i) in [0, 2].enumerated() {
            let alone = l2Normalized(try clip.model.encodeImage(Tensor(shape: [1, 3, r, r], scalars: pixels[k == 0 ? 0 : 1])))
            #expect(try outcomes[i].get() == alone.scalars)
        }
        #expect(try encoder.embeddings(pixels: []) == [])
        // Rows that add up to a batch but are not images each: refused, naming the image.
        let doubled = [pixels[0] + pixels[1], []]
        #expect { _ = try encoder.embeddings(pixels: doubled) } throws: { "\($0)".contains("for image 0") }
        let outcomes2 = encoder.embeddingsPerImage(pixels: [pixels[0], Array(pixels[1].prefix(7))])
        #expect((try? outcomes2[0].get()) == l2Normalized(try clip.model.encodeImage(Tensor(shape: [1, 3, r, r], scalars: pixels[0]))).scalars)
        if case .success = outcomes2[1] { Issue.record("a 7-value image was embedded") }
    }

    @Test("a model without its image tower fails every image with the model's reason")
    func wholeModelRefusal() throws {
        let textOnly = try CLIPPipeline.load(tinyModel, showProgress: false, towers: .textOnly)
        let r = textOnly.preprocessor.resolution
        let outcomes = ImageBatchEncoder(pipeline: textOnly).embeddingsPerImage(pixels: [[Float](repeating: 0, count: 3 * r * r), [Float](repeating: 0.5, count: 3 * r * r)])
        #expect(outcomes.count == 2)
        for outcome in outcomes {
            guard case .failure(.imageTowerNotLoaded) = outcome else { Issue.record("\(outcome)"); continue }
        }
    }
}
