import CLIP
import CLIPImage
import CLIPLoading
import CLIPWeights
import Foundation
import Testing

let formatsDirectory = "\(fixtureDirectory)/formats"

/// Asserts the model's outputs on the reference inputs equal the reference within 1e-5.
func expectMatchesReference(_ model: CLIPModel, _ referenceName: String, directory: String = formatsDirectory) throws {
    let ref = try Reference(path: "\(directory)/\(referenceName).reference.safetensors")
    let image = try model.encodeImage(ref.pixels)
    let text = try model.encodeText(ref.tokens)
    let (perImage, perText) = try model.logits(imageEmbeddings: image, textEmbeddings: text)
    for (what, ours, theirs) in [("encode_image", image, ref.imageFeatures), ("encode_text", text, ref.textFeatures),
                                 ("logits_per_image", perImage, ref.logitsPerImage), ("logits_per_text", perText, ref.logitsPerText)] {
        #expect(ours.shape == theirs.shape, "\(referenceName) \(what) shape")
        let e = relativeError(ours.scalars, theirs.scalars)
        #expect(e <= parityTolerance, "\(referenceName) \(what) relative error \(e)")
    }
}

@Test("PyTorch and TorchScript checkpoints load to the reference outputs", arguments: [
    ("vit_small_torchscript.pt", "vit_small_torchscript", WeightFormat.torchScript),
    ("vit_small_state_dict.pt", "vit_small_state_dict", .torchStateDict),
    ("vit_tiny_training.pt", "vit_tiny", .torchStateDict),
    ("vit_tiny_views.pt", "vit_tiny", .torchStateDict),
    ("vit_tiny_bigendian.pt", "vit_tiny", .torchStateDict),
])
func torchCheckpointLoads(_ c: (file: String, reference: String, format: WeightFormat)) throws {
    let loaded = try CLIPModel.load(path: "\(formatsDirectory)/\(c.file)")
    #expect(loaded.format == c.format)
    #expect(loaded.preprocessing == Preprocessing(resolution: loaded.model.configuration.imageResolution))
    try expectMatchesReference(loaded.model, c.reference)
}

@Test func torchScriptStoresHalfPrecision() throws {
    let loaded = try CLIPModel.load(path: "\(formatsDirectory)/vit_small_torchscript.pt")
    #expect((loaded.storedDTypes[.float16] ?? 0) > 0)
    let ckpt = try TorchCheckpoint(path: "\(formatsDirectory)/vit_small_torchscript.pt")
    #expect(ckpt.kind == .torchScript)
}

@Test func mixedFloatStoragesLoad() throws {
    let ckpt = try TorchCheckpoint(path: "\(formatsDirectory)/rn_small_mixed.pt")
    let dtypes = Set(ckpt.tensorInfos.map(\.dtype))
    #expect(dtypes.isSuperset(of: [.float64, .bfloat16, .float16, .float32]))
    let expected = try FixtureConfig.load("rn_small")
    let model = try CLIPModel(weights: ckpt, configuration: configuration(for: ckpt, expected: expected))
    try expectMatchesReference(model, "rn_small_mixed")
}

