import CLIPKit
import CLIPTestSupport
import CLIPTokenizer
import CLIPWeights
import Foundation
import Testing

// Models with a vocabulary of their own through the whole pipeline (Scripts/fixtures/make_openclip_fixtures.py,
// `pipeline_fixture`): MetaCLIP 2 worldwide (XLM-V-style `sentencepiece.bpe.model`, rows read at their </s>), CLIPA
// (BERT-style `vocab.txt`, [SEP] stripped, read at the last position, bilinear squash resizing) and an XLM-RoBERTa
// text tower (Hugging Face's encoder, mean over the tokens), each found beside the weights, against open_clip's
// HFTokenizer rows, transform and probabilities.

struct OwnVocabularyModel: Sendable, CustomTestStringConvertible {
    let name: String, folder: String, tokenizerFile: String
    var testDescription: String { name }
}

let ownVocabularyModels = [
    OwnVocabularyModel(name: "MetaCLIP 2", folder: metaCLIP2Folder, tokenizerFile: "sentencepiece.bpe.model"),
    OwnVocabularyModel(name: "CLIPA", folder: clipaFolder, tokenizerFile: "vocab.txt"),
    OwnVocabularyModel(name: "XLM-RoBERTa text tower", folder: xlmRobertaFolder, tokenizerFile: "sentencepiece.bpe.model"),
]

@Test("Zero-shot with the model's own tokenizer beside the weights: rows, pixels and probabilities equal open_clip's",
      arguments: ownVocabularyModels)
func ownVocabularyPipelineMatchesReference(_ m: OwnVocabularyModel) throws {
    let clip = try CLIPPipeline.load("\(m.folder)/open_clip_model.safetensors",
                                     openCLIPConfig: "\(m.folder)/open_clip_config.json", showProgress: false)
    switch m.tokenizerFile {
    case "vocab.txt":
        #expect(clip.tokenizer is WordPieceTokenizer)
        #expect(clip.model.configuration.text.pooling == .last && !clip.model.configuration.text.causal)
        #expect(clip.preprocessor.interpolation == .bilinear && clip.preprocessor.resizeMode == .squash)
    default:
        #expect(clip.tokenizer is XLMRobertaTokenizer)
        #expect(clip.model.configuration.text.pooling == (m.folder == xlmRobertaFolder ? .mean : .token(2)))
    }
    let ref = try SafeTensorsFile(path: "\(m.folder)/reference.safetensors")
    let labels = ["a red heart", "a blue star", "A green circle!"]
    let (shape, ids) = try ref.integerTensor("classify_tokens")
    let expectedRows = (0..<shape[0]).map { Array(ids[($0 * shape[1])..<(($0 + 1) * shape[1])]) }
    #expect(try clip.tokenizer.tokenize(labels, contextLength: shape[1], truncate: false) == expectedRows)
    let star = testsDirectory.deletingLastPathComponent().appendingPathComponent("Examples/blue-star.png").path
    let pixels = try clip.preprocessor.tensor(files: [star])
    let expectedPixels = try ref.floatTensor("classify_pixels")
    #expect(pixels.shape == expectedPixels.shape)
    // One 8-bit step after normalisation with the smallest std (OpenAI's 0.2613, ImageNet's 0.225).
    let worst = zip(pixels.scalars, expectedPixels.scalars).map { abs($0 - $1) }.max() ?? .infinity
    #expect(worst <= 1 / 255 / 0.225 + 1e-6, "largest pixel difference \(worst)")
    let classifier = try clip.zeroShotClassifier(labels: labels, templates: ["{}"])
    let probabilities = try classifier.probabilities(try clip.imageEmbeddings(files: [star]))
    let expected = try ref.floatTensor("classify_probabilities")
    for (p, q) in zip(probabilities.scalars, expected.scalars) { #expect(abs(p - q) <= 1e-5, "\(probabilities.scalars) vs \(expected.scalars)") }
}

@Test("A model without its own tokenizer file is refused, not tokenized with OpenAI's BPE", arguments: ownVocabularyModels)
func ownVocabularyWithoutTokenizerIsRefused(_ m: OwnVocabularyModel) throws {
    let dir = try scratchDirectory("no-tokenizer-\(m.tokenizerFile)")
    for f in ["open_clip_config.json", "open_clip_model.safetensors"] {
        try FileManager.default.copyItem(atPath: "\(m.folder)/\(f)", toPath: "\(dir)/\(f)")
    }
    #expect {
        _ = try CLIPPipeline.load("\(dir)/open_clip_model.safetensors", openCLIPConfig: "\(dir)/open_clip_config.json",
                                  showProgress: false)
    } throws: { "\($0)".contains(m.tokenizerFile) }
}
