import CLIP
import CLIPImage
import CLIPTokenizer

extension OpenCLIPConfig {
    /// The Hub repository of the config's own tokenizer (`text_cfg.hf_tokenizer_name`), when it names one.
    public var tokenizerRepository: String? {
        guard let cfg = try? checked().config, let name = cfg["text_cfg"]?["hf_tokenizer_name"]?.string, !name.isEmpty else {
            return nil
        }
        return name
    }

    /// The files the config's own tokenizer comes in, by the kind its `text_cfg.hf_tokenizer_name` names: each
    /// alternative a file and the ones it needs beside it (SigLIP: `spiece.model`, or SigLIP 2's `tokenizer.model`;
    /// RoBERTa: `vocab.json` with `merges.txt`). Empty when the config names no tokenizer of its own.
    public var tokenizerFileGroups: [[String]] {
        guard let name = tokenizerRepository else { return [] }
        if OpenCLIPRules.xlmRobertaTokenizers.contains(name) { return [[LoadedModel.xlmRobertaFile]] }
        if OpenCLIPRules.wordPieceTokenizers.contains(name) { return [[LoadedModel.wordPieceFile]] }
        if OpenCLIPRules.gpt2Tokenizers.contains(name) { return [GPT2BPETokenizer.files] }
        if OpenCLIPRules.nllbTextTowers.contains(name) { return [[LoadedModel.xlmRobertaFile]] }
        return [["spiece.model"], ["tokenizer.model"]]
    }

    /// Nil when swift-clip implements everything the config asks for, else the reason it would be refused at load
    /// time (checked without weights).
    public var unsupportedSetting: String? {
        do throws(ModelLoadError) {
            _ = try checked()
            return nil
        } catch {
            if case .architecture(let reason, _) = error { return reason }
            return error.description
        }
    }

    /// The model config (unwrapped from the Hub's `model_cfg`, with its `preprocess_cfg`), its family and a reader
    /// naming its origin, once every setting it asks for is one this implementation computes.
    func checked() throws(ModelLoadError) -> (config: [String: JSONValue], family: OpenCLIPFamily, reader: ConfigReader) {
        let file = try document()
        var cfg = file["model_cfg"]?.object ?? file
        if cfg["preprocess_cfg"] == nil, let pre = file["preprocess_cfg"] { cfg["preprocess_cfg"] = pre }
        let reader = ConfigReader(origin: origin)
        let family = OpenCLIPFamily(cfg)
        try OpenCLIPRules.refuseUnimplemented(try family.generalPart(cfg, reader), reader)
        return (cfg, family, reader)
    }