@Test func huggingFaceFolderLoadsWithItsConfig() throws {
    let loaded = try CLIPModel.load(path: "\(formatsDirectory)/hf_vit_hd32")
    #expect(loaded.format == .huggingFace)
    #expect(loaded.model.configuration.text.heads == 3)
    if case .transformer(let v) = loaded.model.configuration.vision { #expect(v.heads == 2) } else { Issue.record("expected a ViT") }
    #expect(loaded.preprocessing == Preprocessing(resolution: 80, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]))
    try expectMatchesReference(loaded.model, "hf_vit_hd32")
}

/// Each tower takes its own activation and LayerNorm ε (vision GELU with ε 1e-6, text QuickGELU with 1e-5), against
/// transformers' own outputs.
@Test func huggingFaceTowersKeepTheirOwnSettings() throws {
    let loaded = try CLIPModel.load(path: "\(formatsDirectory)/hf_mixed_towers")
    let c = loaded.model.configuration
    #expect(c.text.activation == .quickGELU && c.text.layerNormEps == 1e-5)
    guard case .transformer(let v) = c.vision else { Issue.record("expected a ViT"); return }
    #expect(v.activation == .gelu && v.layerNormEps == 1e-6)
    try expectMatchesReference(loaded.model, "hf_mixed_towers")
}

@Test func openCLIPConfigIsHonoured() throws {
    let plain = try CLIPModel.load(path: "\(fixtureDirectory)/vit_small.safetensors")
    #expect(plain.model.configuration.activation == .quickGELU)
    let loaded = try CLIPModel.load(path: "\(fixtureDirectory)/vit_small.safetensors",
                                    openCLIPConfig: "\(formatsDirectory)/vit_small_openclip.json")
    #expect(loaded.model.configuration.activation == .gelu)
    #expect(loaded.preprocessing == Preprocessing(resolution: 64, mean: [0.5, 0.4, 0.3], std: [0.2, 0.25, 0.3]))
    try expectMatchesReference(loaded.model, "vit_small_openclip")
}

@Test func unknownFilesAreReported() throws {
    let path = try writeScratchBytes(Array("hello world, not weights".utf8), "notes.bin")
    #expect(throws: ModelLoadError.self) { try CLIPModel.load(path: path) }
    do { _ = try CLIPModel.load(path: path) } catch { #expect(error.description.contains("first bytes")) }
    #expect(throws: ModelLoadError.self) { try CLIPModel.load(path: "/nonexistent/model.pt") }
}

func writeScratchBytes(_ bytes: [UInt8], _ name: String) throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("swift-clip-ckpt-\(getpid())")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let path = dir.appendingPathComponent(name).path
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return path
}

/// open_clip settings that would change the numbers without changing the weights are refused, never ignored.
@Test("open_clip configs asking for what is not implemented are refused, naming the key", arguments: [
    ("text_cfg", "pool_type", "\"none\"", "text_cfg.pool_type"),
    ("vision_cfg", "pool_type", "\"none\"", "vision_cfg.pool_type"),
    ("vision_cfg", "attentional_pool", "true", "vision_cfg.attentional_pool"),
    ("text_cfg", "hf_model_name", "\"google/mt5-base\"", "text_cfg.hf_model_name"),
    ("text_cfg", "hf_tokenizer_name", "\"google/mt5-base\"", "text_cfg.hf_tokenizer_name"),
    ("text_cfg", "tokenizer_kwargs", "{\"strip_sep_token\": true}", "text_cfg.tokenizer_kwargs"),  // without BERT's
    ("preprocess_cfg", "resize_mode", "\"stretch\"", "preprocess_cfg.resize_mode"),
    ("preprocess_cfg", "interpolation", "\"nearest\"", "preprocess_cfg.interpolation"),
    ("preprocess_cfg", "mean", "[0.5, 0.5]", "preprocess_cfg.mean"),
    ("preprocess_cfg", "std", "[0.5, 0, 0.5]", "preprocess_cfg.std"),
])
func unimplementedOpenCLIPSettingsAreRefused(section: String, key: String, value: String, named: String) throws {
    var cfg = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(formatsDirectory)/vit_small_openclip.json"))) as! [String: Any]
    var part = cfg[section] as? [String: Any] ?? [:]
    part[key] = try JSONSerialization.jsonObject(with: Data(value.utf8), options: .fragmentsAllowed)
    cfg[section] = part
    // Both spellings: a bare model config, and the Hub's {"model_cfg", "preprocess_cfg"}.
    var hub: [String: Any] = ["preprocess_cfg": cfg["preprocess_cfg"] as Any]
    var model = cfg
    model["preprocess_cfg"] = nil
    hub["model_cfg"] = model
    for (i, doc) in [cfg, hub].enumerated() {
        let path = try writeScratchBytes([UInt8](try JSONSerialization.data(withJSONObject: doc)), "refused_\(section)_\(key)_\(i).json")
        do {
            _ = try CLIPModel.load(path: "\(fixtureDirectory)/vit_small.safetensors", openCLIPConfig: path)
            Issue.record("\(named) was accepted")
        } catch {
            #expect(error.description.contains(named) && error.description.contains("does not implement"), "\(error)")
        }
    }
}

/// Random-weight models of every architecture of open_clip's pretrained table that clip loads, scaled down
/// (Scripts/fixtures/make_openclip_fixtures.py), against open_clip's own outputs; with `CLIP_OPENCLIP_FULL=DIR` also the
/// full-size models the script writes with `--full DIR`.
let openCLIPArchitectureFiles: [String] = {
    var dirs = ["\(fixtureDirectory)/open_clip"]
    if let full = ProcessInfo.processInfo.environment["CLIP_OPENCLIP_FULL"], !full.isEmpty { dirs.append(full) }
    return dirs.flatMap { dir in
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [])
            .filter { $0.hasSuffix(".json") }.sorted().map { "\(dir)/\(String($0.dropLast(5)))" }
    }
}()

