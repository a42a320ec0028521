import CLIPKit
import CLIPTestSupport
import CLIPTokenizer
import CLIPWeights
import Foundation
import Testing

// MetaCLIP 2 worldwide through the whole pipeline (Scripts/make_openclip_fixtures.py, `metaclip2_pipeline`): its
// XLM-RoBERTa tokenizer found beside the weights, rows read at their </s>, against open_clip's HFTokenizer rows,
// transform and probabilities.

@Test("MetaCLIP 2 zero-shot: XLM-V-style tokenizer beside the weights, rows and probabilities equal open_clip's")
func metaCLIP2PipelineMatchesReference() throws {
    let clip = try CLIPPipeline.load("\(metaCLIP2Folder)/open_clip_model.safetensors",
                                     openCLIPConfig: "\(metaCLIP2Folder)/open_clip_config.json", showProgress: false)
    #expect(clip.tokenizer is XLMRobertaTokenizer)
    #expect(clip.model.configuration.text.pooling == .token(2))
    let ref = try SafeTensorsFile(path: "\(metaCLIP2Folder)/reference.safetensors")
    let labels = ["a red heart", "a blue star", "A green circle!"]
    let (shape, ids) = try ref.integerTensor("classify_tokens")
    let expectedRows = (0..<shape[0]).map { Array(ids[($0 * shape[1])..<(($0 + 1) * shape[1])]) }
    #expect(try clip.tokenizer.tokenize(labels, contextLength: shape[1], truncate: false) == expectedRows)
    let star = testsDirectory.deletingLastPathComponent().appendingPathComponent("Examples/blue-star.png").path
    let pixels = try clip.preprocessor.tensor(files: [star])
    let expectedPixels = try ref.floatTensor("classify_pixels")
    #expect(pixels.shape == expectedPixels.shape)
    // One 8-bit step after normalisation with OpenAI's std (the smallest, 0.2613).
    let worst = zip(pixels.scalars, expectedPixels.scalars).map { abs($0 - $1) }.max() ?? .infinity
    #expect(worst <= 1 / 255 / 0.2613 + 1e-6, "largest pixel difference \(worst)")
    let classifier = try clip.zeroShotClassifier(labels: labels, templates: ["{}"])
    let probabilities = try classifier.probabilities(try clip.imageEmbeddings(files: [star]))
    let expected = try ref.floatTensor("classify_probabilities")
    for (p, q) in zip(probabilities.scalars, expected.scalars) { #expect(abs(p - q) <= 1e-5, "\(probabilities.scalars) vs \(expected.scalars)") }
}

@Test("A MetaCLIP 2 model without sentencepiece.bpe.model is refused, not tokenized with OpenAI's BPE")
func metaCLIP2WithoutTokenizerIsRefused() throws {
    let dir = try scratchDirectory("metaclip2-no-spm")
    for f in ["open_clip_config.json", "open_clip_model.safetensors"] {
        try FileManager.default.copyItem(atPath: "\(metaCLIP2Folder)/\(f)", toPath: "\(dir)/\(f)")
    }
    #expect {
        _ = try CLIPPipeline.load("\(dir)/open_clip_model.safetensors", openCLIPConfig: "\(dir)/open_clip_config.json",
                                  showProgress: false)
    } throws: { "\($0)".contains("sentencepiece.bpe.model") }
}
