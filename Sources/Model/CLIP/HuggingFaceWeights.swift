import CLIPTensor
import CLIPWeights

/// A Hugging Face `CLIPModel` checkpoint presented under OpenAI's tensor names: separate q/k/v projections
/// fused into `in_proj_*`, `fc1`/`fc2` as `c_fc`/`c_proj`, `pre_layrnorm` as `ln_pre`, and the projections
/// (stored as `[embed, width]` Linear weights) transposed to OpenAI's `[width, embed]`. Tensors with no OpenAI
/// counterpart keep their Hugging Face name, so loading reports them as unexpected. A `SiglipModel` maps the same
/// way, its extra parts to the names `VisionTransformer` and `TextTransformer` read for SigLIP: the patch bias
/// `visual.conv1.bias`, the attention-pooling head `visual.attn_pool.*`, the text head as `text_projection` and
/// `text_projection_bias`, and the one-element `logit_scale` / `logit_bias` as scalars. A `ChineseCLIPModel`'s BERT
/// text tower (`text_model.embeddings.*`, `text_model.encoder.layer.*`) goes under the names `RobertaTextEncoder`
/// reads (`text.transformer.*`), its `text_projection` as that tower's `text.proj` Linear.
package struct HuggingFaceWeights: WeightSource {
    /// The underlying file's path.
    package let origin: String
    /// The tensors under their OpenAI names, in the underlying file's order.
    package var tensorInfos: [TensorInfo] { renamed.tensorInfos }
    private let renamed: RenamedTensors

    typealias Recipe = WeightRecipe

    /// Buffers Hugging Face stores that are not parameters.
    package static func isIgnorable(_ name: String) -> Bool { name.hasSuffix("position_ids") }

    /// Maps the tensors of `base` (a Hugging Face `model.safetensors` or `pytorch_model.bin`), checking that each
    /// layer's q, k and v projections have the same shape.
    package init(_ base: any WeightSource) throws(WeightFileError) {
        origin = base.origin
        renamed = try RenamedTensors(base, skipping: Self.isIgnorable) { (t, infos) throws(WeightFileError) in
            try Self.mapping(of: t, among: infos, origin: base.origin)
        }
    }

    /// Per-layer Hugging Face suffixes and their OpenAI names (q/k/v are fused separately).
    private static let layerNames: [String: String] = [
        "self_attn.out_proj.weight": "attn.out_proj.weight", "self_attn.out_proj.bias": "attn.out_proj.bias",
        "layer_norm1.weight": "ln_1.weight", "layer_norm1.bias": "ln_1.bias",
        "layer_norm2.weight": "ln_2.weight", "layer_norm2.bias": "ln_2.bias",
        "mlp.fc1.weight": "mlp.c_fc.weight", "mlp.fc1.bias": "mlp.c_fc.bias",
        "mlp.fc2.weight": "mlp.c_proj.weight", "mlp.fc2.bias": "mlp.c_proj.bias",
    ]

    /// Hugging Face names outside the layers and their OpenAI names.
    private static let directNames: [String: String] = [
        "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
        "text_model.embeddings.position_embedding.weight": "positional_embedding",
        "text_model.final_layer_norm.weight": "ln_final.weight", "text_model.final_layer_norm.bias": "ln_final.bias",
        "vision_model.embeddings.class_embedding": "visual.class_embedding",
        "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
        "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
        "vision_model.pre_layrnorm.weight": "visual.ln_pre.weight", "vision_model.pre_layrnorm.bias": "visual.ln_pre.bias",
        "vision_model.post_layernorm.weight": "visual.ln_post.weight", "vision_model.post_layernorm.bias": "visual.ln_post.bias",
        "logit_scale": "logit_scale",
        "vision_model.embeddings.patch_embedding.bias": "visual.conv1.bias",
        "vision_model.head.probe": "visual.attn_pool.probe",
        "vision_model.head.attention.in_proj_weight": "visual.attn_pool.attn.in_proj_weight",
        "vision_model.head.attention.in_proj_bias": "visual.attn_pool.attn.in_proj_bias",
        "vision_model.head.attention.out_proj.weight": "visual.attn_pool.attn.out_proj.weight",
        "vision_model.head.attention.out_proj.bias": "visual.attn_pool.attn.out_proj.bias",
        "vision_model.head.layernorm.weight": "visual.attn_pool.norm.weight",
        "vision_model.head.layernorm.bias": "visual.attn_pool.norm.bias",
        "vision_model.head.mlp.fc1.weight": "visual.attn_pool.mlp.c_fc.weight",
        "vision_model.head.mlp.fc1.bias": "visual.attn_pool.mlp.c_fc.bias",
        "vision_model.head.mlp.fc2.weight": "visual.attn_pool.mlp.c_proj.weight",
        "vision_model.head.mlp.fc2.bias": "visual.attn_pool.mlp.c_proj.bias",
        "text_model.head.bias": "text_projection_bias",
    ]

    /// The OpenAI name, recipe and shape for Hugging Face tensor `t`, or nil for the k/v projections (fused with q).
    private static func mapping(of t: TensorInfo, among infos: [String: TensorInfo],
                                origin: String) throws(WeightFileError) -> (String, Recipe, [Int])? {
        let n = t.name
        // A BERT text tower (ChineseCLIPModel) has word embeddings where CLIP's has token embeddings.
        if infos["text_model.embeddings.word_embeddings.weight"] != nil {
            if n.hasPrefix("text_model.embeddings.") || n.hasPrefix("text_model.encoder.layer.") {
                return ("text.transformer." + n.dropFirst("text_model.".count), .rename(n), t.shape)
            }
            if n == "text_projection.weight" { return ("text.proj.weight", .rename(n), t.shape) }
        }
        // SigLIP 2 NaFlex embeds patch rows with a Linear; under the convolution's name and layout it is the same map.
        if n == "vision_model.embeddings.patch_embedding.weight", t.shape.count == 2 {
            let p = Int(Double(t.shape[1] / 3).squareRoot().rounded())
            guard p >= 1, 3 * p * p == t.shape[1] else {
                throw WeightFileError(file: origin, .invalidEntry(tensor: n, message: "has shape \(t.shape); a patch Linear takes 3·p·p inputs"))
            }
            return ("visual.conv1.weight", .patchLinear(n, patch: p), [t.shape[0], 3, p, p])
        }
        let layer = #/^(text_model|vision_model)\.encoder\.layers\.(\d+)\.(.+)$/#
        guard let m = n.wholeMatch(of: layer) else {
            if (n == "logit_scale" || n == "logit_bias") && t.shape == [1] { return (n, .reshape(n, []), []) }
            if let target = directNames[n] { return (target, .rename(n), t.shape) }
            let projections = ["visual_projection.weight": "visual.proj", "text_projection.weight": "text_projection",
                               "text_model.head.weight": "text_projection"]
            if let target = projections[n], t.shape.count == 2 {
                return (target, .transpose(n), [t.shape[1], t.shape[0]])
            }
            return (n, .rename(n), t.shape)
        }
        let p = "\(m.1 == "text_model" ? "transformer" : "visual.transformer").resblocks.\(m.2)"
        let rest = String(m.3)
        if let target = layerNames[rest] { return ("\(p).\(target)", .rename(n), t.shape) }
        if rest.hasPrefix("self_attn.k_proj.") || rest.hasPrefix("self_attn.v_proj.") { return nil }
        guard rest == "self_attn.q_proj.weight" || rest == "self_attn.q_proj.bias" else { return (n, .rename(n), t.shape) }
        let kind = rest.hasSuffix("weight") ? "weight" : "bias"
        let parts = ["q", "k", "v"].map { "\(m.1).encoder.layers.\(m.2).self_attn.\($0)_proj.\(kind)" }
        guard parts.allSatisfy({ infos[$0]?.shape == t.shape }) else {
            throw WeightFileError(file: origin, .invalidEntry(tensor: n, message: "q, k and v projections differ in shape or are incomplete"))
        }
        guard t.shape.count == (kind == "weight" ? 2 : 1) else {
            throw WeightFileError(file: origin, .invalidEntry(tensor: n, message: "has shape \(t.shape); a projection \(kind) has \(kind == "weight" ? 2 : 1) dimension\(kind == "weight" ? "s" : "")"))
        }
        var shape = t.shape
        shape[0] = Checked.product(shape[0], 3) ?? Int.max
        return ("\(p).attn.in_proj_\(kind)", .concat(parts), shape)
    }

    /// The tensor under its OpenAI name, fused or transposed as needed.
    package func floatTensor(_ name: String) throws(WeightFileError) -> Tensor { try renamed.floatTensor(name) }
}