@Test("open_clip's architectures on random weights: both towers within 1e-5 of open_clip", arguments: openCLIPArchitectureFiles)
func openCLIPArchitectures(_ base: String) throws {
    let loaded = try CLIPModel.load(path: base + ".safetensors", openCLIP: .file(base + ".json"))
    let ref = try Reference(path: base + ".reference.safetensors")
    let image = try loaded.model.encodeImage(ref.pixels)
    let text = try loaded.model.encodeText(ref.tokens)
    let (perImage, perText) = try loaded.model.logits(imageEmbeddings: image, textEmbeddings: text)
    let name = (base as NSString).lastPathComponent
    for (what, ours, theirs) in [("encode_image", image, ref.imageFeatures), ("encode_text", text, ref.textFeatures),
                                 ("logits_per_image", perImage, ref.logitsPerImage), ("logits_per_text", perText, ref.logitsPerText)] {
        #expect(ours.shape == theirs.shape, "\(name) \(what) shape")
        let e = relativeError(ours.scalars, theirs.scalars)
        #expect(e <= parityTolerance, "\(name) \(what) relative error \(e)")
    }
}

@Test func everyLoadableOpenCLIPFamilyHasAFixture() {
    let names = Set(openCLIPArchitectureFiles.map { ($0 as NSString).lastPathComponent })
    for family in ["RN50-quickgelu", "ViT-B-32", "ViT-B-32-quickgelu", "ViT-B-16-plus-240", "ViT-H-14", "ViT-H-14-378-quickgelu-squash",
                   "ViT-g-14", "ViT-bigG-14", "PE-Core-T-16-384", "PE-Core-B-16", "PE-Core-L-14-336", "PE-Core-bigG-14-448", "coca_ViT-B-32", "coca_ViT-L-14", "roberta-ViT-B-32-quickgelu", "convnext_base",
                   "convnext_base_w_320", "convnext_large_d", "convnext_xxlarge", "MobileCLIP-S2", "MobileCLIP2-S4", "MobileCLIP2-L-14", "MobileCLIP-B",
                   "ViTamin-S", "ViTamin-XL-384"] {
        #expect(names.contains(family), "no fixture for \(family)")
    }
}

/// The Hugging Face folder `hf_vit_hd32` with its weights split in two shards and a `model.safetensors.index.json`
/// (as `save_pretrained(max_shard_size=…)` writes), the index edited by `edit`.
func shardedFolder(_ name: String, edit: (inout [String: String]) -> Void = { _ in }) throws -> String {
    let source = "\(formatsDirectory)/hf_vit_hd32"
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("swift-clip-sharded-\(name)-\(getpid())").path
    try? FileManager.default.removeItem(atPath: dir)
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    for f in ["config.json", "preprocessor_config.json"] {
        try FileManager.default.copyItem(atPath: "\(source)/\(f)", toPath: "\(dir)/\(f)")
    }
    let whole = try SafeTensorsFile(path: "\(source)/model.safetensors")
    let names = whole.tensorInfos.filter(\.dtype.isFloatingPoint).map(\.name)  // position_ids (I64) is ignored by the loader
    var map: [String: String] = [:]
    for (part, slice) in [names.prefix(names.count / 2), names.dropFirst(names.count / 2)].enumerated() {
        let file = "model-0000\(part + 1)-of-00002.safetensors"
        try SafeTensorsWriter.write(try slice.map { ($0, try whole.floatTensor($0)) }, to: "\(dir)/\(file)")
        for n in slice { map[n] = file }
    }
    edit(&map)
    let index = try JSONSerialization.data(withJSONObject: ["metadata": ["total_size": 0], "weight_map": map])
    try index.write(to: URL(fileURLWithPath: "\(dir)/model.safetensors.index.json"))
    return dir
}

@Test("a sharded Hugging Face folder (model.safetensors.index.json) loads to the same outputs as the whole file")
func shardedHuggingFaceFolderLoads() throws {
    let loaded = try CLIPModel.load(path: try shardedFolder("ok"))
    #expect(loaded.format == .huggingFace)
    try expectMatchesReference(loaded.model, "hf_vit_hd32")
}

