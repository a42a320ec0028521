import CLIPKit
import CLIPTestSupport
import CLIPTokenizer
import CLIPWeights
import Foundation
import Testing

// A SigLIP folder through the whole pipeline (Scripts/fixtures/make_siglip_fixtures.py, `hf_siglip_spm`): its own
// SentencePiece tokenizer, squash preprocessing with mean/std 0.5, and sigmoid probabilities, against
// transformers' SiglipModel on SiglipImageProcessor's pixels and open_clip's token rows.

@Test("SigLIP zero-shot: the folder's tokenizer, its preprocessing, sigmoid probabilities equal the reference")
func sigLIPPipelineMatchesReference() throws {
    let clip = try CLIPPipeline.load(sigLIPFolder, showProgress: false)
    #expect(clip.tokenizer is SentencePieceTokenizer)
    let ref = try SafeTensorsFile(path: sigLIPFolder + ".reference.safetensors")
    let labels = ["a red heart", "a blue star", "A green circle!"]
    let (shape, ids) = try ref.integerTensor("classify_tokens")
    let expectedRows = (0..<shape[0]).map { Array(ids[($0 * shape[1])..<(($0 + 1) * shape[1])]) }
    #expect(try clip.tokenizer.tokenize(labels, contextLength: 16, truncate: false) == expectedRows)
    let star = testsDirectory.deletingLastPathComponent().appendingPathComponent("Examples/blue-star.png").path
    let pixels = try clip.preprocessor.tensor(files: [star])
    let expectedPixels = try ref.floatTensor("classify_pixels")
    #expect(pixels.shape == expectedPixels.shape)
    // One 8-bit step is 2/255 after normalisation with std 0.5.
    let worst = zip(pixels.scalars, expectedPixels.scalars).map { abs($0 - $1) }.max() ?? .infinity
    #expect(worst <= 2 / 255 + 1e-6, "largest pixel difference \(worst)")
    let classifier = try clip.zeroShotClassifier(labels: labels, templates: ["{}"])
    #expect(classifier.objective == .sigmoid)
    let probabilities = try classifier.probabilities(try clip.imageEmbeddings(files: [star]))
    let expected = try ref.floatTensor("classify_probabilities")
    for (p, q) in zip(probabilities.scalars, expected.scalars) { #expect(abs(p - q) <= 1e-5, "\(probabilities.scalars) vs \(expected.scalars)") }
    // Independent per label: they need not sum to one.
    #expect(probabilities.scalars.allSatisfy { $0 > 0 && $0 < 1 })
}

@Test("A SigLIP model without its SentencePiece file is refused, not tokenized with OpenAI's BPE")
func sigLIPWithoutTokenizerIsRefused() throws {
    let dir = try scratchDirectory("siglip-no-spm")
    for f in ["config.json", "model.safetensors", "preprocessor_config.json"] {
        try FileManager.default.copyItem(atPath: "\(sigLIPFolder)/\(f)", toPath: "\(dir)/\(f)")
    }
    #expect {
        _ = try CLIPPipeline.load(dir, showProgress: false)
    } throws: { "\($0)".contains("spiece.model") }
}
