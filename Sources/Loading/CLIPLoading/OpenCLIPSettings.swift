import CLIP
import CLIPImage
import CLIPTensor

/// The general rules an open_clip model config must keep: settings that change the numbers must have the values
/// computed here, and the sizes it states must be the weights'.
enum OpenCLIPRules {
    /// The Hugging Face tokenizers open_clip configs name that are XLM-RoBERTa's over a SentencePiece model.
    static let xlmRobertaTokenizers: Set<String> = ["facebook/xlm-v-base", "xlm-roberta-base", "xlm-roberta-large",
                                                     "FacebookAI/xlm-roberta-base", "FacebookAI/xlm-roberta-large"]
    /// The Hugging Face text towers open_clip configs name that `RobertaTextEncoder` computes.
    static let robertaTextTowers: Set<String> = ["xlm-roberta-base", "xlm-roberta-large", "roberta-base"]
    /// The Hugging Face tokenizers open_clip configs name that are BERT's lower-casing WordPiece.
    static let wordPieceTokenizers: Set<String> = ["bert-base-uncased", "google-bert/bert-base-uncased"]
    /// The Hugging Face tokenizers open_clip configs name that are RoBERTa's byte-level BPE.
    static let gpt2Tokenizers: Set<String> = ["roberta-base", "FacebookAI/roberta-base"]
    /// NLLB-200's encoders (`NLLBTextEncoder`), whose names are also their tokenizers' (`NLLBTokenizer`).
    static let nllbTextTowers: Set<String> = ["facebook/nllb-200-distilled-600M", "facebook/nllb-200-distilled-1.3B"]