    /// The config's settings over what the weights imply: `quick_gelu` (otherwise GELU), the heads
    /// (`vision_cfg.head_width`, `text_cfg.heads`), poolings, the tokenizer, `vision_cfg.image_size` and
    /// `preprocess_cfg`, then the family's own.
    func apply(to c: inout CLIPConfiguration, _ p: inout Preprocessing) throws(ModelLoadError) {
        let (cfg, family, r) = try checked()
        c.activation = cfg["quick_gelu"]?.bool == true ? .quickGELU : .gelu
        try family.applyFirst(cfg, to: &c, r)
        let isSigLIP = if case .sigLIP = family { true } else { false }
        if let text = cfg["text_cfg"], text.object != nil {
            if c.text.nllb != nil {
                // open_clip builds a Hugging Face tower from its own config (heads 64 wide for NLLB's), and its
                // tokenizer writes rows of text_cfg.context_length; CLIP's tower keys describe another tower.
                for key in ["heads", "width", "layers", "vocab_size"] {
                    guard let value = text[key], value != .null else { continue }
                    throw .architecture("text_cfg.\(key) is \(value), a setting of CLIP's text tower; NLLB's encoder takes its sizes from its own weights", origin: r.origin)
                }
                if let length = try r.int(text["context_length"], "text_cfg.context_length", in: 3...1_024) { c.text.contextLength = length }
            } else if let heads = try r.heads(text["heads"], "text_cfg.heads", width: c.text.width) { c.text.heads = heads }
            let pool = text["pool_type"]?.string
            if !isSigLIP, pool == "eos" {
                c.text.pooling = .token(try r.int(text["eos_id"], "text_cfg.eos_id", in: 0...(c.text.vocabSize - 1)) ?? 2)
            }
            if let name = text["hf_tokenizer_name"]?.string, OpenCLIPRules.xlmRobertaTokenizers.contains(name) {
                c.text.vocabulary = .xlmRoberta
            }
            if let name = text["hf_tokenizer_name"]?.string, OpenCLIPRules.wordPieceTokenizers.contains(name) {
                c.text.vocabulary = .wordPiece
            }
            if let name = text["hf_tokenizer_name"]?.string, OpenCLIPRules.gpt2Tokenizers.contains(name) {
                c.text.vocabulary = .gpt2BPE
            }
            if let name = text["hf_tokenizer_name"]?.string, OpenCLIPRules.nllbTextTowers.contains(name) {
                c.text.vocabulary = .nllb
            }
            // open_clip's default pooler for a Hugging Face tower is mean_pooler; NLLB's configs name cls_pooler.
            if c.text.nllb != nil { c.text.pooling = text["hf_pooler_type"]?.string == "cls_pooler" ? .first : .mean }
            if !isSigLIP, text["no_causal_mask"]?.bool == true { c.text.causal = false }
            if !isSigLIP, pool == "last" { c.text.pooling = .last }
            if !isSigLIP, pool == "first" { c.text.pooling = .first }
        }
        if let vision = cfg["vision_cfg"], vision.object != nil {
            if case .transformer(var v) = c.vision, !family.setsImageTower {
                if vision["no_ln_pre"]?.bool == true, v.preNorm {
                    throw .architecture("vision_cfg.no_ln_pre is true, but the weights have visual.ln_pre", origin: r.origin)
                }
                if vision["pool_type"]?.string == "avg" {
                    guard v.pooling == .classToken else {
                        throw .architecture("vision_cfg.pool_type is avg, but the weights have an attention pooling head", origin: r.origin)
                    }
                    v.pooling = vision["final_ln_after_pool"]?.bool == true ? .average : .normalizedAverage
                }
                let headWidth = try r.heads(vision["head_width"], "vision_cfg.head_width", width: v.width) ?? 64
                v.heads = max(v.width / headWidth, 1)
                c.vision = .transformer(v)
            }
            if let size = try r.resolution(vision["image_size"], "vision_cfg.image_size", model: c) {
                p.resolution = size
                c.vision = c.vision.trained(at: size)
            }
        }
        try family.applyLast(cfg, to: &c, r)
        let textTower = cfg["text_cfg"]?["hf_model_name"]?.string ?? ""
        if !textTower.isEmpty, c.text.roberta == nil, c.text.nllb == nil {
            throw .architecture("text_cfg.hf_model_name is \(textTower), a Hugging Face text tower, but the weights have CLIP's text transformer (no text.transformer.embeddings.word_embeddings.weight or text.transformer.embed_tokens.weight)", origin: r.origin)
        }
        if OpenCLIPRules.nllbTextTowers.contains(textTower) != (c.text.nllb != nil) {
            throw .architecture(c.text.nllb != nil
                ? "the weights' text tower is NLLB's encoder (text.transformer.embed_tokens.weight), but text_cfg.hf_model_name is \(textTower.isEmpty ? "none" : textTower)"
                : "text_cfg.hf_model_name is \(textTower), NLLB's encoder, but the weights have another text tower (no text.transformer.embed_tokens.weight)", origin: r.origin)
        }
        // Last, so a family's own checks (CoCa, CLIPA, SigLIP) name a mismatch first.
        try OpenCLIPRules.checkSizes(cfg, against: c, r)
        if let pre = cfg["preprocess_cfg"] {
            if let m = try r.channels(pre["mean"], "preprocess_cfg.mean") { p.mean = m }
            if let s = try r.channels(pre["std"], "preprocess_cfg.std", divisor: true) { p.std = s }
            if let mode = pre["resize_mode"]?.string, let m = Preprocessing.ResizeMode(rawValue: mode) { p.resizeMode = m }
            if let name = pre["interpolation"]?.string, let i = Preprocessing.Interpolation(rawValue: name) { p.interpolation = i }
        }
    }
}
