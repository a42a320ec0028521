import CLIPFiles
import CLIPLayers
import CLIPTensor
import CLIPWeights
import Foundation

/// How a model's images must be prepared: the values the image pipeline needs.
public struct Preprocessing: Sendable, Equatable, CustomStringConvertible {
    /// Side of the square the image is resized and centre-cropped to.
    public var resolution: Int
    /// Per-channel (R, G, B) mean subtracted after scaling to [0, 1].
    public var mean: [Float]
    /// Per-channel (R, G, B) standard deviation divided by.
    public var std: [Float]

    /// The mean OpenAI's models were trained with.
    public static let openAIMean: [Float] = [0.48145466, 0.4578275, 0.40821073]
    /// The standard deviation OpenAI's models were trained with.
    public static let openAIStd: [Float] = [0.26862954, 0.26130258, 0.27577711]

    /// The largest input side a model may ask for (ViT-L/14@336px takes 336; SigLIP 512).
    public static let maximumResolution = 4_096

    /// How the image becomes a square (open_clip's `resize_mode`).
    public var resizeMode: ResizeMode

    /// open_clip's resize modes (`ImagePreprocessor.ResizeMode` implements them).
    public enum ResizeMode: String, Sendable, CaseIterable {
        /// Shorter side to the resolution, centre crop (OpenAI's).
        case shortest
        /// Both sides to the resolution.
        case squash
        /// Longer side to the resolution, centred on zeros.
        case longest
    }

    /// The resampling filter (open_clip's `interpolation`).
    public var interpolation: Interpolation

    /// open_clip's interpolations (`ImagePreprocessor.Interpolation` implements them, as Pillow does).
    public enum Interpolation: String, Sendable, CaseIterable {
        /// OpenAI's and most models'.
        case bicubic
        /// CLIPA's.
        case bilinear
    }

    /// Preprocessing for `resolution` pixels with OpenAI's normalisation and resizing unless given.
    public init(resolution: Int, mean: [Float] = openAIMean, std: [Float] = openAIStd, resizeMode: ResizeMode = .shortest,
                interpolation: Interpolation = .bicubic) {
        self.resolution = resolution
        self.mean = mean
        self.std = std
        self.resizeMode = resizeMode
        self.interpolation = interpolation
    }

    /// Every field as text, for fingerprints of the embeddings it makes: two preprocessings that differ in any field
    /// give different texts. The resize mode and the interpolation appear only when not OpenAI's, so the text of
    /// OpenAI's preprocessing (and the fingerprints of indexes made before they were added) stays as it was.
    package var fingerprintText: String {
        var text = "resolution \(resolution) mean \(mean) std \(std)"
        if resizeMode != .shortest { text += " resize \(resizeMode.rawValue)" }
        if interpolation != .bicubic { text += " interpolation \(interpolation.rawValue)" }
        return text
    }

    public var description: String {
        let (r, i) = (resolution, interpolation.rawValue)
        switch resizeMode {
        case .shortest: return "resize shorter side to \(r) (\(i)), center crop \(r)×\(r), mean \(mean), std \(std)"
        case .squash: return "resize to \(r)×\(r) (\(i), aspect ratio not kept), mean \(mean), std \(std)"
        case .longest: return "resize longer side to \(r) (\(i)), pad to \(r)×\(r) with black, mean \(mean), std \(std)"
        }
    }
}

/// Where a model's weights came from.
/// A model with what is needed to use it: its preprocessing, and where its tokenizer files are if it has its own.
public struct LoadedModel: Sendable {
    /// The model itself.
    public let model: CLIPModel
    /// How its images must be prepared.
    public let preprocessing: Preprocessing
    /// The file format the weights were read from.
    public let format: WeightFormat
    /// The file or folder the weights were read from.
    public let path: String
    /// Stored element types and how many tensors use each.
    public let storedDTypes: [DType: Int]
    /// Number of parameters as PyTorch counts them (BatchNorm running statistics excluded).
    public let parameterCount: Int
    /// The SHA-256 of the checkpoint file, when a load through a packed-weight cache knew it (remembered per file:
    /// no second read); what keys anything derived from these weights alone, such as cached label embeddings.
    public internal(set) var checkpointDigest: String? = nil
    /// A Hugging Face folder's own tokenizer files (`vocab.json` + `merges.txt` or `tokenizer.json` for BPE,
    /// `spiece.model` for SigLIP), when present.
    public let tokenizerFolder: String?

    /// The names SentencePiece model files have: SigLIP's T5-style vocabularies as `spiece.model`, SigLIP 2's Gemma
    /// vocabulary as `tokenizer.model`, XLM-RoBERTa's as `sentencepiece.bpe.model`.
    public static let sentencePieceFiles = ["spiece.model", "tokenizer.model", xlmRobertaFile]

    /// The SentencePiece model of XLM-RoBERTa tokenizers (MetaCLIP 2's XLM-V vocabulary).
    public static let xlmRobertaFile = "sentencepiece.bpe.model"

    /// BERT's WordPiece vocabulary (CLIPA's `bert-base-uncased`).
    public static let wordPieceFile = "vocab.txt"

    /// The tokenizer files a model's own vocabulary may come in, in the order they are looked for.
    public static let tokenizerModelFiles = sentencePieceFiles + [wordPieceFile]

    /// The same model with its tokenizer files in `folder` (a Hub download keeps them apart from the weights).
    public func withTokenizerFolder(_ folder: String?) -> LoadedModel {
        LoadedModel(model: model, preprocessing: preprocessing, format: format, path: path, storedDTypes: storedDTypes,
                    parameterCount: parameterCount, tokenizerFolder: folder)
    }
}

/// An open_clip config: a model config JSON (`ViT-B-32.json`, or a Hub repository's `open_clip_config.json`
/// wrapping one with its `preprocess_cfg`) as a file, or as JSON in memory with the name errors give it.
public enum OpenCLIPConfig: Sendable, Equatable {
    case file(String)
    case json([UInt8], origin: String)
}

