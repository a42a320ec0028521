import CLIP
import CLIPImage
import CLIPLayers
import CLIPLoading
import CLIPTensor
import CLIPWeights
import Foundation
import Testing

// SigLIP as Hugging Face's `SiglipModel` computes it, on random weights of a scaled-down model
// (Scripts/fixtures/make_siglip_fixtures.py): every part that differs from CLIP, with sizes that do not divide evenly.

let sigLIPDirectory = "\(fixtureDirectory)/siglip"

@Test("A SiglipModel folder is read as SigLIP: attention pooling, no class token, sigmoid logits")
func sigLIPConfiguration() throws {
    let loaded = try CLIPModel.load(path: "\(sigLIPDirectory)/hf_siglip_tiny")
    let c = loaded.model.configuration
    guard case .transformer(let v) = c.vision else { Issue.record("not a ViT: \(c)"); return }
    #expect(v.pooling == .attention(heads: 3) && v.heads == 3 && v.grid == 5 && v.patchSize == 8)
    #expect(v.patchBias && !v.preNorm && !v.projection && v.tokens == 25)
    #expect(v.activation == .geluTanh && v.layerNormEps == 1e-6)
    #expect(c.objective == .sigmoid && !c.text.causal && c.text.pooling == .last && c.text.projectionBias)
    #expect(c.text.activation == .geluTanh && c.text.layerNormEps == 1e-6 && c.text.contextLength == 16)
    #expect(c.embedDim == 48 && c.text.width == 40)
    #expect(loaded.preprocessing == Preprocessing(resolution: 40, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5],
                                                  resizeMode: .squash))
    #expect(abs(loaded.model.logitBias - -2.5) < 1e-6)
}

/// The committed scaled-down folders, and with `CLIP_SIGLIP_FULL=DIR` the full-size `hf_siglip_base` that
/// `Scripts/fixtures/make_siglip_fixtures.py --full DIR` writes (google/siglip-base-patch16-224's configuration).
let sigLIPFolders: [String] = {
    var folders = ["\(sigLIPDirectory)/hf_siglip_tiny", "\(sigLIPDirectory)/hf_siglip_spm"]
    if let full = ProcessInfo.processInfo.environment["CLIP_SIGLIP_FULL"], !full.isEmpty { folders.append("\(full)/hf_siglip_base") }
    return folders
}()

@Test("SigLIP embeddings and logits equal transformers'", arguments: sigLIPFolders)
func sigLIPParity(_ base: String) throws {
    let model = try CLIPModel.load(path: base).model
    let ref = try Reference(path: base + ".reference.safetensors")
    let image = try model.encodeImage(ref.pixels)
    let text = try model.encodeText(ref.tokens)
    let (perImage, perText) = try model.logits(imageEmbeddings: image, textEmbeddings: text)
    let f = try SafeTensorsFile(path: base + ".reference.safetensors")
    let (shape, ids) = try f.integerTensor("tokens_short")
    let short = (0..<shape[0]).map { Array(ids[($0 * shape[1])..<(($0 + 1) * shape[1])]) }
    let shortText = try model.encodeText(short)
    for (what, ours, theirs) in [("image", image, ref.imageFeatures), ("text", text, ref.textFeatures),
                                 ("text of rows shorter than the context", shortText, try f.floatTensor("text_features_short")),
                                 ("logits_per_image", perImage, ref.logitsPerImage), ("logits_per_text", perText, ref.logitsPerText)] {
        #expect(ours.shape == theirs.shape, "\(what) shape \(ours.shape) vs \(theirs.shape)")
        let e = relativeError(ours.scalars, theirs.scalars)
        #expect(e <= parityTolerance, "\(what): relative error \(e)")
    }
}

@Test("SigLIP under our names alone (no config) is inferred from its tensors, except ε and activation")
func sigLIPInferredFromWeights() throws {
    let source = try HuggingFaceWeights(try SafeTensorsFile(path: "\(sigLIPDirectory)/hf_siglip_tiny/model.safetensors"))
    var c = try CLIPConfiguration.infer(from: source)
    guard case .transformer(var v) = c.vision else { Issue.record("not a ViT"); return }
    #expect(v.pooling == .attention(heads: 1) && !v.preNorm && v.patchBias && !v.projection)
    #expect(c.objective == .sigmoid && c.text.pooling == .last && !c.text.causal && c.text.projectionBias)
    // Heads, activation and ε come from config.json; given them, the model is the folder's.
    v.heads = 3
    v.pooling = .attention(heads: 3)
    c.vision = .transformer(v)
    c.text.heads = 2
    c.activation = .geluTanh
    c.layerNormEps = 1e-6
    let model = try CLIPModel(weights: source, configuration: c, ignoring: { $0.hasSuffix("position_ids") })
    let ref = try Reference(path: "\(sigLIPDirectory)/hf_siglip_tiny.reference.safetensors")
    #expect(relativeError(try model.encodeImage(ref.pixels).scalars, ref.imageFeatures.scalars) <= parityTolerance)
}

