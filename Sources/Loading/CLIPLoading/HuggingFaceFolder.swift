import CLIP
import CLIPImage
import CLIPWeights
import Foundation

extension CLIPModel {
    /// A Hugging Face `CLIPModel`, `SiglipModel`, `Siglip2Model` (NaFlex) or `ChineseCLIPModel` folder: `config.json`
    /// plus `model.safetensors` or `pytorch_model.bin`; `preprocessor_config.json` and tokenizer files are used when
    /// present.
    static func loadHuggingFace(folder: String, precision: Precision, towers: Towers,
                                cache: PackedWeightCache?) throws(ModelLoadError) -> LoadedModel {
        let configPath = folder + "/config.json"
        let cfg = try ConfigReader.read(configPath)
        let r = ConfigReader(origin: configPath)
        // Other Hugging Face image–text models share the config's shape but not the towers' function.
        let modelType = cfg["model_type"]?.string
        if let type = modelType, !["clip", "siglip", "siglip2", "chinese_clip"].contains(type) {
            throw .architecture("config.json has model_type '\(type)'; CLIPModel ('clip'), SiglipModel ('siglip'), Siglip2Model ('siglip2') and ChineseCLIPModel ('chinese_clip') folders load", origin: folder)
        }
        guard let text = cfg["text_config"], text.object != nil, let vision = cfg["vision_config"], vision.object != nil else {
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
        try applyTowerSettings(text: text, vision: vision, to: &c, r)
        let naflex = modelType == "siglip2"
        try checkPatchEmbedding(base, naflex: naflex, modelType: modelType, origin: configPath)
        let naflexPatch = naflex ? try applySiglip2(vision: vision, to: &c, r) : 0
        if modelType == "chinese_clip" { try applyChineseCLIP(text: text, to: &c, r) }
        else if c.text.roberta != nil {
            throw .architecture("the weights have a BERT text tower (text_model.embeddings.word_embeddings), which only a ChineseCLIPModel folder has; config.json says model_type '\(modelType ?? "")'", origin: folder)
        }
        var p = Preprocessing(resolution: try r.resolution(vision["image_size"], "vision_config.image_size", model: c)
            ?? c.imageResolution)
        let prePath = folder + "/preprocessor_config.json"
        if naflex {
            // Siglip2ImageProcessor's defaults: 256 patches (within PatchBudget's bound for any patch up to the 64
            // pixels applySiglip2 allows), bilinear, mean and std 0.5.
            p = Preprocessing(resolution: c.imageResolution, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5],
                              resizeMode: .squash, interpolation: .bilinear)
            p.patchBudget = .init(patchSize: naflexPatch, maxPatches: 256)
            if fm.fileExists(atPath: prePath) {
                try applySiglip2Processor(try ConfigReader.read(prePath), to: &p, patch: naflexPatch, ConfigReader(origin: prePath))
            }
        } else if fm.fileExists(atPath: prePath) {
            try applyImageProcessor(try ConfigReader.read(prePath), to: &p, model: c, ConfigReader(origin: prePath))
        }
        let (model, digest) = try loadThroughCache(cache, path: single ?? folder, identity: identity, source: source,
                                                   configuration: c, ignoring: HuggingFaceWeights.isIgnorable,
                                                   precision: precision, towers: towers, shownAs: folder)
        let tokenizerFiles = c.text.vocabulary == .bertWordPiece ? [LoadedModel.wordPieceFile]
                                                                 : ["vocab.json", "tokenizer.json"] + LoadedModel.sentencePieceFiles
        let hasTokenizer = tokenizerFiles.contains { fm.fileExists(atPath: folder + "/" + $0) }
        var loaded = LoadedModel(model: model, preprocessing: p, format: .huggingFace, path: folder,
                                 storedDTypes: dtypeCounts(base), parameterCount: parameterCount(base),
                                 tokenizerFolder: hasTokenizer ? folder : nil)
        loaded.checkpointDigest = digest
        return loaded
    }

    /// A `Siglip2Model`'s image tower is NaFlex's: its patch embedding a Linear over patch rows ([width, 3·p·p]), its
    /// positions a square table resized to each image's grid. Other folders have the patch convolution.
    private static func checkPatchEmbedding(_ base: any WeightSource, naflex: Bool, modelType: String?,
                                            origin: String) throws(ModelLoadError) {
        let key = "vision_model.embeddings.patch_embedding.weight"
        guard let shape = base.tensorInfos.first(where: { $0.name == key })?.shape else { return }
        if naflex && shape.count != 2 {
            throw .architecture("config.json describes a Siglip2Model (NaFlex), whose \(key) is a Linear [width, 3·p·p]; the weights have \(shape)", origin: origin)
        }
        if !naflex && shape.count == 2 {
            throw .architecture("\(key) is a Linear \(shape), SigLIP 2 NaFlex's patch embedding; config.json says model_type '\(modelType ?? "")', not 'siglip2'", origin: origin)
        }
    }