@Test("a hostile shard index is refused, naming the tensor and the file", arguments: [
    ("escape", "not a plain file name"), ("missing", "does not hold it"), ("unindexed", "not in"), ("absent", "cannot open"),
])
func hostileShardIndexesAreRefused(kind: String, message: String) throws {
    let dir = try shardedFolder(kind) { map in
        let first = map.keys.sorted()[0]
        switch kind {
        case "escape": map[first] = "../model-00001-of-00002.safetensors"
        case "missing": map["text_model.extra.weight"] = "model-00001-of-00002.safetensors"
        case "unindexed": map[first] = nil
        default: map[first] = "model-00009-of-00009.safetensors"
        }
    }
    do {
        _ = try CLIPModel.load(path: dir)
        Issue.record("\(kind) was accepted")
    } catch {
        #expect(error.description.contains(message), "\(kind): \(error)")
    }
}

/// The scaled-down CoCa fixture's config with one setting changed, written to a scratch file.
func editedCoCaConfig(_ section: String, _ key: String, _ value: Any, name: String) throws -> String {
    let base = "\(fixtureDirectory)/open_clip/coca_ViT-B-32"
    var cfg = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: base + ".json"))) as! [String: Any]
    var part = cfg[section] as? [String: Any] ?? [:]
    part[key] = value
    cfg[section] = part
    return try writeScratchBytes([UInt8](try JSONSerialization.data(withJSONObject: cfg)), "coca_\(name).json")
}

/// CoCa settings other than the published models' are refused by their key: the paper's parallel and cascade
/// poolers, a Hugging Face text tower, a text tower without the class token, another padding id.
@Test("CoCa configs asking for what is not implemented are refused, naming the key", arguments: [
    ("vision_cfg", "attentional_pool", "\"parallel\"", "vision_cfg.attentional_pool"),
    ("text_cfg", "hf_model_name", "\"roberta-base\"", "text_cfg.hf_model_name"),
    ("text_cfg", "embed_cls", "false", "text_cfg.embed_cls"),
    ("text_cfg", "pad_id", "1", "text_cfg.pad_id"),
    ("vision_cfg", "attn_pooler_heads", "5", "vision_cfg.attn_pooler_heads"),
])
func unimplementedCoCaSettingsAreRefused(section: String, key: String, value: String, named: String) throws {
    let config = try editedCoCaConfig(section, key, try JSONSerialization.jsonObject(with: Data(value.utf8), options: .fragmentsAllowed),
                                      name: key)
    do {
        _ = try CLIPModel.load(path: "\(fixtureDirectory)/open_clip/coca_ViT-B-32.safetensors", openCLIPConfig: config)
        Issue.record("\(named) = \(value) was accepted")
    } catch {
        #expect(error.description.contains(named), "\(error)")
    }
}

/// The pooler's head count comes from the config (the weights cannot tell it), and a CoCa config over weights
/// without CoCa's pooler and class token is refused rather than run as plain CLIP.
@Test func coCaConfigIsAppliedAndChecked() throws {
    let base = "\(fixtureDirectory)/open_clip/coca_ViT-B-32"
    let ref = try Reference(path: base + ".reference.safetensors")
    let eight = try CLIPModel.load(path: base + ".safetensors", openCLIP: .file(base + ".json"))
    let four = try CLIPModel.load(path: base + ".safetensors",
                                  openCLIPConfig: try editedCoCaConfig("vision_cfg", "attn_pooler_heads", 4, name: "heads4"))
    guard case .transformer(let v) = four.model.configuration.vision else { Issue.record("not a ViT"); return }
    #expect(v.pooling == .attentionalPooler(heads: 4))
    #expect(relativeError(try eight.model.encodeImage(ref.pixels).scalars, ref.imageFeatures.scalars) <= parityTolerance)
    #expect(relativeError(try four.model.encodeImage(ref.pixels).scalars, ref.imageFeatures.scalars) > 1e-3)
    do {
        _ = try CLIPModel.load(path: "\(fixtureDirectory)/open_clip/ViT-B-32.safetensors", openCLIP: .file(base + ".json"))
        Issue.record("a CoCa config over CLIP weights was accepted")
    } catch {
        #expect(error.description.contains("CoCa"), "\(error)")
    }
}