    /// open_clip settings that change the numbers without changing the weights' names or shapes: each must have
    /// the value this implementation computes, else the model is refused rather than run wrongly. (Settings that
    /// add or remove weights, such as `ls_init_value` or `proj_bias`, are caught by the weights' names.)
    static func refuseUnimplemented(_ cfg: [String: JSONValue], _ r: ConfigReader) throws(ModelLoadError) {
        for rule in rules {
            let values = rule.section.isEmpty ? cfg : cfg[rule.section]?.object
            guard let v = values?[rule.key], v != .null, !rule.implemented(v) else { continue }
            let name = rule.section.isEmpty ? rule.key : "\(rule.section).\(rule.key)"
            throw .architecture("\(name) is \(v), which swift-clip does not implement yet (supported: \(rule.supported))", origin: r.origin)
        }
        // Settings implemented only together.
        let text = cfg["text_cfg"]
        let stripsSeparator = text?["tokenizer_kwargs"]?["strip_sep_token"]?.bool == true
        let tokenizer = text?["hf_tokenizer_name"]?.string
        if stripsSeparator != wordPieceTokenizers.contains(tokenizer ?? "") {
            throw .architecture("text_cfg.tokenizer_kwargs.strip_sep_token is \(stripsSeparator) with the tokenizer \(tokenizer ?? "OpenAI's BPE"), which swift-clip does not implement yet (supported: BERT's WordPiece with strip_sep_token, as CLIPA)", origin: r.origin)
        }
        // NLLB's encoder reads NLLB's ids, and only its output has no pooler: RoBERTa's cls_pooler would be its
        // tanh pooler, not computed here.
        let tower = text?["hf_model_name"]?.string ?? ""
        if nllbTextTowers.contains(tower) != nllbTextTowers.contains(tokenizer ?? "") {
            throw .architecture("text_cfg.hf_model_name is \(tower.isEmpty ? "none" : tower) with the tokenizer \(tokenizer ?? "OpenAI's BPE"); an NLLB text tower is read with its own NLLB tokenizer, and NLLB's tokenizer with an NLLB tower", origin: r.origin)
        }
        if text?["hf_pooler_type"]?.string == "cls_pooler", !nllbTextTowers.contains(tower) {
            throw .architecture("text_cfg.hf_pooler_type is cls_pooler with the text tower \(tower.isEmpty ? "none" : tower), which swift-clip does not implement yet (supported: cls_pooler with NLLB's encoders, the first position)", origin: r.origin)
        }
    }

    /// The sizes an open_clip config states (`embed_dim`, the towers' `width`, `layers`, `patch_size`,
    /// `context_length`, `vocab_size`), each a whole number in a sane range and equal to what the weights have. The
    /// weights decide the architecture; a config that says otherwise describes another model, and is an error rather
    /// than a setting silently ignored (a negative width, or 2^62 layers, was accepted with any checkpoint).
    static func checkSizes(_ cfg: [String: JSONValue], against c: CLIPConfiguration, _ r: ConfigReader) throws(ModelLoadError) {
        func same(_ value: JSONValue?, _ key: String, _ actual: Int, _ what: String) throws(ModelLoadError) {
            guard let stated = try r.int(value, key, in: 1...(1 << 20)) else { return }
            guard stated == actual else {
                throw .architecture("\(key) is \(stated), but the weights' \(what) is \(actual)", origin: r.origin)
            }
        }
        try same(cfg["embed_dim"], "embed_dim", c.embedDim, "embedding dimension")
        let vision = cfg["vision_cfg"]
        switch c.vision {
        case .transformer(let v):
            if vision?["timm_model_name"] == nil {
                try same(vision?["width"], "vision_cfg.width", v.width, "image tower width")
                try same(vision?["layers"], "vision_cfg.layers", v.layers, "image tower depth")
            }
            try same(vision?["patch_size"], "vision_cfg.patch_size", v.patchSize, "patch size")
        case .convNeXt, .eva, .fastViT, .viTamin:
            // The family's checks matched the timm model name; a config without one describes another tower.
            if (vision?["timm_model_name"]?.string ?? "").isEmpty {
                let kind = switch c.vision {
                case .eva: "an EVA"
                case .fastViT: "a FastViT"
                case .viTamin: "a ViTamin"
                default: "a ConvNeXt"
                }
                throw .architecture("the weights have \(kind) image tower (visual.trunk.*), but the config's vision_cfg names no timm_model_name", origin: r.origin)
            }
        case .resnet(let resnet):
            try same(vision?["width"], "vision_cfg.width", resnet.width, "ResNet stem width")
            if let layers = vision?["layers"] {
                let stated = layers.array?.map { $0.number.flatMap { Checked.int($0, in: 1...1024) } }
                guard let stated, stated.allSatisfy({ $0 != nil }), stated.compactMap({ $0 }) == resnet.layers else {
                    throw .architecture("vision_cfg.layers is \(layers), but the weights' ResNet stages have \(resnet.layers) blocks", origin: r.origin)
                }
            }
        }
        let text = cfg["text_cfg"]
        // A Hugging Face text tower (RoBERTa, NLLB) takes its sizes from its own config, not these keys.
        if c.text.roberta == nil && c.text.nllb == nil {
            try same(text?["width"], "text_cfg.width", c.text.width, "text tower width")
            try same(text?["layers"], "text_cfg.layers", c.text.layers, "text tower depth")
            try same(text?["context_length"], "text_cfg.context_length", c.text.contextLength, "context length")
            try same(text?["vocab_size"], "text_cfg.vocab_size", c.text.vocabSize, "vocabulary size")
        }
    }

    /// Each checked setting: where it is, whether a value is the one computed here, and what to say is supported.
    private struct Rule: Sendable {
        let section: String, key: String
        let implemented: @Sendable (JSONValue) -> Bool
        let supported: String
        init(_ section: String, _ key: String, _ implemented: @escaping @Sendable (JSONValue) -> Bool, _ supported: String) {
            (self.section, self.key, self.implemented, self.supported) = (section, key, implemented, supported)
        }
    }

    private static let rules: [Rule] = {
        let isFalse: @Sendable (JSONValue) -> Bool = { $0.bool == false }
        let isTrue: @Sendable (JSONValue) -> Bool = { $0.bool == true }
        // A flag must be one (true, false, 1 or 0): Python tests any value for truth, so "false" or 2 would mean
        // true there while meaning nothing here.
        let isFlag: @Sendable (JSONValue) -> Bool = { $0.bool != nil }
        let isEmpty: @Sendable (JSONValue) -> Bool = { $0.string?.isEmpty == true }
        let isEmptyObject: @Sendable (JSONValue) -> Bool = { $0.object?.isEmpty == true }
        func oneOf(_ names: [String]) -> @Sendable (JSONValue) -> Bool { { $0.string.map(names.contains) == true } }
        // A per-channel mean or std: three finite numbers (open_clip's tuples) or one for all three; a std none
        // smaller than 1e-6 in size, whose quotients stay finite.
        func channels(divisor: Bool) -> @Sendable (JSONValue) -> Bool {
            { v in
                let values = v.number.map { [$0] } ?? v.array.flatMap { a in a.count == 3 ? a.compactMap(\.number) : nil } ?? []
                return (values.count == 1 || values.count == 3) && values.allSatisfy { $0.isFinite && (!divisor || abs($0) >= 1e-6) }
            }
        }
        return [
            Rule("", "quick_gelu", isFlag, "true or false"),
            Rule("", "custom_text", isFalse, "the CLIP text tower; custom or Hugging Face text towers are not loaded"),
            Rule("text_cfg", "hf_model_name", { $0.string.map { $0.isEmpty || robertaTextTowers.contains($0) || nllbTextTowers.contains($0) } == true },
                 "none, the RoBERTa towers \(robertaTextTowers.sorted().joined(separator: ", ")), or NLLB's \(nllbTextTowers.sorted().joined(separator: ", "))"),
            Rule("text_cfg", "hf_pooler_type", oneOf(["mean_pooler", "cls_pooler"]), "mean_pooler, or cls_pooler with NLLB"),
            Rule("text_cfg", "hf_proj_type", oneOf(["mlp", "linear"]), "mlp, linear"),
            Rule("text_cfg", "hf_tokenizer_name", { $0.string.map { $0.isEmpty || xlmRobertaTokenizers.contains($0) || wordPieceTokenizers.contains($0) || gpt2Tokenizers.contains($0) || nllbTextTowers.contains($0) } == true },
                 "none (OpenAI's BPE tokenizer), \(xlmRobertaTokenizers.sorted().joined(separator: ", ")) (XLM-RoBERTa's), \(gpt2Tokenizers.sorted().joined(separator: ", ")) (RoBERTa's byte-level BPE), \(nllbTextTowers.sorted().joined(separator: ", ")) (NLLB's) or \(wordPieceTokenizers.sorted().joined(separator: ", ")) (BERT's WordPiece, with strip_sep_token)"),
            Rule("text_cfg", "tokenizer_kwargs", { v in
                guard let d = v.object else { return false }
                return d.isEmpty || (d.count == 1 && d["strip_sep_token"]?.bool == true)
            }, "none, or strip_sep_token: true with BERT's WordPiece"),
            Rule("vision_cfg", "timm_model_name", isEmpty, "none, convnext_tiny … convnext_xxlarge, vit_pe_core_{tiny,small,base,large,gigantic}_*, eva_giant_patch14_224, eva_giant_patch14_clip_224, eva02_{base_patch16,large_patch14,enormous_patch14}_clip_224, eva02_large_patch14_clip_336, fastvit_mci0 … fastvit_mci4, vit_large_patch14_clip_224, vit_base_mci_224, or SigLIP's vit_*_siglip_* with custom_text"),
            Rule("text_cfg", "pool_type", oneOf(["argmax", "eos", "last", "first"]), "argmax, eos, last, first"),
            // open_clip's text tower does not read it (LayerNorm is per token, so before or after pooling agree).
            Rule("text_cfg", "final_ln_after_pool", isFlag, "true or false"),
            Rule("text_cfg", "embed_cls", isFalse, "false (true in CoCa configs)"),
            Rule("text_cfg", "pad_id", { $0.number == 0 }, "0"),
            Rule("text_cfg", "no_causal_mask", isFlag, "true or false"),
            Rule("text_cfg", "attn_mask", isTrue, "true"),
            Rule("text_cfg", "act_kwargs", isEmptyObject, "none"),
            Rule("text_cfg", "norm_kwargs", isEmptyObject, "none"),
            Rule("vision_cfg", "pool_type", oneOf(["tok", "avg"]), "tok, avg"),
            Rule("vision_cfg", "final_ln_after_pool", isFlag, "true or false"),
            Rule("vision_cfg", "global_average_pool", isFalse, "false"),
            Rule("vision_cfg", "attentional_pool", isFalse, "false (true in CoCa configs)"),
            Rule("vision_cfg", "no_ln_pre", isFlag, "true or false"),
            Rule("vision_cfg", "input_patchnorm", isFalse, "false"),
            Rule("vision_cfg", "act_kwargs", isEmptyObject, "none"),
            Rule("vision_cfg", "norm_kwargs", isEmptyObject, "none"),
            Rule("preprocess_cfg", "resize_mode", oneOf(Preprocessing.ResizeMode.allCases.map(\.rawValue)),
                 Preprocessing.ResizeMode.allCases.map(\.rawValue).joined(separator: ", ")),
            Rule("preprocess_cfg", "fill_color", { $0.number == 0 }, "0"),
            Rule("preprocess_cfg", "mean", channels(divisor: false), "three finite numbers or one"),
            Rule("preprocess_cfg", "std", channels(divisor: true), "three finite numbers or one, none below 1e-6 in size"),
            Rule("preprocess_cfg", "interpolation", oneOf(Preprocessing.Interpolation.allCases.map(\.rawValue)),
                 Preprocessing.Interpolation.allCases.map(\.rawValue).joined(separator: ", ")),
        ]
    }()
}
