import CLIP
import CLIPLoading
import CLIPTensor
import CLIPTokenizer
import CLIPWeights
import Foundation
import Testing

// transformers' ChineseCLIPModel: a Hugging Face folder (Scripts/fixtures/make_chinese_clip_fixtures.py, float64
// references from transformers 5.24) whose BERT text tower is read at [CLS], tokenized by its own vocab.txt.

@Test("a ChineseCLIPModel folder loads: BERT text tower at [CLS], CLIP's ViT, both within 1e-5 of transformers")
func chineseCLIPFolderMatchesTransformers() throws {
    let loaded = try CLIPModel.load(path: "\(formatsDirectory)/hf_chinese_clip")
    let c = loaded.model.configuration
    #expect(loaded.format == .huggingFace)
    #expect(c.text.roberta?.bert == true && c.text.pooling == .first && c.text.vocabulary == .bertWordPiece)
    #expect(c.text.contextLength == 52 && c.text.heads == 2 && c.text.layerNormEps == 1e-12 && c.text.activation == .gelu)
    guard case .transformer(let v) = c.vision else { Issue.record("expected a ViT"); return }
    #expect(v.activation == .quickGELU && v.heads == 2 && v.grid == 3)
    #expect(loaded.preprocessing.resolution == 48)
    try expectMatchesReference(loaded.model, "hf_chinese_clip")
}

@Test("Chinese-CLIP's tokenizer: transformers' BertTokenizer rows for Chinese, English, Arabic, Hindi and emoji text")
func chineseCLIPTokenizerMatchesTransformers() throws {
    let loaded = try CLIPModel.load(path: "\(formatsDirectory)/hf_chinese_clip")
    let tokenizer = try loaded.tokenizer()
    let texts = try JSONDecoder().decode([String].self, from: Data(contentsOf: URL(fileURLWithPath: "\(formatsDirectory)/hf_chinese_clip.texts.json")))
    let ref = try Reference(path: "\(formatsDirectory)/hf_chinese_clip.reference.safetensors")
    let rows = try tokenizer.tokenize(texts, contextLength: 52, truncate: true)
    #expect(rows == ref.tokens)
    // Read at the first position: what follows [SEP] (padding) does not change the features.
    let short = try loaded.model.encodeText(rows.map { Array($0.prefix(20)) })
    let whole = try loaded.model.encodeText(rows)
    #expect(relativeError(Array(short.scalars.prefix(32 * 5)), Array(whole.scalars.prefix(32 * 5))) < 1e-6)
}

@Test("a BERT text tower outside a ChineseCLIPModel folder, or a ChineseCLIPModel config over CLIP weights, is refused")
func chineseCLIPNeedsItsConfig() throws {
    let dir = try scratchFolder("chinese-clip-as-clip")
    for file in ["model.safetensors", "vocab.txt", "preprocessor_config.json"] {
        try FileManager.default.copyItem(atPath: "\(formatsDirectory)/hf_chinese_clip/\(file)", toPath: "\(dir)/\(file)")
    }
    var cfg = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(formatsDirectory)/hf_chinese_clip/config.json"))) as! [String: Any]
    cfg["model_type"] = "clip"
    try JSONSerialization.data(withJSONObject: cfg).write(to: URL(fileURLWithPath: "\(dir)/config.json"))
    #expect { _ = try CLIPModel.load(path: dir) } throws: { "\($0)".contains("only a ChineseCLIPModel folder has") }

    let clip = try scratchFolder("clip-as-chinese-clip")
    for file in ["model.safetensors", "preprocessor_config.json"] {
        try FileManager.default.copyItem(atPath: "\(formatsDirectory)/hf_vit_hd32/\(file)", toPath: "\(clip)/\(file)")
    }
    var clipConfig = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(formatsDirectory)/hf_vit_hd32/config.json"))) as! [String: Any]
    clipConfig["model_type"] = "chinese_clip"
    try JSONSerialization.data(withJSONObject: clipConfig).write(to: URL(fileURLWithPath: "\(clip)/config.json"))
    #expect { _ = try CLIPModel.load(path: clip) } throws: { "\($0)".contains("no BERT text tower") }
}

/// An empty scratch folder for `name`.
private func scratchFolder(_ name: String) throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("swift-clip-\(name)-\(getpid())").path
    try? FileManager.default.removeItem(atPath: dir)
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