    /// `Siglip2VisionConfig`: patches of `patch_size` and a position table of `num_patches` rows (a square), resized
    /// to each image's grid. Returns the patch side.
    private static func applySiglip2(vision: JSONValue, to c: inout CLIPConfiguration, _ r: ConfigReader) throws(ModelLoadError) -> Int {
        guard case .transformer(var v) = c.vision else {
            throw .architecture("config.json describes a Siglip2Model, but the weights have no ViT image tower", origin: r.origin)
        }
        if let patch = try r.int(vision["patch_size"], "vision_config.patch_size", in: 1...Preprocessing.PatchBudget.maximumPatchSize),
           patch != v.patchSize {
            throw .architecture("vision_config.patch_size is \(patch), but the patch embedding takes \(v.patchSize)×\(v.patchSize) patches", origin: r.origin)
        }
        if let rows = try r.int(vision["num_patches"], "vision_config.num_patches", in: 1...CLIPConfiguration.maximumTokens),
           rows != v.grid * v.grid {
            throw .architecture("vision_config.num_patches is \(rows), but the position table has \(v.grid * v.grid) rows", origin: r.origin)
        }
        if let head = vision["vision_use_head"], head.bool != true {
            throw .architecture("vision_config.vision_use_head is \(head); a Siglip2Model's image features are its attention-pooling head's", origin: r.origin)
        }
        guard v.patchSize <= Preprocessing.PatchBudget.maximumPatchSize else {
            throw .architecture("the patch embedding takes \(v.patchSize)-pixel patches; a NaFlex model here takes at most \(Preprocessing.PatchBudget.maximumPatchSize)", origin: r.origin)
        }
        v.variableGrid = true
        c.vision = .transformer(v)
        return v.patchSize
    }

    /// `preprocessor_config.json` of a `Siglip2Model`: Siglip2ImageProcessor's budget, patch, filter and
    /// normalisation.
    private static func applySiglip2Processor(_ pre: [String: JSONValue], to p: inout Preprocessing, patch: Int,
                                              _ r: ConfigReader) throws(ModelLoadError) {
        if let m = try r.channels(pre["image_mean"], "image_mean") { p.mean = m }
        if let s = try r.channels(pre["image_std"], "image_std", divisor: true) { p.std = s }
        for key in ["do_resize", "do_rescale", "do_normalize"] {
            if let v = pre[key], v != .null, v.bool != true {
                throw .architecture("\(key) is \(v); Siglip2ImageProcessor's resize, rescale and normalisation are what is implemented", origin: r.origin)
            }
        }
        if let factor = pre["rescale_factor"], factor != .null {
            guard let f = factor.number, abs(f - 1.0 / 255) < 1e-12 else {
                throw .architecture("rescale_factor is \(factor); only 1/255 is implemented", origin: r.origin)
            }
        }
        if let given = try r.int(pre["patch_size"], "patch_size", in: 1...Preprocessing.PatchBudget.maximumPatchSize),
           given != patch {
            throw .architecture("patch_size is \(given), but the model's patch embedding takes \(patch)×\(patch) patches", origin: r.origin)
        }
        var budget = Preprocessing.PatchBudget(patchSize: patch, maxPatches: 256)
        if let most = try r.int(pre["max_num_patches"], "max_num_patches", in: 1...CLIPConfiguration.maximumTokens) {
            budget.maxPatches = most
        }
        guard budget.isValid else {
            throw .architecture("max_num_patches \(budget.maxPatches) of \(patch)-pixel patches is more than \(Preprocessing.PatchBudget.maximumValues) values per image", origin: r.origin)
        }
        p.patchBudget = budget
        try applyResample(pre, to: &p, r)
    }

    /// PIL's filter number `resample`: 2 bilinear, 3 bicubic; others are refused.
    private static func applyResample(_ pre: [String: JSONValue], to p: inout Preprocessing, _ r: ConfigReader) throws(ModelLoadError) {
        if let filter = try r.int(pre["resample"], "resample", in: 0...5) {
            guard filter == 2 || filter == 3 else {
                throw .architecture("preprocessor_config.json asks for resample=\(filter); only bilinear (2) and bicubic (3) are implemented", origin: r.origin)
            }
            p.interpolation = filter == 2 ? .bilinear : .bicubic
        }
    }

