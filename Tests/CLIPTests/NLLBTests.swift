import CLIP
import CLIPLoading
import CLIPTensor
import CLIPTokenizer
import Foundation
import Testing

// NLLB-CLIP and NLLB-SigLIP: open_clip's four NLLB architectures scaled down (Scripts/fixtures/make_nllb_fixtures.py,
// float64 references from open_clip 3.3.0 with transformers 5.24's M2M100 encoder), arbitrary fp32 weights.

private let nllbDirectory = "\(fixtureDirectory)/nllb"
/// The NLLB test tokenizer, from the tokenizer tests' fixtures in the source tree.
private let nllbTokenizerFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("CLIPTokenizerTests/Fixtures/sentencepiece/nllb").path

private func loadNLLB(_ arch: String, config: String? = nil) throws -> LoadedModel {
    try CLIPModel.load(path: "\(nllbDirectory)/\(arch).safetensors", openCLIPConfig: config ?? "\(nllbDirectory)/\(arch).json")
}

@Test("open_clip's NLLB models load and match open_clip within 1e-5: both towers and the logits",
      arguments: ["nllb-clip-base", "nllb-clip-large", "nllb-clip-base-siglip", "nllb-clip-large-siglip", "nllb-clip-base-mean-mlp"])
func nllbModelsMatchOpenCLIP(_ arch: String) throws {
    let loaded = try loadNLLB(arch)
    let c = loaded.model.configuration
    // The variant no tag uses: open_clip's default mean_pooler and its MLP projection ((128 + 48) / 2 wide).
    let variant = arch.hasSuffix("mean-mlp")
    #expect(c.text.nllb == .init(projectionHidden: variant ? 88 : nil) && c.text.roberta == nil)
    #expect(c.text.pooling == (variant ? .mean : .first) && !c.text.causal && c.text.activation == .relu && c.text.vocabulary == .nllb)
    #expect(c.text.width == 128 && c.text.layers == 2 && c.text.heads == 2 && c.text.vocabSize == 3_206)
    #expect(c.objective == (arch.hasSuffix("siglip") ? .sigmoid : .softmax))
    try expectMatchesReference(loaded.model, arch, directory: nllbDirectory)
}

@Test("NLLB's rows: the reference rows are the tokenizer's (eng_Latn and fra_Latn), padding changes nothing")
func nllbRowsAndPadding() throws {
    let ref = try Reference(path: "\(nllbDirectory)/nllb-clip-base.reference.safetensors")
    let tokenizer = try NLLBTokenizer(contentsOf: "\(nllbTokenizerFolder)/sentencepiece.bpe.model")
    let texts = ["a photo of a cat", "une photo d'un chien sur la plage", String(repeating: "一只猫的照片 and a very long caption ", count: 12), "x"]
    let english = try tokenizer.tokenize(texts, contextLength: 77, truncate: true)
    let french = try tokenizer.withLanguage("fra_Latn").tokenize([texts[1]], contextLength: 77, truncate: true)
    #expect(ref.tokens == [english[0], french[0], english[2], english[3]])
    // Keys at padding are masked and positions count only other tokens: a row cut after its </s> reads the same.
    let model = try loadNLLB("nllb-clip-base").model
    let whole = try model.encodeText([english[0]])
    let cut = try model.encodeText([Array(english[0].prefix(english[0].firstIndex(of: 1)! + 3))])
    #expect(relativeError(cut.scalars, whole.scalars) < 1e-6)
}

@Test("NLLB's sinusoid: fairseq's rows, padding's zero, the halves sin then cos")
func nllbSinusoid() {
    #expect(NLLBTextEncoder.sinusoid(1, width: 8) == [Float](repeating: 0, count: 8))
    let row = NLLBTextEncoder.sinusoid(2, width: 8)
    // f_k = 10000^(−k/3): 1, 0.0464, 0.00215, 0.0001.
    for (k, f) in [1.0, pow(10_000, -1.0 / 3), pow(10_000, -2.0 / 3), 1e-4].enumerated() {
        #expect(abs(Double(row[k]) - sin(2 * f)) < 1e-6 && abs(Double(row[4 + k]) - cos(2 * f)) < 1e-6, "k \(k)")
    }
}