/// CLIPA's config over weights that are not CLIPA's is refused by the key that does not fit, not run as another model.
@Test func clipaConfigNeedsCLIPAWeights() throws {
    let config = "\(fixtureDirectory)/open_clip/ViT-L-14-CLIPA-squash.json"
    do {
        _ = try CLIPModel.load(path: "\(fixtureDirectory)/open_clip/ViT-B-32.safetensors", openCLIPConfig: config)
        Issue.record("CLIPA's config over weights with ln_pre was accepted")
    } catch {
        #expect(error.description.contains("no_ln_pre") || error.description.contains("shape"), "\(error)")
    }
    let loaded = try CLIPModel.load(path: "\(fixtureDirectory)/open_clip/ViT-L-14-CLIPA-squash.safetensors", openCLIPConfig: config)
    guard case .transformer(let v) = loaded.model.configuration.vision else { Issue.record("not a ViT"); return }
    #expect(v.pooling == .average && !v.preNorm)
    #expect(loaded.model.configuration.text.vocabulary == .wordPiece && loaded.preprocessing.interpolation == .bilinear)
}

/// Layer scale is folded into the output projections for inference, so training such a model is refused rather
/// than given gradients of the folded weights.
@Test func layerScaleIsFoldedAndTrainingItIsRefused() throws {
    let base = "\(fixtureDirectory)/open_clip/ViT-B-32-layer-scale"
    let loaded = try CLIPModel.load(path: base + ".safetensors", openCLIP: .file(base + ".json"))
    let ref = try Reference(path: base + ".reference.safetensors")
    #expect(relativeError(try loaded.model.encodeImage(ref.pixels).scalars, ref.imageFeatures.scalars) <= parityTolerance)
    do {
        _ = try loaded.model.trainingForward(images: ref.pixels, texts: Array(ref.tokens.prefix(2)))
        Issue.record("training with layer scale was accepted")
    } catch {
        #expect(error.description.contains("layer scale"), "\(error)")
    }
}

/// A config naming a Hugging Face text tower over weights with CLIP's text transformer is refused by that key.
@Test func huggingFaceTextConfigNeedsItsWeights() throws {
    let config = "\(fixtureDirectory)/open_clip/xlm-roberta-base-ViT-B-32.json"
    do {
        _ = try CLIPModel.load(path: "\(fixtureDirectory)/open_clip/ViT-B-32.safetensors", openCLIPConfig: config)
        Issue.record("an XLM-RoBERTa config over CLIP weights was accepted")
    } catch {
        #expect(error.description.contains("text_cfg.hf_model_name"), "\(error)")
    }
}

/// The sizes an open_clip config states must be whole numbers in range and the weights' own: a config of another
/// model (or a nonsense one) is refused by the key, never ignored.
@Test("a config whose sizes are not the weights' is refused, naming the key", arguments: [
    ("vision_cfg", "width", "-768", "vision_cfg.width"),
    ("vision_cfg", "layers", "4611686018427387904", "vision_cfg.layers"),
    ("vision_cfg", "layers", "3", "vision_cfg.layers is 3, but the weights' image tower depth is 2"),
    ("vision_cfg", "patch_size", "8", "vision_cfg.patch_size"),
    ("text_cfg", "context_length", "-1", "text_cfg.context_length"),
    ("text_cfg", "context_length", "77", "text_cfg.context_length is 77, but the weights' context length is 16"),
    ("text_cfg", "vocab_size", "49408", "text_cfg.vocab_size"),
    ("text_cfg", "width", "64.5", "text_cfg.width is 64.5; expected a whole number"),
    ("text_cfg", "width", "\"64\"", "text_cfg.width is \"64\"; expected a whole number"),
    ("text_cfg", "heads", "true", "text_cfg.heads is true; expected a whole number"),
    ("vision_cfg", "head_width", "[64]", "vision_cfg.head_width is [64]; expected a whole number"),
    ("", "embed_dim", "512", "embed_dim"),
])
func configSizesMustBeTheWeights(section: String, key: String, value: String, named: String) throws {
    let path = "\(fixtureDirectory)/formats/vit_small_openclip.json"
    var cfg = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
    let parsed = try JSONSerialization.jsonObject(with: Data(value.utf8), options: .fragmentsAllowed)
    if section.isEmpty {
        cfg[key] = parsed
    } else {
        var part = cfg[section] as! [String: Any]
        part[key] = parsed
        cfg[section] = part
    }
    let edited = try writeScratchBytes([UInt8](try JSONSerialization.data(withJSONObject: cfg)), "sizes_\(key)_\(value).json")
    // The unedited config loads.
    _ = try CLIPModel.load(path: "\(fixtureDirectory)/vit_small.safetensors", openCLIPConfig: path)
    do {
        _ = try CLIPModel.load(path: "\(fixtureDirectory)/vit_small.safetensors", openCLIPConfig: edited)
        Issue.record("\(key) = \(value) was accepted")
    } catch {
        #expect(error.description.contains(named), "\(error)")
    }
}

