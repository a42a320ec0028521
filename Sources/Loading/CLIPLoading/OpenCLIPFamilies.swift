import CLIP

/// The families of open_clip configs, each recognised by its config and each checking and applying its own
/// settings; what a config of none of them asks for is checked by the general rules (`OpenCLIPRules`). A new
/// family is a case here with its recognition, its checks and its settings.
enum OpenCLIPFamily: Equatable {
    /// open_clip's SigLIP (`custom_text` with a timm `vit_*_siglip_*` image tower), with timm's head width for its
    /// size: base and large 64 wide, so400m 72, giantopt 96.
    case sigLIP(headWidth: Int)
    /// CoCa: a caption decoder (`multimodal_cfg`), an attentional pooler and an appended class token.
    case coCa
    /// A timm ConvNeXt image tower (`vision_cfg.timm_model_name` `convnext_tiny` … `convnext_xxlarge`) with CLIP's
    /// text tower, and the LayerNorm ε timm gives that size.
    case convNeXt(layerNormEps: Float)
    /// A timm EVA image tower (`vision_cfg.timm_model_name` one of `evaModels`) with CLIP's text tower under `text.`.
    case eva(String)
    /// Meta's Perception Encoder (`vision_cfg.timm_model_name` one of `peCoreModels`): a timm ViT with a rotary
    /// embedding and an attention-pooling head, CLIP's text tower under `text.`.
    case peCore(String)
    /// Apple's MobileCLIP (`vision_cfg.timm_model_name` one of `FastViTConfiguration.timmModels`): a timm FastViT image tower, CLIP's
    /// text tower under `text.`.
    case fastViT(String)
    /// A timm ViT pooled by its class token (`vision_cfg.timm_model_name` one of `timmCLIPViTModels`: timm's head with bias
    /// as the projection) with CLIP's text tower under `text.`: MobileCLIP2-L-14, and MobileCLIP-B's convolutional-stem
    /// ViT.
    case timmCLIPViT(String)
    /// ViTamin (`vision_cfg.timm_model_name` one of `ViTaminConfiguration.timmModels`): MbConv stages before ViT blocks
    /// with GeGLU MLPs, open_clip's linear projection, CLIP's text tower under `text.`.
    case viTamin(String)
    /// CLIP's towers, OpenAI's or open_clip's, with the Hugging Face RoBERTa text towers open_clip builds.
    case clip