    /// `preprocessor_config.json`: CLIPImageProcessor's mean, std, crop and filter, or SiglipImageProcessor's
    /// resize of both sides.
    private static func applyImageProcessor(_ pre: [String: JSONValue], to p: inout Preprocessing, model c: CLIPConfiguration,
                                            _ r: ConfigReader) throws(ModelLoadError) {
        if let m = try r.channels(pre["image_mean"], "image_mean") { p.mean = m }
        if let s = try r.channels(pre["image_std"], "image_std", divisor: true) { p.std = s }
        let crop = pre["crop_size"]?.object != nil ? pre["crop_size"]?["height"] : pre["crop_size"]
        if let size = try r.resolution(crop, "crop_size", model: c) { p.resolution = size }
        if let crops = pre["do_center_crop"], crops != .null, crops.bool == nil {
            throw .architecture("do_center_crop is \(crops); expected true or false", origin: r.origin)
        }
        // CLIPImageProcessor crops unless told not to; SiglipImageProcessor has no crop.
        let crops = pre["do_center_crop"]?.bool ?? (pre["image_processor_type"]?.string == "CLIPImageProcessor")
        // SiglipImageProcessor resizes both sides to size.height × size.width and crops nothing; CLIPImageProcessor
        // does the same with such a size, then crops to crop_size when do_center_crop.
        if let size = pre["size"], let height = size["height"], let width = size["width"] {
            guard let side = try r.resolution(height, "size.height", model: c), width.number == Double(side) else {
                throw .architecture("preprocessor_config.json asks for a \(width)×\(height) resize; only square inputs of the model's resolution are implemented", origin: r.origin)
            }
            guard !crops || side == p.resolution else {
                throw .architecture("preprocessor_config.json resizes to \(side)×\(side) and then crops \(p.resolution)×\(p.resolution) (do_center_crop); only one of the two is implemented with a height × width size", origin: r.origin)
            }
            p.resolution = side
            p.resizeMode = .squash
        }
        // A shortest-edge resize with do_center_crop false is read as with the crop: transformers feeds such images
        // uncropped, which its ViT refuses unless they are square, and for square ones the crop changes nothing.
        try applyResample(pre, to: &p, r)
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

    /// ChineseCLIPModel's text tower: a BERT (absolute positions from 0, padding id 0, token type 0) whose features are
    /// the first position's (`[CLS]`) through `text_projection`, tokenized by its folder's `vocab.txt` in BERT's rows
    /// of cn_clip's 52 tokens (fewer when the position table is shorter).
    private static func applyChineseCLIP(text: JSONValue, to c: inout CLIPConfiguration, _ r: ConfigReader) throws(ModelLoadError) {
        guard let bert = c.text.roberta, bert.projectionHidden == nil else {
            throw .architecture("config.json describes a ChineseCLIPModel, but the weights have no BERT text tower (text_model.embeddings.word_embeddings.weight and text_projection.weight)", origin: r.origin)
        }
        if let kind = text["position_embedding_type"]?.string, kind != "absolute" {
            throw .architecture("text_config.position_embedding_type is \(kind); only absolute positions are implemented", origin: r.origin)
        }
        if let pad = try r.int(text["pad_token_id"], "text_config.pad_token_id", in: 0...Int(Int32.max)), pad != 0 {
            throw .architecture("text_config.pad_token_id is \(pad); BERT's vocabularies pad with 0, which is implemented", origin: r.origin)
        }
        // BertEncoderLayer computes exact GELU; transformers' default ε for this config is 1e-12.
        guard c.text.activation == .gelu else {
            throw .architecture("text_config.hidden_act is \(c.text.activation.rawValue); a BERT text tower here computes gelu only", origin: r.origin)
        }
        if text["layer_norm_eps"] == nil { c.text.layerNormEps = 1e-12 }
        c.text.readAsChineseCLIP(vocabulary: .bertWordPiece)
    }

    /// Heads, activation and LayerNorm ε from each tower's own section of `config.json` (CLIPConfig allows the
    /// towers to differ); the ResNet tower has no such section.
    private static func applyTowerSettings(text: JSONValue, vision: JSONValue, to c: inout CLIPConfiguration,
                                           _ r: ConfigReader) throws(ModelLoadError) {
        if let h = try r.heads(text["num_attention_heads"], "text_config.num_attention_heads", width: c.text.width) {
            c.text.heads = h
        }
        if let act = try r.activation(text["hidden_act"], "text_config.hidden_act") { c.text.activation = act }
        if let eps = try r.epsilon(text["layer_norm_eps"], "text_config.layer_norm_eps") { c.text.layerNormEps = eps }
        guard case .transformer(var v) = c.vision else { return }
        if let h = try r.heads(vision["num_attention_heads"], "vision_config.num_attention_heads", width: v.width) {
            v.heads = h
        }
        if let act = try r.activation(vision["hidden_act"], "vision_config.hidden_act") { v.activation = act }
        if let eps = try r.epsilon(vision["layer_norm_eps"], "vision_config.layer_norm_eps") { v.layerNormEps = eps }
        // SigLIP's pooling head attends with the tower's own head count.
        if case .attention = v.pooling { v.pooling = .attention(heads: v.heads) }
        c.vision = .transformer(v)
    }
}