/// An open_clip fixture's config with `section.key` (top level when `section` is empty) set to the JSON `value`.
func editedOpenCLIPConfig(_ base: String, _ section: String, _ key: String, _ value: String) throws -> [UInt8] {
    var cfg = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: base + ".json"))) as? [String: Any])
    let v = try JSONSerialization.jsonObject(with: Data(value.utf8), options: .fragmentsAllowed)
    if section.isEmpty { cfg[key] = v } else {
        var part = cfg[section] as? [String: Any] ?? [:]
        part[key] = v
        cfg[section] = part
    }
    return [UInt8](try JSONSerialization.data(withJSONObject: cfg))
}

@Test("open_clip flags written as 1 or 0 load as Python reads them", arguments: [
    ("ViT-B-32-quickgelu", "", "quick_gelu", "1"), ("ViT-B-32", "", "quick_gelu", "0"),
    ("ViT-B-32-avg-ln-first", "vision_cfg", "final_ln_after_pool", "0"), ("ViT-B-32", "text_cfg", "no_causal_mask", "0"),
])
func numericFlagsLoad(_ name: String, _ section: String, _ key: String, _ value: String) throws {
    let base = "\(fixtureDirectory)/open_clip/\(name)"
    let json = try editedOpenCLIPConfig(base, section, key, value)
    let loaded = try CLIPModel.load(path: base + ".safetensors", openCLIP: .json(json, origin: "edited.json"))
    let ref = try Reference(path: base + ".reference.safetensors")
    for (what, ours, theirs) in [("image", try loaded.model.encodeImage(ref.pixels), ref.imageFeatures),
                                 ("text", try loaded.model.encodeText(ref.tokens), ref.textFeatures)] {
        let e = relativeError(ours.scalars, theirs.scalars)
        #expect(e <= parityTolerance, "\(name) \(key)=\(value) \(what): relative error \(e)")
    }
}

@Test("an open_clip flag that is neither a boolean nor 0 or 1 is refused by name, not read as false", arguments: [
    ("", "quick_gelu", "2"), ("", "quick_gelu", "\"true\""), ("text_cfg", "no_causal_mask", "\"false\""),
    ("vision_cfg", "final_ln_after_pool", "[]"), ("vision_cfg", "no_ln_pre", "0.5"),
])
func nonBooleanFlagsAreRefused(_ section: String, _ key: String, _ value: String) throws {
    let base = "\(fixtureDirectory)/open_clip/ViT-B-32"
    let json = try editedOpenCLIPConfig(base, section, key, value)
    let named = section.isEmpty ? key : "\(section).\(key)"
    #expect {
        _ = try CLIPModel.load(path: base + ".safetensors", openCLIP: .json(json, origin: "edited.json"))
    } throws: { "\($0)".contains(named) && "\($0)".contains("edited.json") }
}

@Test("preprocessor_config.json's do_center_crop: 1 is true, a string is refused by name", arguments: [
    ("1", nil), ("\"yes\"", "do_center_crop"), ("2", "do_center_crop"),
] as [(String, String?)])
func huggingFaceCenterCropFlag(_ value: String, _ refusal: String?) throws {
    let source = "\(formatsDirectory)/hf_vit_hd32"
    // One folder per value: the cases run in parallel ("1" and "2" once shared one by length).
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("swift-clip-crop-\(getpid())-\(value.unicodeScalars.map { String($0.value) }.joined(separator: "-"))").path
    try? FileManager.default.removeItem(atPath: dir)
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    for f in ["config.json", "model.safetensors"] { try FileManager.default.copyItem(atPath: "\(source)/\(f)", toPath: "\(dir)/\(f)") }
    let pre = try String(contentsOfFile: "\(source)/preprocessor_config.json", encoding: .utf8)
        .replacingOccurrences(of: "\"do_center_crop\": true", with: "\"do_center_crop\": \(value)")
    try pre.write(toFile: "\(dir)/preprocessor_config.json", atomically: true, encoding: .utf8)
    if let refusal {
        #expect { _ = try CLIPModel.load(path: dir) } throws: { "\($0)".contains(refusal) }
    } else {
        let loaded = try CLIPModel.load(path: dir)
        #expect(loaded.preprocessing.resolution == 80 && loaded.preprocessing.resizeMode == .shortest)
    }
}