    /// The family a model config describes.
    init(_ cfg: [String: JSONValue]) {
        if cfg["custom_text"]?.bool == true, let name = cfg["vision_cfg"]?["timm_model_name"]?.string,
           let m = name.wholeMatch(of: #/vit_(base|large|so400m|giantopt)_patch\d+_siglip_\d+/#),
           let width = ["base": 64, "large": 64, "so400m": 72, "giantopt": 96][String(m.1)] {
            self = .sigLIP(headWidth: width)
        } else if cfg["custom_text"]?.bool != true, let name = cfg["vision_cfg"]?["timm_model_name"]?.string,
                  let m = name.wholeMatch(of: #/convnext_(tiny|small|base|large|xlarge|xxlarge)/#) {
            // timm's convnext_xxlarge is built with norm_eps 1e-5; the others keep LayerNorm's 1e-6.
            self = .convNeXt(layerNormEps: m.1 == "xxlarge" ? 1e-5 : 1e-6)
        } else if let name = cfg["vision_cfg"]?["timm_model_name"]?.string, Self.evaModels[name] != nil {
            self = .eva(name)
        } else if let name = cfg["vision_cfg"]?["timm_model_name"]?.string, Self.peCoreModels[name] != nil {
            self = .peCore(name)
        } else if let name = cfg["vision_cfg"]?["timm_model_name"]?.string, CLIPConfiguration.FastViTConfiguration.timmModels[name] != nil {
            self = .fastViT(name)
        } else if let name = cfg["vision_cfg"]?["timm_model_name"]?.string, Self.timmCLIPViTModels[name] != nil {
            self = .timmCLIPViT(name)
        } else if let name = cfg["vision_cfg"]?["timm_model_name"]?.string, CLIPConfiguration.ViTaminConfiguration.timmModels[name] != nil {
            self = .viTamin(name)
        } else if cfg["multimodal_cfg"] != nil {
            self = .coCa
        } else {
            self = .clip
        }
    }

    /// The family's own settings checked against what its towers compute; returns the config without them, for the
    /// general checks.
    func generalPart(_ cfg: [String: JSONValue], _ r: ConfigReader) throws(ModelLoadError) -> [String: JSONValue] {
        switch self {
        case .sigLIP: return try Self.sigLIPGeneralPart(cfg, r)
        case .coCa: return try Self.coCaGeneralPart(cfg, r)
        case .convNeXt: return try Self.convNeXtGeneralPart(cfg, r)
        case .eva: return try Self.timmTowerGeneralPart(cfg, pool: "token", family: "EVA", r)
        case .peCore: return try Self.timmTowerGeneralPart(cfg, pool: "map", family: "PE-Core", r)
        case .fastViT: return try Self.timmTowerGeneralPart(cfg, pool: "avg", family: "MobileCLIP", r)
        case .timmCLIPViT: return try Self.timmTowerGeneralPart(cfg, pool: "token", family: "a timm CLIP ViT", r)
        case .viTamin: return try Self.viTaminGeneralPart(cfg, r)
        case .clip: return cfg
        }
    }

    private static func sigLIPGeneralPart(_ cfg: [String: JSONValue], _ r: ConfigReader) throws(ModelLoadError) -> [String: JSONValue] {
        let vision = cfg["vision_cfg"], text = cfg["text_cfg"]
        func require(_ ok: Bool, _ name: String, _ value: JSONValue?, _ supported: String) throws(ModelLoadError) {
            try requireSetting(ok, name, value, supported, family: "SigLIP", r)
        }
        let textTower = text?["hf_model_name"]?.string ?? ""
        let nllb = OpenCLIPRules.nllbTextTowers.contains(textTower)
        try require(textTower.isEmpty || nllb, "text_cfg.hf_model_name", .string(textTower),
                    "none, or NLLB's encoders (NLLB-SigLIP); other Hugging Face text towers are not loaded")
        try require(cfg["multimodal_cfg"] == nil, "multimodal_cfg", cfg["multimodal_cfg"], "none; a SigLIP model has no caption decoder")
        try require(vision?["timm_pool"]?.string == "map", "vision_cfg.timm_pool", vision?["timm_pool"], "map")
        try require(vision?["timm_proj"]?.string == "none", "vision_cfg.timm_proj", vision?["timm_proj"], "none")
        // NLLB-SigLIP: SigLIP's image tower and sigmoid logits, NLLB's text tower with its own settings, checked by
        // the general rules.
        if nllb {
            return removing(from: cfg, top: ["custom_text"],
                            vision: ["timm_model_name", "timm_pool", "timm_proj", "timm_model_pretrained", "timm_drop", "timm_drop_path"],
                            text: [])
        }
        try require(text?["no_causal_mask"]?.bool == true, "text_cfg.no_causal_mask", text?["no_causal_mask"], "true")
        try require(text?["pool_type"]?.string == "last", "text_cfg.pool_type", text?["pool_type"], "last")
        let clean = text?["tokenizer_kwargs"]?["clean"]
        try require(clean?.string == "canonicalize", "text_cfg.tokenizer_kwargs.clean", clean, "canonicalize")
        // open_clip's SigLIP tokenizers: T5-style unigram vocabularies (English c4, multilingual mc4) saved as
        // spiece.model, and SigLIP 2's Gemma BPE vocabulary saved as tokenizer.model.
        let tokenizer = text?["hf_tokenizer_name"]?.string ?? ""
        try require(tokenizer.wholeMatch(of: #/timm/ViT-[A-Za-z0-9-]*SigLIP[A-Za-z0-9-]*/#) != nil, "text_cfg.hf_tokenizer_name",
                    .string(tokenizer), "the SentencePiece tokenizers of timm's SigLIP repositories")
        let act = text?["act_kwargs"]?.object ?? [:]
        try require(act.isEmpty || (act.count == 1 && act["approximate"]?.string == "tanh"), "text_cfg.act_kwargs", .object(act),
                    "none or approximate: tanh")
        let norm = text?["norm_kwargs"]?.object ?? [:]
        try require(norm.keys.allSatisfy { $0 == "eps" }, "text_cfg.norm_kwargs", .object(norm), "eps")
        return removing(from: cfg, top: ["custom_text"],
                        vision: ["timm_model_name", "timm_pool", "timm_proj", "timm_model_pretrained", "timm_drop", "timm_drop_path"],
                        text: ["no_causal_mask", "pool_type", "tokenizer_kwargs", "hf_tokenizer_name", "act_kwargs", "norm_kwargs", "proj_bias"])
    }

    /// CoCa's own settings (the embeddings only: the caption decoder is not run).
    private static func coCaGeneralPart(_ cfg: [String: JSONValue], _ r: ConfigReader) throws(ModelLoadError) -> [String: JSONValue] {
        let vision = cfg["vision_cfg"], text = cfg["text_cfg"]
        func require(_ ok: Bool, _ name: String, _ value: JSONValue?, _ supported: String) throws(ModelLoadError) {
            try requireSetting(ok, name, value, supported, family: "CoCa", r)
        }
        let textTower = text?["hf_model_name"]?.string ?? ""
        try require(textTower.isEmpty, "text_cfg.hf_model_name", .string(textTower), "none; Hugging Face text towers are not loaded")
        // `attentional_pool` may also name the paper's "parallel" or "cascade" poolers, which open_clip marks untested.
        try require(vision?["attentional_pool"]?.bool == true, "vision_cfg.attentional_pool", vision?["attentional_pool"], "true")
        try require(text?["embed_cls"]?.bool == true, "text_cfg.embed_cls", text?["embed_cls"], "true")
        return removing(from: cfg, top: ["custom_text", "multimodal_cfg"],
                        vision: ["attentional_pool", "attn_pooler_heads", "attn_pooler_queries", "output_tokens"],
                        text: ["embed_cls", "output_tokens"])
    }

    /// ConvNeXt's own settings: timm's default pooling (the mean, as `timm_pool` "" or "avg" gives) and open_clip's
    /// Linear or MLP projection (its bias is the weights' business).
    private static func convNeXtGeneralPart(_ cfg: [String: JSONValue], _ r: ConfigReader) throws(ModelLoadError) -> [String: JSONValue] {
        let vision = cfg["vision_cfg"]
        func require(_ ok: Bool, _ name: String, _ value: JSONValue?, _ supported: String) throws(ModelLoadError) {
            try requireSetting(ok, name, value, supported, family: "ConvNeXt", r)
        }
        let pool = vision?["timm_pool"]
        try require(pool == nil || pool == .null || ["", "avg"].contains(pool?.string ?? "-"), "vision_cfg.timm_pool", pool,
                    "\"\" or avg (the mean over the feature map)")
        // null or "" is falsy to open_clip: timm's own classifier becomes the projection, as with "none".
        let proj = vision?["timm_proj"]
        try require(proj == nil || ["linear", "mlp"].contains(proj?.string ?? "-"), "vision_cfg.timm_proj", proj,
                    "linear or mlp")
        let bias = vision?["timm_proj_bias"]
        try require(bias == nil || bias == .null || bias?.bool != nil, "vision_cfg.timm_proj_bias", bias, "true or false")
        return removing(from: cfg, top: [],
                        vision: ["timm_model_name", "timm_pool", "timm_proj", "timm_proj_bias", "timm_model_pretrained", "timm_drop",
                                 "timm_drop_path"],
                        text: [])
    }

    /// ViTamin's own settings: timm's own pooling (the mean of the tokens, which `timm_pool` "" keeps) and open_clip's
    /// linear projection (its bias is the weights' business), with CLIP's text tower.
    private static func viTaminGeneralPart(_ cfg: [String: JSONValue], _ r: ConfigReader) throws(ModelLoadError) -> [String: JSONValue] {
        let vision = cfg["vision_cfg"]
        func require(_ ok: Bool, _ name: String, _ value: JSONValue?, _ supported: String) throws(ModelLoadError) {
            try requireSetting(ok, name, value, supported, family: "ViTamin", r)
        }
        // "" keeps timm's avg; absent, open_clip's default is avg too.
        let pool = vision?["timm_pool"]
        try require(pool == nil || ["", "avg"].contains(pool?.string ?? "-"), "vision_cfg.timm_pool", pool,
                    "\"\" or avg (the mean of the tokens)")
        // Absent, open_clip's default is linear.
        let proj = vision?["timm_proj"]
        try require(proj == nil || proj?.string == "linear", "vision_cfg.timm_proj", proj, "linear")
        let bias = vision?["timm_proj_bias"]
        try require(bias == nil || bias == .null || bias?.bool != nil, "vision_cfg.timm_proj_bias", bias, "true or false")
        return try timmImageTowerPart(cfg, family: "ViTamin", r)
    }

    /// What timm builds for each EVA model open_clip names, beyond what the weights show: heads, EVA02's rotary
    /// embedding (positions scaled to a 16-patch grid), EVA02-E's post-norm blocks, and whether the blocks are EVA02's
    /// (SwiGLU with sub-LNs, attention sub-LN) or EVA01's (GELU MLP); and what the weights must then have: the patch
    /// size and timm's MLP ratio (hidden = int(width · ratio)), which tell EVA01-g's pre-norm weights from EVA02-E's
    /// post-norm ones and EVA02-B's from -L's (the config's image size then tells the grids apart).
    static let evaModels: [String: (heads: Int, rotaryReferenceGrid: Int?, postNorm: Bool, eva02Blocks: Bool, patch: Int,
                                    mlpRatio: Double)] = [
        "eva_giant_patch14_224": (16, nil, false, false, 14, 6144 / 1408),
        "eva_giant_patch14_clip_224": (16, nil, false, false, 14, 6144 / 1408),
        "eva02_base_patch16_clip_224": (12, 16, false, true, 16, 4 * 2 / 3),
        "eva02_large_patch14_clip_224": (16, 16, false, true, 14, 4 * 2 / 3),
        "eva02_large_patch14_clip_336": (16, 16, false, true, 14, 4 * 2 / 3),
        "eva02_enormous_patch14_clip_224": (16, nil, true, false, 14, 15360 / 1792),
    ]

    /// Throws unless the weights have the timm model's patch size and MLP ratio (hidden = int(width · ratio), timm's
    /// rounding), and, when given, its width.
    private static func requireTimmSizes(_ name: String, patch: Int, mlpRatio: Double, width: Int? = nil,
                                         weights v: (patch: Int, width: Int, hidden: Int), _ r: ConfigReader) throws(ModelLoadError) {
        let hidden = Int(Double(v.width) * mlpRatio)
        guard v.patch == patch, v.hidden == hidden, width.map({ $0 == v.width }) ?? true else {
            throw .architecture("vision_cfg.timm_model_name is \(name) (patch \(patch), MLP \(hidden) wide at width \(v.width)\(width.map { ", width \($0)" } ?? "")), but the weights' tower has patch \(v.patch), MLP \(v.hidden), width \(v.width): they are another model's", origin: r.origin)
        }
    }

    /// A timm tower's own settings (EVA, PE-Core): the pooling timm builds it with (`timm_pool`: EVA's class token
    /// `token`, PE-Core's `map`) and timm's head as the projection (`timm_proj` null or "", as open_clip's configs
    /// have it) or none ("none"), with CLIP's text tower.
    private static func timmTowerGeneralPart(_ cfg: [String: JSONValue], pool: String, family: String,
                                             _ r: ConfigReader) throws(ModelLoadError) -> [String: JSONValue] {
        let vision = cfg["vision_cfg"]
        func require(_ ok: Bool, _ name: String, _ value: JSONValue?, _ supported: String) throws(ModelLoadError) {
            try requireSetting(ok, name, value, supported, family: family, r)
        }
        // Absent, open_clip's default is avg.
        let stated = vision?["timm_pool"]
        try require(stated?.string == pool || (stated == nil && pool == "avg"), "vision_cfg.timm_pool", stated, pool)
        // Absent, open_clip's default "linear" adds a head of its own over timm's pooled features.
        let proj = vision?["timm_proj"]
        try require(proj == .null || ["", "none"].contains(proj?.string ?? "-"), "vision_cfg.timm_proj", proj,
                    "null or \"\" (timm's head projects) or none")
        return try timmImageTowerPart(cfg, family: family, r)
    }

    /// The settings every timm image tower paired with CLIP's text tower shares (no Hugging Face text tower, no caption
    /// decoder, `custom_text` a boolean); returns the config without the timm keys the family's checks covered.
    private static func timmImageTowerPart(_ cfg: [String: JSONValue], family: String, _ r: ConfigReader) throws(ModelLoadError) -> [String: JSONValue] {
        func require(_ ok: Bool, _ name: String, _ value: JSONValue?, _ supported: String) throws(ModelLoadError) {
            try requireSetting(ok, name, value, supported, family: family, r)
        }
        let textTower = cfg["text_cfg"]?["hf_model_name"]?.string ?? ""
        try require(textTower.isEmpty, "text_cfg.hf_model_name", .string(textTower), "none; \(family) models use CLIP's text tower")
        try require(cfg["multimodal_cfg"] == nil, "multimodal_cfg", cfg["multimodal_cfg"], "none")
        let custom = cfg["custom_text"]
        try require(custom == nil || custom?.bool != nil, "custom_text", custom, "true or false")
        return removing(from: cfg, top: ["custom_text"],
                        vision: ["timm_model_name", "timm_pool", "timm_proj", "timm_proj_bias", "timm_model_pretrained", "timm_drop",
                                 "timm_drop_path"],
                        text: [])
    }

    /// What timm builds for each PE-Core model open_clip names, beyond what the weights show: heads, the rotary
    /// embedding's reference grid and offset (every one indexes 'xy': columns first), and whether a class token
    /// leads (all but gigantic). Every one pools with 8 heads and has LayerNorms of ε 1e-5.
    /// Checked against the weights: the patch size and MLP ratio, and for tiny and small, which nothing else tells apart
    /// (both 384 pixels of 16-pixel patches, MLP ratio 4, the same text tower), the width.
    static let peCoreModels: [String: (heads: Int, referenceGrid: Int, offset: Float, classToken: Bool, patch: Int,
                                       mlpRatio: Double, width: Int?)] = [
        "vit_pe_core_tiny_patch16_384": (3, 24, 1, true, 16, 4, 192),
        "vit_pe_core_small_patch16_384": (6, 24, 1, true, 16, 4, 384),
        "vit_pe_core_base_patch16_224": (12, 14, 1, true, 16, 4, nil),
        "vit_pe_core_large_patch14_336": (16, 24, 1, true, 14, 4, nil),
        "vit_pe_core_gigantic_patch14_448": (16, 32, 0, false, 14, 8960 / 1536, nil),
    ]

    /// What timm builds for each of its CLIP ViTs open_clip names beyond what the weights show: heads and the LayerNorm
    /// ε (1e-5 for `vit_large_patch14_clip_224`'s `partial(LayerNorm, eps=1e-5)`, timm's default 1e-6 for MobileCLIP-B's
    /// `vit_base_mci_224`); checked against the weights: the patch size, MLP ratio, norm_pre, and the convolutional
    /// stem (MobileCLIP-B's 4×4, 2×2, 2×2, whose positions leave the class token out).
    static let timmCLIPViTModels: [String: (heads: Int, patch: Int, mlpRatio: Double, eps: Float, preNorm: Bool, convStem: [Int]?)] = [
        "vit_large_patch14_clip_224": (16, 14, 4, 1e-5, true, nil),
        "vit_base_mci_224": (12, 16, 4, 1e-6, false, [4, 2, 2]),
    ]

    /// Whether the family sets the image tower's heads and pooling itself (the general `head_width` rule does not
    /// apply).
    var setsImageTower: Bool {
        switch self {
        case .sigLIP, .peCore, .timmCLIPViT: return true
        default: return false
        }
    }

    /// A family's setting check: throws, naming the setting, its value and what is supported, unless `ok`.
    private static func requireSetting(_ ok: Bool, _ name: String, _ value: JSONValue?, _ supported: String, family: String,
                                       _ r: ConfigReader) throws(ModelLoadError) {
        guard !ok else { return }
        throw .architecture("\(name) is \(value.map { "\($0)" } ?? "absent"), which swift-clip does not implement for \(family) yet (supported: \(supported))", origin: r.origin)
    }

    /// `cfg` without the given top-level, `vision_cfg` and `text_cfg` keys: what a family's own checks have covered.
    private static func removing(from cfg: [String: JSONValue], top: [String], vision: [String], text: [String]) -> [String: JSONValue] {
        var general = cfg
        for key in top { general[key] = nil }
        for (section, keys) in [("vision_cfg", vision), ("text_cfg", text)] {
            var part = cfg[section]?.object ?? [:]
            for key in keys { part[key] = nil }
            general[section] = .object(part)
        }
        return general
    }

    /// The family's settings applied before the general ones (SigLIP's towers), which then leave them alone.
    func applyFirst(_ cfg: [String: JSONValue], to c: inout CLIPConfiguration, _ r: ConfigReader) throws(ModelLoadError) {
        if case .convNeXt(let eps) = self { return try Self.applyConvNeXt(cfg, eps: eps, to: &c, r) }
        if case .eva(let name) = self { return try Self.applyEVA(cfg, name: name, to: &c, r) }
        if case .peCore(let name) = self { return try Self.applyPECore(cfg, name: name, to: &c, r) }
        if case .fastViT(let name) = self { return try Self.applyFastViT(cfg, name: name, to: &c, r) }
        if case .timmCLIPViT(let name) = self { return try Self.applyTimmCLIPViT(cfg, name: name, to: &c, r) }
        if case .viTamin(let name) = self { return try Self.applyViTamin(cfg, name: name, to: &c, r) }
        guard case .sigLIP(let headWidth) = self else { return }
        // timm's tower: exact GELU, ε 1e-6, heads by family.
        // timm's SigLIP towers: a patch bias, no class token, no norm_pre, no head (PE-Core's have all four).
        guard case .transformer(var v) = c.vision, case .attention = v.pooling, !v.hasClassToken, v.patchBias, !v.preNorm,
              !v.projection else {
            throw .architecture("the config describes a SigLIP model (\(cfg["vision_cfg"]?["timm_model_name"]?.string ?? "")) but the weights are not one", origin: r.origin)
        }
        guard v.width % headWidth == 0 else {
            throw .architecture("the image tower is \(v.width) wide, which timm's \(headWidth)-wide heads do not divide", origin: r.origin)
        }
        v.heads = v.width / headWidth
        v.pooling = .attention(heads: v.heads)
        v.activation = .gelu
        v.layerNormEps = 1e-6
        c.vision = .transformer(v)
        c.objective = .sigmoid
        // NLLB-SigLIP's text tower is NLLB's encoder, whose settings are its own.
        guard c.text.nllb == nil else { return }
        let text = cfg["text_cfg"]
        c.text.activation = text?["act_kwargs"]?["approximate"]?.string == "tanh" ? .geluTanh : .gelu
        if let eps = try r.epsilon(text?["norm_kwargs"]?["eps"], "text_cfg.norm_kwargs.eps") { c.text.layerNormEps = eps }
        c.text.causal = false
        c.text.pooling = .last
    }

    /// timm's ε for the size, checked against the head the weights have.
    private static func applyConvNeXt(_ cfg: [String: JSONValue], eps: Float, to c: inout CLIPConfiguration,
                                      _ r: ConfigReader) throws(ModelLoadError) {
        let vision = cfg["vision_cfg"], name = vision?["timm_model_name"]?.string ?? ""
        guard case .convNeXt(var v) = c.vision else {
            throw .architecture("the config describes a ConvNeXt image tower (\(name)) but the weights have none (no visual.trunk.stem.0.weight)", origin: r.origin)
        }
        let proj = vision?["timm_proj"]?.string ?? "linear", projBias = vision?["timm_proj_bias"]?.bool ?? false
        switch (proj, v.head) {
        case ("linear", .linear(let bias)) where bias == projBias, ("mlp", .mlp(_, let bias)) where bias == projBias: break
        default:
            throw .architecture("vision_cfg.timm_proj is \(proj) with timm_proj_bias \(projBias), but the weights' head is \(v.head)", origin: r.origin)
        }
        v.layerNormEps = eps
        c.vision = .convNeXt(v)
    }

    /// timm's settings for the named EVA model, checked against the blocks and head the weights have.
    private static func applyEVA(_ cfg: [String: JSONValue], name: String, to c: inout CLIPConfiguration,
                                 _ r: ConfigReader) throws(ModelLoadError) {
        guard case .eva(var v) = c.vision, let model = evaModels[name] else {
            throw .architecture("the config describes an EVA image tower (\(name)) but the weights have none (no visual.trunk.blocks.0.attn.q_bias or .q_proj.weight)", origin: r.origin)
        }
        let isEVA02Blocks = v.mlp == .swiGLU(hidden: v.mlp.hidden, normed: true) && v.attentionNorm
        let isEVA01Blocks = v.mlp == .gelu(hidden: v.mlp.hidden) && !v.attentionNorm
        guard model.eva02Blocks ? isEVA02Blocks : isEVA01Blocks else {
            throw .architecture("vision_cfg.timm_model_name is \(name), whose blocks have \(model.eva02Blocks ? "a SwiGLU MLP with sub-LNs and an attention sub-LN" : "a GELU MLP and no sub-LNs"), but the weights' blocks have \(v.mlp) and \(v.attentionNorm ? "an" : "no") attention sub-LN", origin: r.origin)
        }
        try requireTimmSizes(name, patch: model.patch, mlpRatio: model.mlpRatio,
                             weights: (v.patchSize, v.width, v.mlp.hidden), r)
        let wantsHead = cfg["vision_cfg"]?["timm_proj"]?.string != "none"
        guard wantsHead == v.head else {
            throw .architecture(wantsHead ? "the config projects with timm's head (vision_cfg.timm_proj null), but the weights have no visual.trunk.head.weight"
                                          : "vision_cfg.timm_proj is none, but the weights have timm's head (visual.trunk.head.weight)", origin: r.origin)
        }
        if !v.head && v.width != c.embedDim {
            throw .architecture("vision_cfg.timm_proj is none, so the EVA tower's width \(v.width) must equal embed_dim \(c.embedDim)", origin: r.origin)
        }
        (v.heads, v.rotaryReferenceGrid, v.postNorm, v.timmModel) = (model.heads, model.rotaryReferenceGrid, model.postNorm, name)
        c.vision = .eva(v)
    }

    /// timm's settings for the named PE-Core model, checked against the tower the weights have.
    private static func applyPECore(_ cfg: [String: JSONValue], name: String, to c: inout CLIPConfiguration,
                                    _ r: ConfigReader) throws(ModelLoadError) {
        guard case .transformer(var v) = c.vision, case .attention = v.pooling, let model = peCoreModels[name] else {
            throw .architecture("the config describes a PE-Core image tower (\(name)) but the weights have none (no visual.trunk.attn_pool.latent)", origin: r.origin)
        }
        guard v.hasClassToken == model.classToken, v.preNorm, !v.patchBias else {
            throw .architecture("\(name) has \(model.classToken ? "a" : "no") class token, a LayerNorm before its blocks and no patch bias, but the weights have \(v.hasClassToken ? "a" : "no") class token, \(v.preNorm ? "a" : "no") norm_pre and \(v.patchBias ? "a" : "no") patch bias", origin: r.origin)
        }
        try requireTimmSizes(name, patch: model.patch, mlpRatio: model.mlpRatio, width: model.width,
                             weights: (v.patchSize, v.width, v.mlpWidth ?? 0), r)
        let wantsHead = cfg["vision_cfg"]?["timm_proj"]?.string != "none"
        guard wantsHead ? v.projection && v.projectionBias : !v.projection else {
            throw .architecture(wantsHead ? "the config projects with timm's head (vision_cfg.timm_proj null), but the weights have no visual.trunk.head.weight and .bias"
                                          : "vision_cfg.timm_proj is none, but the weights have timm's head (visual.trunk.head.weight)", origin: r.origin)
        }
        guard v.width % model.heads == 0, v.width % 8 == 0 else {
            throw .architecture("the image tower is \(v.width) wide, which \(name)'s \(model.heads) heads (and its pooling's 8) do not divide", origin: r.origin)
        }
        v.heads = model.heads
        v.pooling = .attention(heads: 8)
        v.activation = .gelu
        v.layerNormEps = 1e-5
        v.rotary = .init(referenceGrid: model.referenceGrid, offset: model.offset, columnsFirst: true)
        v.timmModel = name
        c.vision = .transformer(v)
    }

    /// timm's settings for the named CLIP ViT, checked against the tower the weights have.
    private static func applyTimmCLIPViT(_ cfg: [String: JSONValue], name: String, to c: inout CLIPConfiguration,
                                         _ r: ConfigReader) throws(ModelLoadError) {
        guard case .transformer(var v) = c.vision, v.pooling == .classToken, v.timmModel == nil, v.rotary == nil,
              let model = timmCLIPViTModels[name] else {
            throw .architecture("the config describes timm's CLIP ViT (\(name)) but the weights' image tower is not one (no visual.trunk.cls_token with norm_pre and head)", origin: r.origin)
        }
        guard v.hasClassToken, v.preNorm == model.preNorm, !v.patchBias, v.projection, v.projectionBias,
              v.convStem?.kernels == model.convStem else {
            let stem = { (k: [Int]?) in k.map { "a convolutional stem \($0)" } ?? "a patch convolution" }
            throw .architecture("\(name) has a class token, \(model.preNorm ? "a" : "no") LayerNorm before its blocks, \(stem(model.convStem)) without bias and timm's head with bias, but the weights have \(v.hasClassToken ? "a" : "no") class token, \(v.preNorm ? "a" : "no") norm_pre, \(stem(v.convStem?.kernels))\(v.patchBias ? " with bias" : "") and \(v.projection ? (v.projectionBias ? "a head with bias" : "a head without bias") : "no head")", origin: r.origin)
        }
        guard cfg["vision_cfg"]?["timm_proj"]?.string != "none" else {
            throw .architecture("vision_cfg.timm_proj is none, but the weights have timm's head (visual.trunk.head.weight)", origin: r.origin)
        }
        try requireTimmSizes(name, patch: model.patch, mlpRatio: model.mlpRatio, weights: (v.patchSize, v.width, v.mlpWidth ?? 0), r)
        guard v.width % model.heads == 0 else {
            throw .architecture("the image tower is \(v.width) wide, which \(name)'s \(model.heads) heads do not divide", origin: r.origin)
        }
        v.heads = model.heads
        v.activation = .gelu
        v.layerNormEps = model.eps
        v.timmModel = name
        c.vision = .transformer(v)
    }

    /// timm's settings for the named FastViT model, checked against the tower the weights have.
    private static func applyFastViT(_ cfg: [String: JSONValue], name: String, to c: inout CLIPConfiguration,
                                     _ r: ConfigReader) throws(ModelLoadError) {
        guard case .fastViT(var v) = c.vision, let model = CLIPConfiguration.FastViTConfiguration.timmModels[name] else {
            throw .architecture("the config describes a FastViT image tower (\(name)) but the weights have none (no visual.trunk.stem.0.conv_kxk.0.conv.weight)", origin: r.origin)
        }
        guard cfg["vision_cfg"]?["timm_proj"]?.string != "none" else {
            throw .architecture("vision_cfg.timm_proj is none, which swift-clip does not implement for MobileCLIP yet (supported: null or \"\", timm's classifier projects)", origin: r.origin)
        }
        let hidden = v.widths.map { Int(Double($0) * model.mlpRatio) }
        let stages = model.attention.count
        guard v.depths.count == stages, v.mlpHidden == hidden, v.attention == model.attention, v.positionalEmbedding == model.attention,
              v.squeezeExcite == model.squeezeExcite, v.attentionNorm == model.norm, v.stemScaleBranch == model.stemScaleBranch else {
            let norm = { (n: CLIPConfiguration.FastViTConfiguration.Norm) in n == .batchNorm ? "BatchNorm" : "LayerNorm" }
            throw .architecture("vision_cfg.timm_model_name is \(name) (\(stages) stages, MLP ratio \(model.mlpRatio), attention in stages \(model.attention), squeeze-excitation \(model.squeezeExcite), \(norm(model.norm)) before attention, stem 1×1 branches \(model.stemScaleBranch)), but the weights' tower has \(v.depths.count) stages, MLP widths \(v.mlpHidden) at widths \(v.widths), attention \(v.attention), RepCPE \(v.positionalEmbedding), squeeze-excitation \(v.squeezeExcite), \(norm(v.attentionNorm)), stem 1×1 branches \(v.stemScaleBranch): they are another model's", origin: r.origin)
        }
        v.timmModel = name
        c.vision = .fastViT(v)
    }

    /// timm's settings for the named ViTamin model, checked against the tower the weights have.
    private static func applyViTamin(_ cfg: [String: JSONValue], name: String, to c: inout CLIPConfiguration,
                                     _ r: ConfigReader) throws(ModelLoadError) {
        guard case .viTamin(var v) = c.vision, let model = CLIPConfiguration.ViTaminConfiguration.timmModels[name] else {
            throw .architecture("the config describes a ViTamin image tower (\(name)) but the weights have none (no visual.trunk.patch_embed.backbone.stem.conv1.weight)", origin: r.origin)
        }
        let projBias = cfg["vision_cfg"]?["timm_proj_bias"]?.bool ?? false
        guard projBias == v.projectionBias else {
            throw .architecture("vision_cfg.timm_proj_bias is \(projBias), but the weights' projection \(v.projectionBias ? "has" : "has no") bias (visual.head.proj.bias)", origin: r.origin)
        }
        // timm's GeGluMlp ratio 2 for every ViTamin, and its MbConv expansion make_divisible(4 · width).
        let expanded = v.stageWidths.map { timmMakeDivisible(Double(4 * $0), divisor: 8) }
        guard v.mlpHidden == 2 * v.width, v.expandedWidths == expanded, (v.positionGrid != nil) == model.positions else {
            throw .architecture("vision_cfg.timm_model_name is \(name) (GeGLU \(2 * v.width) wide at width \(v.width), MbConv expansion \(expanded), \(model.positions ? "learned positions" : "no positions")), but the weights' tower has GeGLU \(v.mlpHidden), expansion \(v.expandedWidths), \(v.positionGrid != nil ? "positions" : "no positions"): they are another model's", origin: r.origin)
        }
        guard v.width % model.heads == 0 else {
            throw .architecture("the image tower is \(v.width) wide, which \(name)'s \(model.heads) heads do not divide", origin: r.origin)
        }
        v.heads = model.heads
        v.timmModel = name
        c.vision = .viTamin(v)
    }

    /// The family's settings applied after the general ones (CoCa's pooler heads).
    func applyLast(_ cfg: [String: JSONValue], to c: inout CLIPConfiguration, _ r: ConfigReader) throws(ModelLoadError) {
        guard self == .coCa else { return }
        // The weights must have the attentional pooler and the appended class token; the pooler's heads come from
        // `vision_cfg.attn_pooler_heads` (8 by default).
        guard case .transformer(var v) = c.vision, case .attentionalPooler = v.pooling,
              c.text.pooling == .appendedClassToken else {
            throw .architecture("the config describes a CoCa model (multimodal_cfg) but the weights lack its attentional pooler (visual.attn_pool.query) or class token (text.cls_emb)", origin: r.origin)
        }
        let heads = try r.heads(cfg["vision_cfg"]?["attn_pooler_heads"], "vision_cfg.attn_pooler_heads", width: c.embedDim) ?? 8
        guard c.embedDim % heads == 0 else {
            throw .architecture("vision_cfg.attn_pooler_heads is \(heads), which does not divide the pooled width \(c.embedDim)", origin: r.origin)
        }
        v.pooling = .attentionalPooler(heads: heads)
        c.vision = .transformer(v)
    }
}