@Test("a cn_clip checkpoint (its own .pt: bert.*, text_projection, module. prefix) loads within 1e-5 of cn_clip")
func cnCLIPCheckpointMatchesCNCLIP() throws {
    let loaded = try CLIPModel.load(path: "\(formatsDirectory)/cn_clip_vit.pt")
    let c = loaded.model.configuration
    #expect(c.text.roberta?.bert == true && c.text.pooling == .first && c.text.vocabulary == .cnCLIPWordPiece)
    #expect(c.text.contextLength == 52 && c.text.heads == 2 && c.text.activation == .gelu && c.text.width == 128)
    #expect(c.text.layerNormEps == 1e-12)
    guard case .transformer(let v) = c.vision else { Issue.record("expected a ViT"); return }
    #expect(v.activation == .quickGELU && v.heads == 1 && v.grid == 3)
    // cn_clip resizes both sides to the resolution; no crop.
    #expect(loaded.preprocessing.resolution == 48 && loaded.preprocessing.resizeMode == .squash)
    try expectMatchesReference(loaded.model, "cn_clip_vit")
    // Its 1,200-id vocabulary is not Chinese-CLIP's: without a vocab.txt beside it, the error names the file.
    #expect { _ = try loaded.tokenizer() } throws: { "\($0)".contains("vocab.txt") }
}

@Test("the bundled Chinese-CLIP vocabulary tokenizes as cn_clip's tokenize does (its BERT FullTokenizer)")
func cnCLIPTokenizerMatchesCNCLIP() throws {
    struct Expected: Decodable { let texts: [String]; let rows: [[Int]] }
    let expected = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: URL(fileURLWithPath: "\(formatsDirectory)/cn_clip.tokens.json")))
    let tokenizer = try WordPieceTokenizer.chineseCLIP()
    #expect(tokenizer.vocabularySize == WordPieceTokenizer.chineseCLIPVocabularySize)
    let rows = try tokenizer.tokenize(expected.texts, contextLength: 52, truncate: true)
    for (i, (ours, theirs)) in zip(rows, expected.rows).enumerated() {
        #expect(ours == theirs, "text \(i) '\(expected.texts[i])'")
    }
}

@Test("cn_clip's ViT-H/14 attends with 16 heads of 80 (its vision_head_width), not the inferred 20 of 64")
func cnCLIPHugeHeads() throws {
    var text = CLIPConfiguration.Text(contextLength: 77, vocabSize: 21_128, width: 1_024, heads: 16, layers: 24, activation: .gelu)
    text.roberta = .init(positions: 512, tokenTypes: 2, projectionHidden: nil)
    text.pooling = .mean
    for (width, heads) in [(1_280, 16), (1_024, 16), (768, 12)] {
        var c = CLIPConfiguration(embedDim: 1_024, vision: .transformer(.init(width: width, layers: 32, heads: width / 64,
                                                                              patchSize: 14, grid: 16)), text: text)
        CNCLIPWeights.configure(&c)
        guard case .transformer(let v) = c.vision else { Issue.record("not a ViT"); return }
        #expect(v.heads == heads, "width \(width)")
        #expect(c.text.contextLength == 52 && c.text.layerNormEps == 1e-12 && c.text.pooling == .first)
    }
}

@Test("a cn_clip checkpoint takes a vocab.txt beside it only when it fits its text tower")
func cnCLIPVocabularyMustFit() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("swift-clip-cn-vocab-\(getpid())").path
    try? FileManager.default.removeItem(atPath: dir)
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try FileManager.default.copyItem(atPath: "\(formatsDirectory)/cn_clip_vit.pt", toPath: "\(dir)/model.pt")
    // The HF fixture's 3,000-entry vocabulary beside a 1,200-row text tower.
    try FileManager.default.copyItem(atPath: "\(formatsDirectory)/hf_chinese_clip/vocab.txt", toPath: "\(dir)/vocab.txt")
    let loaded = try CLIPModel.load(path: "\(dir)/model.pt")
    #expect { _ = try loaded.tokenizer() } throws: { "\($0)".contains("has 3000 entries") && "\($0)".contains("1200 rows") }
}

@Test("CJK set apart as each reference does: tokenizers from U+2B920, Google BERT (cn_clip) from U+2B820", arguments: [
    ("a\u{2B820}b", WordPieceTokenizer.Rows.bert, [2, 1, 3]), ("a\u{2B920}b", .bert, [2, 43, 1, 44, 3]),
    ("a\u{2B81F}b", .bert, [2, 43, 1, 44, 3]), ("a\u{2B820}b", .cnCLIP, [2, 43, 1, 44, 3]),
])
func cjkRangesFollowTheirReference(text: String, rows: WordPieceTokenizer.Rows, expected: [Int]) throws {
    // Expected ids: transformers' BertTokenizer and cn_clip's FullTokenizer over the fixture's vocabulary.
    let tokenizer = try WordPieceTokenizer(vocabulary: "\(formatsDirectory)/hf_chinese_clip/vocab.txt", rows: rows)
    #expect(try tokenizer.tokenize([text], contextLength: 8, truncate: false)[0].prefix(expected.count) == expected[...])
}