@Test("A SigLIP model refuses training with its reason")
func sigLIPRefusesTraining() throws {
    let model = try CLIPModel.load(path: "\(sigLIPDirectory)/hf_siglip_tiny").model
    let ref = try Reference(path: "\(sigLIPDirectory)/hf_siglip_tiny.reference.safetensors")
    let pixels = try Tensor(shape: [1, 3, 40, 40], scalars: Array(ref.pixels.scalars.prefix(3 * 40 * 40)))
    #expect {
        _ = try model.trainingForward(images: pixels, texts: [ref.tokens[0]])
    } throws: { "\($0)".contains("SigLIP") }
}

@Test("open_clip's SigLIP (timm image tower, its own text tower) equals open_clip", arguments: [
    "openclip_ViT-B-16-SigLIP", "openclip_ViT-SO400M-14-SigLIP-384", "openclip_ViT-B-16-SigLIP2",
])
func openCLIPSigLIPParity(_ name: String) throws {
    let base = "\(sigLIPDirectory)/\(name)"
    let loaded = try CLIPModel.load(path: base + ".safetensors", openCLIP: .file(base + ".json"))
    let c = loaded.model.configuration
    guard case .transformer(let v) = c.vision else { Issue.record("not a ViT"); return }
    #expect(v.activation == .gelu && v.layerNormEps == 1e-6 && v.heads == 2 && v.pooling == .attention(heads: 2))
    // SigLIP 2's text tower uses GELU's tanh form (`act_kwargs`); timm's image tower exact GELU for both.
    #expect(c.text.activation == (name.hasSuffix("SigLIP2") ? .geluTanh : .gelu) && c.objective == .sigmoid && !c.text.causal)
    #expect(loaded.preprocessing.resizeMode == .squash && loaded.preprocessing.mean == [0.5, 0.5, 0.5])
    let ref = try Reference(path: base + ".reference.safetensors")
    let image = try loaded.model.encodeImage(ref.pixels)
    let text = try loaded.model.encodeText(ref.tokens)
    let (perImage, perText) = try loaded.model.logits(imageEmbeddings: image, textEmbeddings: text)
    for (what, ours, theirs) in [("image", image, ref.imageFeatures), ("text", text, ref.textFeatures),
                                 ("logits_per_image", perImage, ref.logitsPerImage), ("logits_per_text", perText, ref.logitsPerText)] {
        #expect(ours.shape == theirs.shape, "\(name) \(what) shape")
        let e = relativeError(ours.scalars, theirs.scalars)
        #expect(e <= parityTolerance, "\(name) \(what): relative error \(e)")
    }
}

@Test("open_clip SigLIP settings swift-clip does not compute are refused by name", arguments: [
    ("text_cfg", "pool_type", "\"argmax\"", "text_cfg.pool_type"),
    ("text_cfg", "hf_tokenizer_name", "\"bert-base-uncased\"", "text_cfg.hf_tokenizer_name"),
    ("text_cfg", "tokenizer_kwargs", "{\"clean\": \"lower\"}", "canonicalize"),
    ("vision_cfg", "timm_pool", "\"avg\"", "vision_cfg.timm_pool"),
    ("text_cfg", "act_kwargs", "{\"approximate\": \"none\", \"x\": 1}", "text_cfg.act_kwargs"),
    ("", "multimodal_cfg", "{\"width\": 768}", "multimodal_cfg"),
])
func openCLIPSigLIPRefusals(_ section: String, _ key: String, _ value: String, _ named: String) throws {
    let base = "\(sigLIPDirectory)/openclip_ViT-B-16-SigLIP"
    let json = try editedOpenCLIPConfig(base, section, key, value)
    #expect {
        _ = try CLIPModel.load(path: base + ".safetensors", openCLIP: .json(json, origin: "edited.json"))
    } throws: { "\($0)".contains(named) }
}

@Test("A Hugging Face folder of another model type is refused by its model_type", arguments: ["altclip", "siglip2"])
func otherHuggingFaceModelTypesAreRefused(_ type: String) throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("swift-clip-\(type)-\(getpid())").path
    try? FileManager.default.removeItem(atPath: dir)
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let source = "\(sigLIPDirectory)/hf_siglip_tiny"
    var cfg = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: source + "/config.json"))) as? [String: Any])
    cfg["model_type"] = type
    try JSONSerialization.data(withJSONObject: cfg).write(to: URL(fileURLWithPath: dir + "/config.json"))
    try FileManager.default.copyItem(atPath: source + "/model.safetensors", toPath: dir + "/model.safetensors")
    do {
        _ = try CLIPModel.load(path: dir)
        Issue.record("a \(type) folder was accepted")
    } catch {
        // A siglip2 folder is a NaFlex model, whose patch embedding is a Linear: SigLIP's convolution is refused by name.
        let expected = type == "siglip2" ? "Siglip2Model (NaFlex)" : "model_type '\(type)'"
        #expect("\(error)".contains(expected), "\(error)")
    }
}