extension CLIPModel {
    /// Loads a checkpoint in any supported form: a `.safetensors` file, a PyTorch zip checkpoint (`torch.save`
    /// state dict, wrapped training checkpoint, or TorchScript archive such as OpenAI's `.pt` files), or a Hugging
    /// Face `CLIPModel` folder. `openCLIPConfig` names an open_clip model-config JSON whose activation, head
    /// widths and preprocessing override what the weights imply.
    /// `towers: .textOnly` builds the text tower alone (for text queries).
    /// With a `cache`, the first load of a checkpoint file writes its weights as the layers hold them (packed,
    /// converted to `precision`) and later loads map that file instead of decoding and packing (see
    /// `PackedWeightCache`); a cache that cannot be read or written is passed over, never an error.
    public static func load(path: String, openCLIPConfig: String? = nil, precision: Precision = .fp32,
                            towers: Towers = .both, cache: PackedWeightCache? = nil) throws(ModelLoadError) -> LoadedModel {
        try load(path: path, openCLIP: openCLIPConfig.map(OpenCLIPConfig.file), precision: precision, towers: towers,
                 cache: cache)
    }

    /// `load(path:openCLIPConfig:)` with the open_clip config given as a file or as JSON in memory.
    public static func load(path: String, openCLIP openCLIPConfig: OpenCLIPConfig?, precision: Precision = .fp32,
                            towers: Towers = .both, cache: PackedWeightCache? = nil) throws(ModelLoadError) -> LoadedModel {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw .weightFile(WeightFileError(file: path, .cannotOpen(reason: "no such file or directory")))
        }
        if isDir.boolValue { return try loadHuggingFace(folder: path, precision: precision, towers: towers, cache: cache) }
        var source: any WeightSource
        let format: WeightFormat
        let identity = cache == nil ? nil : PackedWeightCache.identity(of: path)
        do {
            (source, format) = try openWeightFile(path: path)
            source = try openCLIPLayout(source)
        } catch { throw .weightFile(error) }
        var configuration = try CLIPConfiguration.infer(from: source)
        var preprocessing = Preprocessing(resolution: configuration.imageResolution)
        if let openCLIPConfig {
            try applyOpenCLIPConfig(openCLIPConfig, to: &configuration, &preprocessing)
        }
        let (model, digest) = try loadThroughCache(cache, path: path, identity: identity, source: source,
                                                   configuration: configuration, precision: precision, towers: towers)
        var loaded = LoadedModel(model: model, preprocessing: preprocessing, format: format, path: path,
                                 storedDTypes: dtypeCounts(source), parameterCount: parameterCount(source), tokenizerFolder: nil)
        loaded.checkpointDigest = digest
        return loaded
    }

    /// The model from `source`, through the packed-weight cache when there is one: a valid cache file for this
    /// content, precision and CPU serves every layer it holds; a missing or partial one is (re)written after the
    /// build. Loading a text tower may use the file written for both towers.
    private static func loadThroughCache(_ cache: PackedWeightCache?, path: String, identity: String?, source: any WeightSource,
                                         configuration: CLIPConfiguration,
                                         ignoring: @escaping @Sendable (String) -> Bool = { _ in false }, precision: Precision,
                                         towers: Towers, shownAs: String? = nil) throws(ModelLoadError) -> (CLIPModel, digest: String?) {
        func uncached() throws(ModelLoadError) -> CLIPModel {
            try CLIPModel(weights: source, configuration: configuration, ignoring: ignoring, precision: precision, towers: towers)
        }
        // The checkpoint's identity before and after: a file replaced while it loads (a download renamed over it)
        // must neither be served another content's cache nor have its cache filled from the other content.
        guard let cache, let identity = identity, let digest = cache.digest(of: path, identity: identity) else {
            return (try uncached(), nil)
        }
        let key = PackedWeightCache.key(digest: digest, configuration: configuration, precision: precision, towers: towers)
        let bothKey = PackedWeightCache.key(digest: digest, configuration: configuration, precision: precision, towers: .both)
        let file = (towers == .textOnly ? cache.open(key: bothKey, precision: precision) : nil)
            ?? cache.open(key: key, precision: precision)
        let (model, recording) = try CLIPModel.build(weights: source, configuration: configuration, ignoring: ignoring,
                                                     precision: precision, towers: towers, packed: file, record: true)
        guard PackedWeightCache.identity(of: path) == identity else { return (try uncached(), nil) }
        if file == nil || recording.misses > 0 || recording.tensorMisses > 0 {
            try? cache.store(model, recording: recording, key: key, source: shownAs ?? path)
        }
        // A damaged file written for both towers and used by a text-only load: the text-only file just written
        // replaces it for such loads, and leaving it would send every later one through the same rebuild.
        if let file, file.foundDamage, file.path != cache.path(forKey: key) { unlink(file.path) }
        return (model, digest)
    }

    /// `file` under the names the towers read when it is laid out as one of open_clip's custom-text models (SigLIP,
    /// CoCa), else as it is.
    static func openCLIPLayout(_ file: any WeightSource) throws(WeightFileError) -> any WeightSource {
        if OpenCLIPSigLIPWeights.matches(file) { return try OpenCLIPSigLIPWeights(file) }
        if OpenCLIPCoCaWeights.matches(file) { return try OpenCLIPCoCaWeights(file) }
        return file
    }

    static func dtypeCounts(_ s: any WeightSource) -> [DType: Int] {
        var d: [DType: Int] = [:]
        for t in s.tensorInfos where !isIgnorable(t.name) { d[t.dtype, default: 0] += 1 }
        return d
    }

    /// Parameters as PyTorch counts them; saturates at Int.max rather than trapping on hostile shapes.
    static func parameterCount(_ s: any WeightSource) -> Int {
        s.tensorInfos.filter { $0.dtype.isFloatingPoint && !$0.name.hasSuffix("running_mean") && !$0.name.hasSuffix("running_var") }
            .reduce(0) { Checked.sum($0, Checked.product($1.shape) ?? Int.max) ?? Int.max }
    }

    /// A config file: a regular file of at most 16 MiB holding a JSON object.
    static func readJSON(_ path: String) throws(ModelLoadError) -> [String: Any] {
        let bytes: [UInt8]
        do { bytes = try RegularFile.contents(of: path, limit: 16 << 20) } catch {
            throw .weightFile(WeightFileError(file: path, .cannotOpen(reason: error.reason)))
        }
        return try parseJSON(bytes, origin: path)
    }

    static func parseJSON(_ bytes: [UInt8], origin: String) throws(ModelLoadError) -> [String: Any] {
        guard let obj = try? JSONSerialization.jsonObject(with: Data(bytes)), let dict = obj as? [String: Any] else {
            throw .architecture("not a JSON object", origin: origin)
        }
        return dict
    }

    /// A whole number from a config, or nil when absent; present but fractional, not finite or outside `range` is
    /// an error naming the key.
    static func int(_ v: Any?, _ key: String, in range: ClosedRange<Int>, origin: String) throws(ModelLoadError) -> Int? {
        guard let v else { return nil }
        guard let number = v as? NSNumber, let i = Checked.int(number.doubleValue, in: range) else {
            throw .architecture("\(key) is \(v); expected a whole number from \(range.lowerBound) to \(range.upperBound)", origin: origin)
        }
        return i
    }
    static func floats(_ v: Any?) -> [Float]? {
        guard let a = v as? [Any], a.count == 3 else { return nil }
        let f = a.compactMap { ($0 as? NSNumber)?.floatValue }
        return f.count == 3 && f.allSatisfy(\.isFinite) ? f : nil
    }

    /// A `hidden_act` from a config: quick_gelu, gelu (GELU with the exact error function) or gelu_pytorch_tanh
    /// (its tanh approximation, SigLIP's; `gelu_new` is the same function).
    static func activation(_ v: Any?, _ key: String, origin: String) throws(ModelLoadError) -> Activation? {
        guard let v else { return nil }
        if let name = v as? String, name == "gelu_new" { return .geluTanh }
        guard let name = v as? String, let a = Activation(rawValue: name) else {
            throw .architecture("\(key) is \(v); supported: quick_gelu, gelu, gelu_pytorch_tanh, gelu_new", origin: origin)
        }
        return a
    }

    /// A LayerNorm ε from a config: a finite positive number.
    static func epsilon(_ v: Any?, _ key: String, origin: String) throws(ModelLoadError) -> Float? {
        guard let v else { return nil }
        guard let e = (v as? NSNumber)?.floatValue, e > 0, e.isFinite else {
            throw .architecture("\(key) is \(v); expected a finite positive number", origin: origin)
        }
        return e
    }

    /// Attention heads from a config: they must divide the tower's width.
    static func heads(_ v: Any?, _ key: String, width: Int, origin: String) throws(ModelLoadError) -> Int? {
        guard let h = try int(v, key, in: 1...max(width, 1), origin: origin) else { return nil }
        guard width % h == 0 else {
            throw .architecture("\(key) is \(h), which does not divide the width \(width)", origin: origin)
        }
        return h
    }

    /// An input resolution from a config, which must be the one the weights were trained for (the positional
    /// embedding fixes it); checked before anything is allocated for it. A ViT takes any side whose whole patches
    /// make its grid, as the strided convolution does (SigLIP SO400M/14 at 384: 27 patches of 14, 6 pixels unread).
    static func resolution(_ v: Any?, _ key: String, model c: CLIPConfiguration, origin: String) throws(ModelLoadError) -> Int? {
        guard let r = try int(v, key, in: 1...Preprocessing.maximumResolution, origin: origin) else { return nil }
        if case .transformer(let t) = c.vision, r / t.patchSize == t.grid { return r }
        guard r == c.imageResolution else {
            throw .architecture("\(key) is \(r), but the checkpoint's image tower takes \(c.imageResolution)×\(c.imageResolution) inputs", origin: origin)
        }
        return r
    }

    /// open_clip model config: `quick_gelu` (otherwise GELU), `vision_cfg.head_width`, `text_cfg.heads`,
    /// `vision_cfg.image_size` and `preprocess_cfg.mean/std`.
    /// The Hub's `open_clip_config.json` (`{"model_cfg": …, "preprocess_cfg": …}`) is read like a model config.
    static func applyOpenCLIPConfig(_ source: OpenCLIPConfig, to c: inout CLIPConfiguration, _ p: inout Preprocessing) throws(ModelLoadError) {
        let (cfg, path) = try checkedModelConfig(source)
        c.activation = (cfg["quick_gelu"] as? Bool) == true ? .quickGELU : .gelu
        let sigLIP = sigLIPFamily(cfg)
        if let sigLIP { try applySigLIP(cfg, family: sigLIP, to: &c, origin: path) }
        if let text = cfg["text_cfg"] as? [String: Any] {
            if let heads = try heads(text["heads"], "text_cfg.heads", width: c.text.width, origin: path) {
                c.text.heads = heads
            }
            if sigLIP == nil, text["pool_type"] as? String == "eos" {
                c.text.pooling = .token(try int(text["eos_id"], "text_cfg.eos_id", in: 0...(c.text.vocabSize - 1), origin: path) ?? 2)
            }
            if let name = text["hf_tokenizer_name"] as? String, xlmRobertaTokenizers.contains(name) {
                c.text.vocabulary = .xlmRoberta
            }
            if let name = text["hf_tokenizer_name"] as? String, wordPieceTokenizers.contains(name) {
                c.text.vocabulary = .wordPiece
            }
            if sigLIP == nil, text["no_causal_mask"] as? Bool == true { c.text.causal = false }
            if sigLIP == nil, text["pool_type"] as? String == "last" { c.text.pooling = .last }
            if sigLIP == nil, text["pool_type"] as? String == "first" { c.text.pooling = .first }
        }
        if let vision = cfg["vision_cfg"] as? [String: Any], case .transformer(var v) = c.vision, sigLIP == nil {
            if vision["no_ln_pre"] as? Bool == true, v.preNorm {
                throw .architecture("vision_cfg.no_ln_pre is true, but the weights have visual.ln_pre", origin: path)
            }
            if vision["pool_type"] as? String == "avg" {
                guard v.pooling == .classToken else {
                    throw .architecture("vision_cfg.pool_type is avg, but the weights have an attention pooling head", origin: path)
                }
                v.pooling = vision["final_ln_after_pool"] as? Bool == true ? .average : .normalizedAverage
                c.vision = .transformer(v)
            }
        }
        if let vision = cfg["vision_cfg"] as? [String: Any] {
            if case .transformer(var v) = c.vision, sigLIP == nil {
                let headWidth = try heads(vision["head_width"], "vision_cfg.head_width", width: v.width, origin: path) ?? 64
                v.heads = max(v.width / headWidth, 1)
                c.vision = .transformer(v)
            }
            if let size = try resolution(vision["image_size"], "vision_cfg.image_size", model: c, origin: path) {
                p.resolution = size
            }
        }
        if isCoCa(cfg) { try applyCoCa(cfg, to: &c, origin: path) }
        if let name = (cfg["text_cfg"] as? [String: Any])?["hf_model_name"] as? String, !name.isEmpty, c.text.roberta == nil {
            throw .architecture("text_cfg.hf_model_name is \(name), a Hugging Face text tower, but the weights have CLIP's text transformer (no text.transformer.embeddings.word_embeddings.weight)", origin: path)
        }
        // Last, so a family's own checks (CoCa, CLIPA, SigLIP) name a mismatch first.
        try checkSizes(cfg, against: c, origin: path)
        if let pre = cfg["preprocess_cfg"] as? [String: Any] {
            if let m = floats(pre["mean"]) { p.mean = m }
            if let s = floats(pre["std"]) { p.std = s }
            if let mode = pre["resize_mode"] as? String, let m = Preprocessing.ResizeMode(rawValue: mode) { p.resizeMode = m }
            if let name = pre["interpolation"] as? String, let i = Preprocessing.Interpolation(rawValue: name) { p.interpolation = i }
        }
    }

    /// The head width of the timm image tower an open_clip SigLIP config names (`vit_base_patch16_siglip_224`, …),
    /// or nil when the config is not a SigLIP one. timm fixes the heads by family: base and large 64 wide,
    /// so400m 72, giantopt 96.
    static func sigLIPFamily(_ cfg: [String: Any]) -> Int? {
        guard cfg["custom_text"] as? Bool == true, let vision = cfg["vision_cfg"] as? [String: Any],
              let name = vision["timm_model_name"] as? String,
              let m = name.wholeMatch(of: #/vit_(base|large|so400m|giantopt)_patch\d+_siglip_\d+/#) else { return nil }
        return ["base": 64, "large": 64, "so400m": 72, "giantopt": 96][String(m.1)]
    }

    /// open_clip's SigLIP: timm's tower (exact GELU, ε 1e-6, heads by family) and the text tower's settings.
    private static func applySigLIP(_ cfg: [String: Any], family headWidth: Int, to c: inout CLIPConfiguration,
                                    origin: String) throws(ModelLoadError) {
        guard case .transformer(var v) = c.vision, case .attention = v.pooling else {
            throw .architecture("the config describes a SigLIP model (\((cfg["vision_cfg"] as? [String: Any])?["timm_model_name"] ?? "")) but the weights are not one", origin: origin)
        }
        guard v.width % headWidth == 0 else {
            throw .architecture("the image tower is \(v.width) wide, which timm's \(headWidth)-wide heads do not divide", origin: origin)
        }
        v.heads = v.width / headWidth
        v.pooling = .attention(heads: v.heads)
        v.activation = .gelu
        v.layerNormEps = 1e-6
        c.vision = .transformer(v)
        let text = cfg["text_cfg"] as? [String: Any] ?? [:]
        let approximate = (text["act_kwargs"] as? [String: Any])?["approximate"] as? String
        c.text.activation = approximate == "tanh" ? .geluTanh : .gelu
        if let eps = try epsilon((text["norm_kwargs"] as? [String: Any])?["eps"], "text_cfg.norm_kwargs.eps", origin: origin) {
            c.text.layerNormEps = eps
        }
        c.text.causal = false
        c.text.pooling = .last
        c.objective = .sigmoid
    }

    /// Whether an open_clip config describes CoCa (it has a caption decoder, `multimodal_cfg`).
    static func isCoCa(_ cfg: [String: Any]) -> Bool { cfg["multimodal_cfg"] != nil }

    /// open_clip's CoCa: the weights must have its attentional pooler and appended class token; the pooler's heads
    /// come from `vision_cfg.attn_pooler_heads` (8 by default).
    private static func applyCoCa(_ cfg: [String: Any], to c: inout CLIPConfiguration, origin: String) throws(ModelLoadError) {
        guard case .transformer(var v) = c.vision, case .attentionalPooler = v.pooling,
              c.text.pooling == .appendedClassToken else {
            throw .architecture("the config describes a CoCa model (multimodal_cfg) but the weights lack its attentional pooler (visual.attn_pool.query) or class token (text.cls_emb)", origin: origin)
        }
        let vision = cfg["vision_cfg"] as? [String: Any] ?? [:]
        let heads = try heads(vision["attn_pooler_heads"], "vision_cfg.attn_pooler_heads", width: c.embedDim, origin: origin) ?? 8
        guard c.embedDim % heads == 0 else {
            throw .architecture("vision_cfg.attn_pooler_heads is \(heads), which does not divide the pooled width \(c.embedDim)", origin: origin)
        }
        v.pooling = .attentionalPooler(heads: heads)
        c.vision = .transformer(v)
    }

    /// The Hub repository of an open_clip config's own tokenizer (`text_cfg.hf_tokenizer_name`), when it names one.
    public static func openCLIPTokenizerRepository(_ source: OpenCLIPConfig) -> String? {
        guard let (cfg, _) = try? checkedModelConfig(source),
              let name = (cfg["text_cfg"] as? [String: Any])?["hf_tokenizer_name"] as? String, !name.isEmpty else { return nil }
        return name
    }

    /// Checks an open_clip config without weights: nil when swift-clip implements everything it asks for, else the
    /// reason it would be refused at load time.
    public static func unsupportedOpenCLIPSetting(_ source: OpenCLIPConfig) -> String? {
        do throws(ModelLoadError) {
            _ = try checkedModelConfig(source)
            return nil
        } catch {
            if case .architecture(let reason, _) = error { return reason }
            return error.description
        }
    }

    /// The model config of an open_clip config (unwrapped from the Hub's `model_cfg`, with its `preprocess_cfg`)
    /// and the name errors give it, once every setting it asks for is one this implementation computes.
    private static func checkedModelConfig(_ source: OpenCLIPConfig) throws(ModelLoadError) -> (config: [String: Any], origin: String) {
        let file: [String: Any], origin: String
        switch source {
        case .file(let f): (file, origin) = (try readJSON(f), f)
        case .json(let bytes, let o): (file, origin) = (try parseJSON(bytes, origin: o), o)
        }
        var cfg = file["model_cfg"] as? [String: Any] ?? file
        if cfg["preprocess_cfg"] == nil, let pre = file["preprocess_cfg"] { cfg["preprocess_cfg"] = pre }
        if sigLIPFamily(cfg) != nil {
            try refuseUnimplemented(try sigLIPGeneralPart(cfg, origin: origin), origin: origin)
        } else if isCoCa(cfg) {
            try refuseUnimplemented(try coCaGeneralPart(cfg, origin: origin), origin: origin)
        } else {
            try refuseUnimplemented(cfg, origin: origin)
        }
        return (cfg, origin)
    }

    /// A SigLIP config's settings checked against what the SigLIP towers compute; returns the config without them,
    /// for the general checks.
    private static func sigLIPGeneralPart(_ cfg: [String: Any], origin: String) throws(ModelLoadError) -> [String: Any] {
        let vision = cfg["vision_cfg"] as? [String: Any] ?? [:], text = cfg["text_cfg"] as? [String: Any] ?? [:]
        func require(_ ok: Bool, _ name: String, _ value: Any?, _ supported: String) throws(ModelLoadError) {
            try requireSetting(ok, name, value, supported, family: "SigLIP", origin: origin)
        }
        let textTower = text["hf_model_name"] as? String ?? ""
        try require(textTower.isEmpty, "text_cfg.hf_model_name", textTower, "none; Hugging Face text towers are not loaded")
        try require(vision["timm_pool"] as? String == "map", "vision_cfg.timm_pool", vision["timm_pool"], "map")
        try require(vision["timm_proj"] as? String == "none", "vision_cfg.timm_proj", vision["timm_proj"], "none")
        try require(text["no_causal_mask"] as? Bool == true, "text_cfg.no_causal_mask", text["no_causal_mask"], "true")
        try require(text["pool_type"] as? String == "last", "text_cfg.pool_type", text["pool_type"], "last")
        let clean = (text["tokenizer_kwargs"] as? [String: Any])?["clean"] as? String
        try require(clean == "canonicalize", "text_cfg.tokenizer_kwargs.clean", clean, "canonicalize")
        // open_clip's SigLIP tokenizers: T5-style unigram vocabularies (English c4, multilingual mc4) saved as
        // spiece.model, and SigLIP 2's Gemma BPE vocabulary saved as tokenizer.model.
        let tokenizer = text["hf_tokenizer_name"] as? String ?? ""
        try require(tokenizer.wholeMatch(of: #/timm/ViT-[A-Za-z0-9-]*SigLIP[A-Za-z0-9-]*/#) != nil, "text_cfg.hf_tokenizer_name", tokenizer,
                    "the SentencePiece tokenizers of timm's SigLIP repositories")
        let act = text["act_kwargs"] as? [String: Any] ?? [:]
        try require(act.isEmpty || (act.count == 1 && act["approximate"] as? String == "tanh"), "text_cfg.act_kwargs", act, "none or approximate: tanh")
        let norm = text["norm_kwargs"] as? [String: Any] ?? [:]
        try require(norm.keys.allSatisfy { $0 == "eps" }, "text_cfg.norm_kwargs", norm, "eps")
        return removing(from: cfg, top: ["custom_text"],
                        vision: ["timm_model_name", "timm_pool", "timm_proj", "timm_model_pretrained", "timm_drop", "timm_drop_path"],
                        text: ["no_causal_mask", "pool_type", "tokenizer_kwargs", "hf_tokenizer_name", "act_kwargs", "norm_kwargs", "proj_bias"])
    }

    /// A CoCa config's own settings checked against what the CoCa towers compute (the embeddings only: the caption
    /// decoder is not run); returns the config without them, for the general checks.
    private static func coCaGeneralPart(_ cfg: [String: Any], origin: String) throws(ModelLoadError) -> [String: Any] {
        let vision = cfg["vision_cfg"] as? [String: Any] ?? [:], text = cfg["text_cfg"] as? [String: Any] ?? [:]
        func require(_ ok: Bool, _ name: String, _ value: Any?, _ supported: String) throws(ModelLoadError) {
            try requireSetting(ok, name, value, supported, family: "CoCa", origin: origin)
        }
        let textTower = text["hf_model_name"] as? String ?? ""
        try require(textTower.isEmpty, "text_cfg.hf_model_name", textTower, "none; Hugging Face text towers are not loaded")
        // `attentional_pool` may also name the paper's "parallel" or "cascade" poolers, which open_clip marks untested.
        try require(vision["attentional_pool"] as? Bool == true, "vision_cfg.attentional_pool", vision["attentional_pool"], "true")
        try require(text["embed_cls"] as? Bool == true, "text_cfg.embed_cls", text["embed_cls"], "true")
        return removing(from: cfg, top: ["custom_text", "multimodal_cfg"],
                        vision: ["attentional_pool", "attn_pooler_heads", "attn_pooler_queries", "output_tokens"],
                        text: ["embed_cls", "output_tokens"])
    }

    /// A family's setting check: throws, naming the setting, its value and what is supported, unless `ok`.
    private static func requireSetting(_ ok: Bool, _ name: String, _ value: Any?, _ supported: String, family: String,
                                       origin: String) throws(ModelLoadError) {
        guard !ok else { return }
        throw .architecture("\(name) is \(value.map { "\($0)" } ?? "absent"), which swift-clip does not implement for \(family) yet (supported: \(supported))", origin: origin)
    }

    /// `cfg` without the given top-level, `vision_cfg` and `text_cfg` keys: what a family's own checks have covered.
    private static func removing(from cfg: [String: Any], top: [String], vision: [String], text: [String]) -> [String: Any] {
        var general = cfg
        for key in top { general[key] = nil }
        for (section, keys) in [("vision_cfg", vision), ("text_cfg", text)] {
            var part = cfg[section] as? [String: Any] ?? [:]
            for key in keys { part[key] = nil }
            general[section] = part
        }
        return general
    }

    /// open_clip settings that change the numbers without changing the weights' names or shapes: each must have
    /// the value this implementation computes, else the model is refused rather than run wrongly. (Settings that
    /// add or remove weights, such as `ls_init_value` or `proj_bias`, are caught by the weights' names.)
    static func refuseUnimplemented(_ cfg: [String: Any], origin: String) throws(ModelLoadError) {
        for rule in unimplementedSettings {
            let values = rule.section.isEmpty ? cfg : cfg[rule.section] as? [String: Any]
            guard let v = values?[rule.key], !(v is NSNull), !rule.implemented(v) else { continue }
            let name = rule.section.isEmpty ? rule.key : "\(rule.section).\(rule.key)"
            let shown = (try? JSONSerialization.data(withJSONObject: v, options: .fragmentsAllowed))
                .map { String(decoding: $0, as: UTF8.self) } ?? "\(v)"
            throw .architecture("\(name) is \(shown), which swift-clip does not implement yet (supported: \(rule.supported))", origin: origin)
        }
        // Settings implemented only together.
        let text = cfg["text_cfg"] as? [String: Any] ?? [:]
        let stripsSeparator = (text["tokenizer_kwargs"] as? [String: Any])?["strip_sep_token"] as? Bool == true
        if stripsSeparator != wordPieceTokenizers.contains(text["hf_tokenizer_name"] as? String ?? "") {
            throw .architecture("text_cfg.tokenizer_kwargs.strip_sep_token is \(stripsSeparator) with the tokenizer \(text["hf_tokenizer_name"] ?? "OpenAI's BPE"), which swift-clip does not implement yet (supported: BERT's WordPiece with strip_sep_token, as CLIPA)", origin: origin)
        }
    }

    /// Each checked setting: where it is, whether a value is the one computed here, and what to say is supported.
    private struct SettingRule: Sendable {
        let section: String, key: String
        let implemented: @Sendable (Any) -> Bool
        let supported: String
        init(_ section: String, _ key: String, _ implemented: @escaping @Sendable (Any) -> Bool, _ supported: String) {
            (self.section, self.key, self.implemented, self.supported) = (section, key, implemented, supported)
        }
    }

    /// The Hugging Face tokenizers open_clip configs name that are XLM-RoBERTa's over a SentencePiece model.
    static let xlmRobertaTokenizers: Set<String> = ["facebook/xlm-v-base", "xlm-roberta-base", "xlm-roberta-large",
                                                     "FacebookAI/xlm-roberta-base", "FacebookAI/xlm-roberta-large"]
    /// The Hugging Face text towers open_clip configs name that `RobertaTextEncoder` computes.
    static let robertaTextTowers: Set<String> = ["xlm-roberta-base", "xlm-roberta-large", "roberta-base"]
    /// The Hugging Face tokenizers open_clip configs name that are BERT's lower-casing WordPiece.
    static let wordPieceTokenizers: Set<String> = ["bert-base-uncased", "google-bert/bert-base-uncased"]

    private static let unimplementedSettings: [SettingRule] = {
        let isFalse: @Sendable (Any) -> Bool = { ($0 as? Bool) == false }
        let isTrue: @Sendable (Any) -> Bool = { ($0 as? Bool) == true }
        let isEmpty: @Sendable (Any) -> Bool = { ($0 as? String)?.isEmpty == true }
        let isEmptyDict: @Sendable (Any) -> Bool = { ($0 as? [String: Any])?.isEmpty == true }
        func equals(_ s: String) -> @Sendable (Any) -> Bool { { ($0 as? String) == s } }
        return [
            SettingRule("", "custom_text", isFalse, "the CLIP text tower; custom or Hugging Face text towers are not loaded"),
            SettingRule("text_cfg", "hf_model_name", { ($0 as? String).map { $0.isEmpty || robertaTextTowers.contains($0) } == true },
                        "none, or the RoBERTa towers \(robertaTextTowers.sorted().joined(separator: ", "))"),
            SettingRule("text_cfg", "hf_pooler_type", equals("mean_pooler"), "mean_pooler"),
            SettingRule("text_cfg", "hf_proj_type", { ["mlp", "linear"].contains($0 as? String) }, "mlp, linear"),
            SettingRule("text_cfg", "hf_tokenizer_name", { ($0 as? String).map { $0.isEmpty || xlmRobertaTokenizers.contains($0) || wordPieceTokenizers.contains($0) } == true },
                        "none (OpenAI's BPE tokenizer), \(xlmRobertaTokenizers.sorted().joined(separator: ", ")) (XLM-RoBERTa's) or \(wordPieceTokenizers.sorted().joined(separator: ", ")) (BERT's WordPiece, with strip_sep_token)"),
            SettingRule("text_cfg", "tokenizer_kwargs", { v in
                guard let d = v as? [String: Any] else { return false }
                return d.isEmpty || (d.count == 1 && d["strip_sep_token"] as? Bool == true)
            }, "none, or strip_sep_token: true with BERT's WordPiece"),
            SettingRule("vision_cfg", "timm_model_name", isEmpty, "none; timm image towers are not loaded"),
            SettingRule("text_cfg", "pool_type", { ["argmax", "eos", "last", "first"].contains($0 as? String) }, "argmax, eos, last, first"),
            // open_clip's text tower does not read it (LayerNorm is per token, so before or after pooling agree).
            SettingRule("text_cfg", "final_ln_after_pool", { _ in true }, "true or false"),
            SettingRule("text_cfg", "embed_cls", isFalse, "false (true in CoCa configs)"),
            SettingRule("text_cfg", "pad_id", { ($0 as? NSNumber)?.intValue == 0 }, "0"),
            SettingRule("text_cfg", "no_causal_mask", { _ in true }, "true or false"),
            SettingRule("text_cfg", "attn_mask", isTrue, "true"),
            SettingRule("text_cfg", "act_kwargs", isEmptyDict, "none"),
            SettingRule("text_cfg", "norm_kwargs", isEmptyDict, "none"),
            SettingRule("vision_cfg", "pool_type", { ["tok", "avg"].contains($0 as? String) }, "tok, avg"),
            SettingRule("vision_cfg", "final_ln_after_pool", { _ in true }, "true or false"),
            SettingRule("vision_cfg", "global_average_pool", isFalse, "false"),
            SettingRule("vision_cfg", "attentional_pool", isFalse, "false (true in CoCa configs)"),
            SettingRule("vision_cfg", "no_ln_pre", { _ in true }, "true or false"),
            SettingRule("vision_cfg", "input_patchnorm", isFalse, "false"),
            SettingRule("vision_cfg", "act_kwargs", isEmptyDict, "none"),
            SettingRule("vision_cfg", "norm_kwargs", isEmptyDict, "none"),
            SettingRule("preprocess_cfg", "resize_mode", { ($0 as? String).flatMap(Preprocessing.ResizeMode.init) != nil },
                        Preprocessing.ResizeMode.allCases.map(\.rawValue).joined(separator: ", ")),
            SettingRule("preprocess_cfg", "fill_color", { ($0 as? NSNumber)?.intValue == 0 }, "0"),
            SettingRule("preprocess_cfg", "interpolation", { ($0 as? String).flatMap(Preprocessing.Interpolation.init) != nil },
                        Preprocessing.Interpolation.allCases.map(\.rawValue).joined(separator: ", ")),
        ]
    }()

    /// A Hugging Face `CLIPModel` folder: `config.json` plus `model.safetensors` or `pytorch_model.bin`;
    /// `preprocessor_config.json` and tokenizer files are used when present.
    static func loadHuggingFace(folder: String, precision: Precision, towers: Towers,
                                cache: PackedWeightCache?) throws(ModelLoadError) -> LoadedModel {
        let cfg = try readJSON(folder + "/config.json")
        // Other Hugging Face image–text models share the config's shape but not the towers' function.
        if let type = cfg["model_type"] as? String, !["clip", "siglip"].contains(type) {
            let hint = type == "siglip2"
                ? " (Siglip2Model's NaFlex towers take variable patch grids; the fixed-resolution SigLIP 2 checkpoints are published as SiglipModel folders, and open_clip's SigLIP 2 tags load)"
                : ""
            throw .architecture("config.json has model_type '\(type)'; CLIPModel ('clip') and SiglipModel ('siglip') folders load\(hint)", origin: folder)
        }
        guard let text = cfg["text_config"] as? [String: Any], let vision = cfg["vision_config"] as? [String: Any] else {
            throw .architecture("config.json lacks text_config or vision_config; is this a CLIPModel or SiglipModel folder?", origin: folder)
        }
        let fm = FileManager.default
        // A folder of one weight file loads through the packed-weight cache, keyed by that file's content and the
        // configuration config.json gives. The file is chosen once, its identity taken before it is opened (as for
        // a checkpoint file) and that same path opened: a file appearing in between cannot key one content's cache
        // with another's. Shards load uncached.
        let weights = try huggingFaceWeightPath(folder: folder)
        let single = weights.sharded ? nil : weights.path
        let identity = cache == nil ? nil : single.flatMap(PackedWeightCache.identity(of:))
        let base = try openHuggingFaceWeights(weights)
        let source: HuggingFaceWeights
        do { source = try HuggingFaceWeights(base) } catch { throw .weightFile(error) }
        var c = try CLIPConfiguration.infer(from: source)
        let configPath = folder + "/config.json"
        try applyTowerSettings(text: text, vision: vision, to: &c, origin: configPath)
        var p = Preprocessing(resolution: try resolution(vision["image_size"], "vision_config.image_size", model: c,
                                                         origin: configPath) ?? c.imageResolution)
        if fm.fileExists(atPath: folder + "/preprocessor_config.json") {
            let prePath = folder + "/preprocessor_config.json"
            let pre = try readJSON(prePath)
            if let m = floats(pre["image_mean"]) { p.mean = m }
            if let s = floats(pre["image_std"]) { p.std = s }
            let crop = pre["crop_size"] is [String: Any] ? (pre["crop_size"] as? [String: Any])?["height"] : pre["crop_size"]
            if let size = try resolution(crop, "crop_size", model: c, origin: prePath) { p.resolution = size }
            // SiglipImageProcessor resizes both sides to size.height × size.width and crops nothing.
            if pre["do_center_crop"] as? Bool != true, let size = pre["size"] as? [String: Any],
               let height = size["height"], let width = size["width"] {
                guard let side = try resolution(height, "size.height", model: c, origin: prePath),
                      (width as? NSNumber)?.intValue == side else {
                    throw .architecture("preprocessor_config.json asks for a \(width)×\(height) resize; only square inputs of the model's resolution are implemented", origin: folder)
                }
                p.resolution = side
                p.resizeMode = .squash
            }
            // PIL's filter numbers: 2 bilinear, 3 bicubic.
            if let r = try int(pre["resample"], "resample", in: 0...5, origin: prePath) {
                guard r == 2 || r == 3 else {
                    throw .architecture("preprocessor_config.json asks for resample=\(r); only bilinear (2) and bicubic (3) are implemented", origin: folder)
                }
                p.interpolation = r == 2 ? .bilinear : .bicubic
            }
        }
        let (model, digest) = try loadThroughCache(cache, path: single ?? folder, identity: identity, source: source,
                                                   configuration: c, ignoring: HuggingFaceWeights.isIgnorable,
                                                   precision: precision, towers: towers, shownAs: folder)
        let hasTokenizer = (["vocab.json", "tokenizer.json"] + LoadedModel.sentencePieceFiles).contains { fm.fileExists(atPath: folder + "/" + $0) }
        var loaded = LoadedModel(model: model, preprocessing: p, format: .huggingFace, path: folder,
                                 storedDTypes: dtypeCounts(base), parameterCount: parameterCount(base),
                                 tokenizerFolder: hasTokenizer ? folder : nil)
        loaded.checkpointDigest = digest
        return loaded
    }

    /// `model.safetensors` (or its shards), else `pytorch_model.bin` (or its shards), of a Hugging Face folder.
    static func huggingFaceWeightFile(folder: String) throws(ModelLoadError) -> any WeightSource {
        try openHuggingFaceWeights(try huggingFaceWeightPath(folder: folder))
    }

    /// Which weight file of a Hugging Face folder loads, in that order: `model.safetensors`, its sharded index,
    /// `pytorch_model.bin`, its sharded index.
    static func huggingFaceWeightPath(folder: String) throws(ModelLoadError) -> (path: String, sharded: Bool) {
        let fm = FileManager.default
        for (name, sharded) in [("model.safetensors", false), ("model.safetensors.index.json", true),
                                ("pytorch_model.bin", false), ("pytorch_model.bin.index.json", true)]
        where fm.fileExists(atPath: folder + "/" + name) {
            return (folder + "/" + name, sharded)
        }
        throw .weightFile(WeightFileError(file: folder, .cannotOpen(reason: "none of model.safetensors, its sharded index model.safetensors.index.json, pytorch_model.bin or pytorch_model.bin.index.json is present")))
    }

    static func openHuggingFaceWeights(_ weights: (path: String, sharded: Bool)) throws(ModelLoadError) -> any WeightSource {
        do throws(WeightFileError) {
            if weights.sharded { return try ShardedWeights(indexPath: weights.path) }
            return weights.path.hasSuffix(".safetensors") ? try SafeTensorsFile(path: weights.path) : try TorchCheckpoint(path: weights.path)
        } catch { throw .weightFile(error) }
    }

    /// Heads, activation and LayerNorm ε from each tower's own section of `config.json` (CLIPConfig allows the
    /// towers to differ); the ResNet tower has no such section.
    private static func applyTowerSettings(text: [String: Any], vision: [String: Any], to c: inout CLIPConfiguration,
                                           origin: String) throws(ModelLoadError) {
        if let h = try heads(text["num_attention_heads"], "text_config.num_attention_heads", width: c.text.width,
                             origin: origin) {
            c.text.heads = h
        }
        if let act = try activation(text["hidden_act"], "text_config.hidden_act", origin: origin) {
            c.text.activation = act
        }
        if let eps = try epsilon(text["layer_norm_eps"], "text_config.layer_norm_eps", origin: origin) {
            c.text.layerNormEps = eps
        }
        guard case .transformer(var v) = c.vision else { return }
        if let h = try heads(vision["num_attention_heads"], "vision_config.num_attention_heads", width: v.width,
                             origin: origin) {
            v.heads = h
        }
        if let act = try activation(vision["hidden_act"], "vision_config.hidden_act", origin: origin) {
            v.activation = act
        }
        if let eps = try epsilon(vision["layer_norm_eps"], "vision_config.layer_norm_eps", origin: origin) {
            v.layerNormEps = eps
        }
        // SigLIP's pooling head attends with the tower's own head count.
        if case .attention = v.pooling { v.pooling = .attention(heads: v.heads) }
        c.vision = .transformer(v)
    }
}

extension CLIPModel {
    /// The fp32 parameters of a checkpoint by OpenAI name (a file, or a Hugging Face folder mapped to OpenAI's
    /// names), with its architecture and preprocessing: the start of fine-tuning.
    public static func loadParameters(path: String, openCLIP openCLIPConfig: OpenCLIPConfig? = nil) throws(ModelLoadError)
        -> (parameters: NamedTensors, configuration: CLIPConfiguration, preprocessing: Preprocessing) {
        let loaded = try load(path: path, openCLIP: openCLIPConfig)
        let source: any WeightSource
        let ignorable: (String) -> Bool
        let huggingFaceBase = loaded.format == .huggingFace ? try huggingFaceWeightFile(folder: path) : nil
        do throws(WeightFileError) {
            if let huggingFaceBase {
                source = try HuggingFaceWeights(huggingFaceBase)
                ignorable = { isIgnorable($0) || HuggingFaceWeights.isIgnorable($0) }
            } else {
                let file = try openWeightFile(path: path).0
                source = try openCLIPLayout(file)
                ignorable = isIgnorable
            }
            var all = try NamedTensors(source)
            all.names = all.names.filter { !ignorable($0) }
            return (NamedTensors(names: all.names, values: all.values.filter { !ignorable($0.key) }, origin: path),
                    loaded.model.configuration, loaded.preprocessing)
        } catch {
            throw .weightFile(error)
        }
    }
}
