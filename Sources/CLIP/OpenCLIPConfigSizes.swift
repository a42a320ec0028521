import CLIPTensor
import Foundation

extension CLIPModel {
    /// The sizes an open_clip config states (`embed_dim`, the towers' `width`, `layers`, `patch_size`,
    /// `context_length`, `vocab_size`), each a whole number in a sane range and equal to what the weights have. The
    /// weights decide the architecture; a config that says otherwise describes another model, and is an error rather
    /// than a setting silently ignored (a negative width, or 2^62 layers, was accepted with any checkpoint).
    static func checkSizes(_ cfg: [String: Any], against c: CLIPConfiguration, origin: String) throws(ModelLoadError) {
        func same(_ value: Any?, _ key: String, _ actual: Int, _ what: String) throws(ModelLoadError) {
            guard let stated = try int(value, key, in: 1...(1 << 20), origin: origin) else { return }
            guard stated == actual else {
                throw .architecture("\(key) is \(stated), but the weights' \(what) is \(actual)", origin: origin)
            }
        }
        try same(cfg["embed_dim"], "embed_dim", c.embedDim, "embedding dimension")
        let vision = cfg["vision_cfg"] as? [String: Any] ?? [:]
        switch c.vision {
        case .transformer(let v):
            if vision["timm_model_name"] == nil {
                try same(vision["width"], "vision_cfg.width", v.width, "image tower width")
                try same(vision["layers"], "vision_cfg.layers", v.layers, "image tower depth")
            }
            try same(vision["patch_size"], "vision_cfg.patch_size", v.patchSize, "patch size")
        case .resnet(let r):
            try same(vision["width"], "vision_cfg.width", r.width, "ResNet stem width")
            if let layers = vision["layers"] {
                let stated = (layers as? [Any])?.compactMap { ($0 as? NSNumber).flatMap { Checked.int($0.doubleValue, in: 1...1024) } }
                guard stated == r.layers else {
                    throw .architecture("vision_cfg.layers is \(layers), but the weights' ResNet stages have \(r.layers) blocks", origin: origin)
                }
            }
        }
        let text = cfg["text_cfg"] as? [String: Any] ?? [:]
        // A Hugging Face text tower (RoBERTa) takes its sizes from its own config, not these keys.
        if c.text.roberta == nil {
            try same(text["width"], "text_cfg.width", c.text.width, "text tower width")
            try same(text["layers"], "text_cfg.layers", c.text.layers, "text tower depth")
            try same(text["context_length"], "text_cfg.context_length", c.text.contextLength, "context length")
            try same(text["vocab_size"], "text_cfg.vocab_size", c.text.vocabSize, "vocabulary size")
        }
    }
}
