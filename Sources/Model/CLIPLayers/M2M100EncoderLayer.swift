import CLIPTensor

extension ResidualAttentionBlock {
    /// transformers' `M2M100EncoderLayer` (NLLB-200's encoder), which is CLIP's pre-norm block under other names:
    /// x += out_proj(attention(self_attn_layer_norm(x))), then x += fc2(ReLU(fc1(final_layer_norm(x)))). Reads
    /// `<prefix>.self_attn.{q,k,v}_proj.*` [width, width] (stacked into one fused projection), `.self_attn.out_proj.*`,
    /// `.self_attn_layer_norm.*`, `.fc1.*` [hidden, width], `.fc2.*` [width, hidden] and `.final_layer_norm.*`;
    /// `heads` must divide `width`.
    package init(m2m100 r: ParameterReader, _ prefix: String, width: Int, heads: Int, eps: Float) throws(ModelLoadError) {
        guard heads > 0, width % heads == 0 else {
            throw .architecture("\(prefix): width \(width) is not divisible into \(heads) heads", origin: r.origin)
        }
        let attention = "\(prefix).self_attn"
        let inProj = try Linear(r, stacking: ["q", "k", "v"].map { "\(attention).\($0)_proj" }, in: width, out: width)
        let hidden = r.shape(of: "\(prefix).fc1.weight").flatMap { $0.count == 2 ? $0[0] : nil } ?? 4 * width
        self.init(ln1: try LayerNorm(r, "\(prefix).self_attn_layer_norm", width: width, eps: eps),
                  attention: MultiheadSelfAttention(inProj: inProj, outProj: try Linear(r, "\(attention).out_proj", in: width, out: width),
                                                    heads: heads),
                  ln2: try LayerNorm(r, "\(prefix).final_layer_norm", width: width, eps: eps),
                  mlp: MLP(fc: try Linear(r, "\(prefix).fc1", in: width, out: hidden),
                           proj: try Linear(r, "\(prefix).fc2", in: hidden, out: width), activation: .relu),
                  layerScaled: false)
    }
}
