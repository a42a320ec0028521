import CLIPTensor
import CLIPWeights

/// An open_clip checkpoint with a timm ViT image tower under `visual.trunk.` (with its attention-pooling (MAP) head,
/// or class-token pooling) and open_clip's text tower under `text.`: SigLIP (`ViT-B-16-SigLIP`,
/// `ViT-SO400M-14-SigLIP-384`, …), PE-Core (`PE-Core-B-16`, …) and timm's CLIP ViTs (`MobileCLIP2-L-14`), under the names `VisionTransformer` and `TextTransformer` read: timm's fused `attn.qkv` is
/// already `in_proj`, the pooling head's separate `q` and `kv` are stacked into one, `pos_embed` [1, N, width], the
/// class token [1, 1, width] and the latent probe lose their batch dimension, PE's `norm_pre` is `ln_pre` and its
/// head (a Linear with bias) becomes `visual.proj` [width, embed] plus `visual.proj_bias`; SigLIP's text head (a
/// Linear) becomes `text_projection` [width, embed] plus `text_projection_bias`, PE's text projection keeps its
/// layout. Tensors with no counterpart keep their name, so loading reports them as unexpected.
package struct OpenCLIPTimmViTWeights: WeightSource {
    /// The underlying file's path.
    package let origin: String
    /// The tensors under the towers' names, in the underlying file's order.
    package var tensorInfos: [TensorInfo] { renamed.tensorInfos }
    private let renamed: RenamedTensors

    /// Whether `source` is laid out as open_clip's SigLIP and PE-Core models are (a timm attention-pooling image tower),
    /// or as a timm CLIP ViT (MobileCLIP2-L-14: a class token, norm_pre and timm's fused qkv, which EVA's blocks have
    /// only with separate q and v biases; MobileCLIP-B: a convolutional stem in place of norm_pre).
    package static func matches(_ source: any WeightSource) -> Bool {
        let names = Set(source.tensorInfos.map(\.name))
        if names.contains("visual.trunk.attn_pool.latent") { return true }
        let stem = names.contains("visual.trunk.norm_pre.weight") || names.contains("visual.trunk.patch_embed.backbone.0.conv.weight")
        return names.contains("visual.trunk.cls_token") && stem
            && names.contains("visual.trunk.blocks.0.attn.qkv.weight") && !names.contains("visual.trunk.blocks.0.attn.q_bias")
    }

    /// Maps the tensors of `base`, checking the shapes the renaming relies on.
    package init(_ base: any WeightSource) throws(WeightFileError) {
        origin = base.origin
        renamed = try RenamedTensors(base) { (t, infos) throws(WeightFileError) in
            try Self.mapping(of: t, among: infos, origin: base.origin)
        }
    }

    package var readsConcurrently: Bool { renamed.base.readsConcurrently }

    /// Suffixes inside `visual.trunk.blocks.<i>.` and `text.transformer.resblocks.<i>.` and their names.
    private static let blockNames: [String: String] = [
        "norm1.weight": "ln_1.weight", "norm1.bias": "ln_1.bias", "norm2.weight": "ln_2.weight", "norm2.bias": "ln_2.bias",
        "attn.qkv.weight": "attn.in_proj_weight", "attn.qkv.bias": "attn.in_proj_bias",
        "attn.proj.weight": "attn.out_proj.weight", "attn.proj.bias": "attn.out_proj.bias",
        "mlp.fc1.weight": "mlp.c_fc.weight", "mlp.fc1.bias": "mlp.c_fc.bias",
        "mlp.fc2.weight": "mlp.c_proj.weight", "mlp.fc2.bias": "mlp.c_proj.bias",
    ]

    private static let directNames: [String: String] = [
        "visual.trunk.patch_embed.proj.weight": "visual.conv1.weight",
        "visual.trunk.patch_embed.proj.bias": "visual.conv1.bias",
        "visual.trunk.norm.weight": "visual.ln_post.weight", "visual.trunk.norm.bias": "visual.ln_post.bias",
        "visual.trunk.norm_pre.weight": "visual.ln_pre.weight", "visual.trunk.norm_pre.bias": "visual.ln_pre.bias",
        "visual.trunk.head.bias": "visual.proj_bias", "text.text_projection": "text_projection",
        "visual.trunk.attn_pool.proj.weight": "visual.attn_pool.attn.out_proj.weight",
        "visual.trunk.attn_pool.proj.bias": "visual.attn_pool.attn.out_proj.bias",
        "visual.trunk.attn_pool.norm.weight": "visual.attn_pool.norm.weight",
        "visual.trunk.attn_pool.norm.bias": "visual.attn_pool.norm.bias",
        "visual.trunk.attn_pool.mlp.fc1.weight": "visual.attn_pool.mlp.c_fc.weight",
        "visual.trunk.attn_pool.mlp.fc1.bias": "visual.attn_pool.mlp.c_fc.bias",
        "visual.trunk.attn_pool.mlp.fc2.weight": "visual.attn_pool.mlp.c_proj.weight",
        "visual.trunk.attn_pool.mlp.fc2.bias": "visual.attn_pool.mlp.c_proj.bias",
        "text.token_embedding.weight": "token_embedding.weight", "text.positional_embedding": "positional_embedding",
        "text.ln_final.weight": "ln_final.weight", "text.ln_final.bias": "ln_final.bias",
        "text.text_projection.bias": "text_projection_bias",
        "logit_scale": "logit_scale", "logit_bias": "logit_bias",
    ]

    /// The name, recipe and shape for tensor `t`, or nil for the pooling head's `kv` (stacked under `q`'s entry).
    private static func mapping(of t: TensorInfo, among infos: [String: TensorInfo],
                                origin: String) throws(WeightFileError) -> (String, WeightRecipe, [Int])? {
        let n = t.name
        func invalid(_ message: String) -> WeightFileError { WeightFileError(file: origin, .invalidEntry(tensor: n, message: message)) }
        if let m = n.wholeMatch(of: #/^visual\.trunk\.blocks\.(\d+)\.(.+)$/#), let target = blockNames[String(m.2)] {
            return ("visual.transformer.resblocks.\(m.1).\(target)", .rename(n), t.shape)
        }
        if let m = n.wholeMatch(of: #/^text\.transformer\.resblocks\.(\d+)\.(.+)$/#) {
            return ("transformer.resblocks.\(m.1).\(m.2)", .rename(n), t.shape)
        }
        if let target = directNames[n] {
            if (n == "logit_scale" || n == "logit_bias") && t.shape == [1] { return (target, .reshape(n, []), []) }
            return (target, .rename(n), t.shape)
        }
        switch n {
        case "visual.trunk.pos_embed", "visual.trunk.attn_pool.latent":
            guard t.shape.count == 3, t.shape[0] == 1 else { throw invalid("has shape \(t.shape), expected [1, tokens, width]") }
            return n == "visual.trunk.pos_embed" ? ("visual.positional_embedding", .reshape(n, [t.shape[1], t.shape[2]]), [t.shape[1], t.shape[2]])
                                                 : ("visual.attn_pool.probe", .rename(n), t.shape)
        case "text.text_projection.weight", "visual.trunk.head.weight":
            guard t.shape.count == 2 else { throw invalid("has shape \(t.shape), expected [embed, width]") }
            return (n.hasPrefix("text.") ? "text_projection" : "visual.proj", .transpose(n), [t.shape[1], t.shape[0]])
        case "visual.trunk.cls_token":
            guard t.shape.count == 3, t.shape[0] == 1, t.shape[1] == 1 else { throw invalid("has shape \(t.shape), expected [1, 1, width]") }
            return ("visual.class_embedding", .reshape(n, [t.shape[2]]), [t.shape[2]])
        case "visual.trunk.attn_pool.kv.weight", "visual.trunk.attn_pool.kv.bias":
            return nil
        case "visual.trunk.attn_pool.q.weight", "visual.trunk.attn_pool.q.bias":
            let kind = n.hasSuffix("weight") ? "weight" : "bias"
            let kv = "visual.trunk.attn_pool.kv.\(kind)"
            guard let k = infos[kv], t.shape.count == (kind == "weight" ? 2 : 1), k.shape.count == t.shape.count,
                  k.shape[0] == 2 * t.shape[0], Array(k.shape.dropFirst()) == Array(t.shape.dropFirst()) else {
                throw invalid("and \(kv) have shapes \(t.shape) and \(infos[kv]?.shape.description ?? "(missing)"); kv must stack k and v, each shaped as q")
            }
            var shape = t.shape
            shape[0] *= 3
            return ("visual.attn_pool.attn.in_proj_\(kind)", .concat([n, kv]), shape)
        default:
            return (n, .rename(n), t.shape)
        }
    }

    package func floatTensor(_ name: String) throws(WeightFileError) -> Tensor { try renamed.floatTensor(name) }
}