@Test("NLLB configs are read with their own weights and tokenizer, and refused otherwise, naming the key")
func nllbNeedsItsSettings() throws {
    let base = "\(nllbDirectory)/nllb-clip-base"
    func edited(_ name: String, _ edit: (inout [String: Any]) -> Void) throws -> String {
        var cfg = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: base + ".json"))) as! [String: Any]
        edit(&cfg)
        return try writeScratchBytes([UInt8](try JSONSerialization.data(withJSONObject: cfg)), "nllb_\(name).json")
    }
    func text(_ key: String, _ value: Any?) -> (inout [String: Any]) -> Void {
        { cfg in var t = cfg["text_cfg"] as! [String: Any]; t[key] = value; cfg["text_cfg"] = t }
    }
    // mean_pooler (open_clip's default when the key is absent) reads the mean over the tokens.
    let mean = try loadNLLB("nllb-clip-base", config: try edited("mean", text("hf_pooler_type", nil)))
    #expect(mean.model.configuration.text.pooling == .mean)
    // open_clip's tokenizer writes rows of text_cfg.context_length; NLLB's positions are computed for any length.
    let short = try loadNLLB("nllb-clip-base", config: try edited("context", text("context_length", 20)))
    #expect(short.model.configuration.text.contextLength == 20)
    for (name, edit, message) in [
        ("tokenizer", text("hf_tokenizer_name", "xlm-roberta-base"), "an NLLB text tower is read with its own NLLB tokenizer"),
        ("pooler", text("hf_pooler_type", "max_pooler"), "text_cfg.hf_pooler_type"),
        ("heads", text("heads", 4), "text_cfg.heads is 4, a setting of CLIP's text tower"),
        ("context", text("context_length", 2), "text_cfg.context_length"),
        ("tower", text("hf_model_name", "xlm-roberta-base"), "an NLLB text tower is read with its own NLLB tokenizer"),
    ] as [(String, (inout [String: Any]) -> Void, String)] {
        let config = try edited(name, edit)
        #expect { _ = try loadNLLB("nllb-clip-base", config: config) } throws: { "\($0)".contains(message) }
    }
    // RoBERTa's cls_pooler would be its tanh pooler, which is not computed here.
    let roberta = try edited("roberta-cls", { cfg in
        var t = cfg["text_cfg"] as! [String: Any]
        (t["hf_model_name"], t["hf_tokenizer_name"]) = ("xlm-roberta-base", "xlm-roberta-base")
        cfg["text_cfg"] = t
    })
    #expect { _ = try CLIPModel.load(path: "\(fixtureDirectory)/xlm-roberta/open_clip_model.safetensors", openCLIPConfig: roberta) }
        throws: { "\($0)".contains("cls_pooler") }
    // An NLLB config over CLIP's text transformer (its image size left to the weights).
    let overCLIP = try edited("over-clip", { cfg in
        var v = cfg["vision_cfg"] as! [String: Any]
        v["image_size"] = nil
        cfg["vision_cfg"] = v
    })
    #expect { _ = try CLIPModel.load(path: "\(fixtureDirectory)/vit_small.safetensors", openCLIPConfig: overCLIP) }
        throws: { "\($0)".contains("text_cfg.hf_model_name is facebook/nllb-200-distilled-600M, a Hugging Face text tower, but the weights have CLIP's text transformer") }
}

@Test("an NLLB model beside its sentencepiece.bpe.model tokenizes and classifies through the pipeline")
func nllbThroughTheTokenizerResolution() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("swift-clip-nllb-\(getpid())").path
    try? FileManager.default.removeItem(atPath: dir)
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try FileManager.default.copyItem(atPath: "\(nllbDirectory)/nllb-clip-base.safetensors", toPath: "\(dir)/open_clip_model.safetensors")
    try FileManager.default.copyItem(atPath: "\(nllbDirectory)/nllb-clip-base.json", toPath: "\(dir)/open_clip_config.json")
    #expect { _ = try CLIPModel.load(path: "\(dir)/open_clip_model.safetensors").tokenizer() } throws: { "\($0)".contains("sentencepiece.bpe.model") }
    try FileManager.default.copyItem(atPath: "\(nllbTokenizerFolder)/sentencepiece.bpe.model", toPath: "\(dir)/sentencepiece.bpe.model")
    let loaded = try CLIPModel.load(path: "\(dir)/open_clip_model.safetensors")
    let tokenizer = try loaded.tokenizer()
    #expect(tokenizer is NLLBTokenizer && tokenizer.vocabularySize == 3_204)
    let rows = try tokenizer.tokenize(["a photo of a cat"], contextLength: 77, truncate: true)
    let ref = try Reference(path: "\(nllbDirectory)/nllb-clip-base.reference.safetensors")
    #expect(rows[0] == ref.tokens[0])
}