@Test("preprocessor_config.json's resize and crop as CLIPImageProcessor applies them", arguments: [
    // size {height, width} squashes; with a center crop to the same side that is all it does.
    ("\"size\": {\"height\": 80, \"width\": 80}", nil, Preprocessing.ResizeMode.squash),
    ("\"size\": {\"height\": 80, \"width\": 80}, \"crop_size\": 64", "crop_size is 64", .squash),
    // Shortest edge without the crop: what transformers computes for every image it accepts (square ones).
    ("\"size\": {\"shortest_edge\": 80}, \"do_center_crop\": false", nil, .shortest),
    ("\"size\": {\"shortest_edge\": 80}", nil, .shortest),
] as [(String, String?, Preprocessing.ResizeMode)])
func huggingFaceResizeAndCrop(_ settings: String, _ refusal: String?, _ mode: Preprocessing.ResizeMode) throws {
    let source = "\(formatsDirectory)/hf_vit_hd32"
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("swift-clip-resize-\(getpid())-\(abs(settings.hashValue))").path
    try? FileManager.default.removeItem(atPath: dir)
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    for f in ["config.json", "model.safetensors"] { try FileManager.default.copyItem(atPath: "\(source)/\(f)", toPath: "\(dir)/\(f)") }
    let pre = "{\(settings), \"image_mean\": [0.5, 0.5, 0.5], \"image_std\": [0.25, 0.25, 0.25], \"resample\": 3, \"image_processor_type\": \"CLIPImageProcessor\"}"
    try pre.write(toFile: "\(dir)/preprocessor_config.json", atomically: true, encoding: .utf8)
    if let refusal {
        #expect { _ = try CLIPModel.load(path: dir) } throws: { "\($0)".contains(refusal) && "\($0)".contains("preprocessor_config.json") }
    } else {
        let loaded = try CLIPModel.load(path: dir)
        #expect(loaded.preprocessing.resolution == 80 && loaded.preprocessing.resizeMode == mode)
    }
}

/// open_clip's `roberta-ViT-B-32` kind: a RoBERTa text tower (the XLM-R fixture's, the same architecture) read as
/// RoBERTa's byte-level BPE ids, its tokenizer from the folder the Hub fetched `roberta-base`'s files into.
@Test func robertaBaseConfigLoadsWithItsTokenizer() throws {
    let base = "\(fixtureDirectory)/open_clip/xlm-roberta-base-ViT-B-32"
    let json = try editedOpenCLIPConfig(base, "text_cfg", "hf_tokenizer_name", "\"roberta-base\"")
    var cfg = try #require(try JSONSerialization.jsonObject(with: Data(json)) as? [String: Any])
    var text = try #require(cfg["text_cfg"] as? [String: Any])
    text["hf_model_name"] = "roberta-base"
    cfg["text_cfg"] = text
    let loaded = try CLIPModel.load(path: base + ".safetensors",
                                    openCLIP: .json([UInt8](try JSONSerialization.data(withJSONObject: cfg)), origin: "roberta.json"))
    #expect(loaded.model.configuration.text.vocabulary == .gpt2BPE)
    let ref = try Reference(path: base + ".reference.safetensors")
    #expect(relativeError(try loaded.model.encodeText(ref.tokens).scalars, ref.textFeatures.scalars) <= parityTolerance)
    // Without roberta-base's files the tokenizer is an error naming them, never OpenAI's BPE.
    #expect { _ = try loaded.tokenizer() } throws: { "\($0)".contains("vocab.json") && "\($0)".contains("roberta-base") }
    let gpt2 = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../CLIPTokenizerTests/Fixtures/gpt2_bpe").standardized.path
    let tokenizer = try loaded.withTokenizerFolder(gpt2).tokenizer()
    #expect("\(type(of: tokenizer))" == "GPT2BPETokenizer" && tokenizer.vocabularySize == 3000)
    #expect(try tokenizer.tokenize(["a photo"], contextLength: 8, truncate: false)[0].prefix(1) == [0])
}
