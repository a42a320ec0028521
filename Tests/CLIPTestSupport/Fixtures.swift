import Foundation

// Fixture locations and the pipeline reference, shared by the test targets that run the seed example (through the
// API and through the `clip` command). Paths are found from this file's location, so tests run from any directory.

/// `Tests/`.
package let testsDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
/// The image fixtures written by Scripts/fixtures/make_image_fixtures.py.
package let imageDirectory = testsDirectory.appendingPathComponent("CLIPImageTests/Fixtures/images").path
/// The checkpoint-format fixtures written by Scripts/fixtures/make_checkpoint_fixtures.py.
package let checkpointDirectory = testsDirectory.appendingPathComponent("CLIPTests/Fixtures/formats").path
/// The seed-example fixtures written by Scripts/fixtures/make_pipeline_fixtures.py.
package let pipelineDirectory = testsDirectory.appendingPathComponent("CLIPTests/Fixtures/pipeline").path
/// A random-weight ViT (32-wide embeddings) the pipeline reference was computed with.
package let tinyModel = "\(pipelineDirectory)/tiny_vit.safetensors"
/// A scaled-down random SigLIP `SiglipModel` folder with a SentencePiece tokenizer (Scripts/fixtures/make_siglip_fixtures.py).
package let sigLIPFolder = testsDirectory.appendingPathComponent("CLIPTests/Fixtures/siglip/hf_siglip_spm").path
/// A scaled-down random SigLIP 2 NaFlex `Siglip2Model` folder with a Gemma-style SentencePiece tokenizer
/// (Scripts/fixtures/make_naflex_fixtures.py).
package let sigLIP2NaFlexFolder = testsDirectory.appendingPathComponent("CLIPTests/Fixtures/naflex/hf_siglip2_naflex").path

/// A MetaCLIP 2 worldwide model in an open_clip repository's layout with XLM-V-style `sentencepiece.bpe.model` beside
/// it (Scripts/fixtures/make_openclip_fixtures.py, `metaclip2_pipeline`).
package let metaCLIP2Folder = testsDirectory.appendingPathComponent("CLIPTests/Fixtures/metaclip2").path

/// A CLIPA model in an open_clip repository's layout with a BERT-style `vocab.txt` beside it
/// (Scripts/fixtures/make_openclip_fixtures.py, `pipeline_fixture`).
package let clipaFolder = testsDirectory.appendingPathComponent("CLIPTests/Fixtures/clipa").path

/// An open_clip model with a Hugging Face XLM-RoBERTa text tower, in an open_clip repository's layout with an
/// XLM-R `sentencepiece.bpe.model` beside it (Scripts/fixtures/make_openclip_fixtures.py, `pipeline_fixture`).
package let xlmRobertaFolder = testsDirectory.appendingPathComponent("CLIPTests/Fixtures/xlm-roberta").path

/// What OpenAI's `clip` package computed for the seed example on `tinyModel` (reference.json).
package struct PipelineReference: Decodable, Sendable {
    package let files: [String]
    package let labels: [String]
    package let texts: [String]
    /// Probabilities per template set ("verbatim", "default", "imagenet"): [image][label].
    package let probs: [String: [[Float]]]
    /// softmax(model(image, text)) of the seed example: [image][label].
    package let seed_probs: [[Float]]
    package let image_embeddings_raw: [[Float]]
    package let image_embeddings: [[Float]]
    package let text_embeddings_raw: [[Float]]
    package let text_embeddings: [[Float]]
    /// Image × text cosine similarities.
    package let cosine: [[Float]]

    package static func load() throws -> PipelineReference {
        try JSONDecoder().decode(PipelineReference.self,
                                 from: Data(contentsOf: URL(fileURLWithPath: "\(pipelineDirectory)/reference.json")))
    }

    /// The image files, in the reference's order.
    package var imagePaths: [String] { files.map { "\(imageDirectory)/\($0)" } }
}

/// ‖a − b‖ / ‖b‖, or infinity when the lengths differ.
package func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    var num = 0.0, den = 0.0
    for (x, y) in zip(a, b) { num += Double(x - y) * Double(x - y); den += Double(y) * Double(y) }
    return a.count == b.count ? (num / den).squareRoot() : .infinity
}

/// A fresh, empty directory for one test (`clip-NAME-PID-RANDOM` under the temporary directory); the test removes it.
package func scratchDirectory(_ name: String) throws -> String {
    let dir = NSTemporaryDirectory() + "clip-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// Generated videos (Scripts/fixtures/make_video_fixtures.py): scenes.mp4 is red 0–2 s, colour bars 2–4.5 s, blue 4.5–6 s.
package let videoDirectory = testsDirectory.appendingPathComponent("CLIPImageTests/Fixtures/video").path

/// A ustar archive of `files` (name, bytes), as img2dataset's shards are.
package func tarArchive(_ files: [(String, [UInt8])]) -> [UInt8] {
    var out: [UInt8] = []
    for (name, bytes) in files {
        var header = [UInt8](repeating: 0, count: 512)
        header.replaceSubrange(0..<name.utf8.count, with: Array(name.utf8))
        let size = Array(String(format: "%011o", bytes.count).utf8)
        header.replaceSubrange(124..<(124 + size.count), with: size)
        header[156] = UInt8(ascii: "0")
        header.replaceSubrange(257..<263, with: Array("ustar\0".utf8))
        out += header + bytes + [UInt8](repeating: 0, count: (512 - bytes.count % 512) % 512)
    }
    return out + [UInt8](repeating: 0, count: 1024)
}
