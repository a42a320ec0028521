import CLIPLayers
import CLIPTensor

/// timm's EVA image tower with open_clip's use of it (`visual.trunk.*`): patch embedding with bias, the class token
/// and absolute positions, `layers` EVA blocks, a LayerNorm, and the class token through timm's head. The attention
/// is `MultiheadSelfAttention` with q, k, v fused at load (k has no bias), EVA02's rotary embedding and sub-LN as its
/// options; the MLP is GELU's or EVA02's SwiGLU.
public struct EVAVisionTransformer: Sendable {
    /// The sizes and settings this tower was built with.
    public let configuration: CLIPConfiguration.EVAConfiguration
    /// `patch_embed.proj` flattened to [width, 3·patch·patch]: patch embedding as one GEMM.
    let patchEmbedding: Linear
    let classEmbedding: Tensor  // [width]
    let positionalEmbedding: Tensor  // [tokens, width]
    let blocks: [Block]
    let norm: LayerNorm
    let head: Linear?  // [width] → [embed], with bias

    init(_ r: ParameterReader, _ c: CLIPConfiguration.EVAConfiguration, embedDim: Int) throws(ModelLoadError) {
        configuration = c
        let t = "visual.trunk", (w, p) = (c.width, c.patchSize)
        patchEmbedding = try patchEmbeddingLayer(r, weight: "\(t).patch_embed.proj.weight", bias: "\(t).patch_embed.proj.bias",
                                                 width: w, patch: p)
        classEmbedding = Tensor(uncheckedShape: [w], scalars: try r.tensor("\(t).cls_token", shape: [1, 1, w]).scalars)
        positionalEmbedding = Tensor(uncheckedShape: [c.tokens, w], scalars: try r.tensor("\(t).pos_embed", shape: [1, c.tokens, w]).scalars)
        let rotary = c.rotaryReferenceGrid.map { RotaryEmbedding(grid: c.grid, headDim: w / c.heads, referenceGrid: $0) }
        var blocks: [Block] = []
        for i in 0..<c.layers { blocks.append(try Block(r, "\(t).blocks.\(i)", c, rotary: rotary)) }
        self.blocks = blocks
        norm = try LayerNorm(r, "\(t).norm", width: w, eps: c.layerNormEps)
        head = c.head ? try Linear(r, "\(t).head", in: w, out: embedDim) : nil
    }

    private init(configuration: CLIPConfiguration.EVAConfiguration, patchEmbedding: Linear, classEmbedding: Tensor,
                 positionalEmbedding: Tensor, blocks: [Block], norm: LayerNorm, head: Linear?) {
        (self.configuration, self.patchEmbedding, self.classEmbedding, self.positionalEmbedding) =
            (configuration, patchEmbedding, classEmbedding, positionalEmbedding)
        (self.blocks, self.norm, self.head) = (blocks, norm, head)
    }

    /// The tower with its products in `precision` (embeddings, LayerNorms, attention and the rotary stay fp32).
    func converted(to precision: Precision) throws(TensorError) -> EVAVisionTransformer {
        var blocks: [Block] = []
        for block in self.blocks { blocks.append(try block.converted(to: precision)) }
        return EVAVisionTransformer(configuration: configuration, patchEmbedding: try patchEmbedding.converted(to: precision),
                                    classEmbedding: classEmbedding, positionalEmbedding: positionalEmbedding, blocks: blocks,
                                    norm: norm, head: try head?.converted(to: precision))
    }

    /// `pixels` [N, 3, H, W] → [N, embed]. timm's patch embedding takes exactly the size it was built for; as with a
    /// strided convolution, pixels past the last whole patch are ignored.
    func forward(_ pixels: Tensor) throws(CLIPError) -> Tensor {
        let c = configuration
        let patches = try imagePatchRows(pixels, patchSize: c.patchSize, grid: c.grid)
        do throws(TensorError) {
            var x = tokenRows(try patchEmbedding(patches), classEmbedding: classEmbedding, positions: positionalEmbedding,
                              grid: c.grid)
            let batch = x.shape[0]
            var ws = Workspace(batch: batch, tokens: x.shape[1], c)
            for block in blocks.dropLast() { try block.forward(&x, workspace: &ws) }
            // Only the class token is read after the last block (the LayerNorm is per token), so the last block
            // computes only it.
            var cls: Tensor
            if let last = blocks.last {
                var kept = Workspace(batch: batch, tokens: 1, c)
                cls = try last.forward(x, keeping: [Int](repeating: 0, count: batch), workspace: &ws, kept: &kept)
                    .reshaped([batch, c.width])
            } else {
                cls = firstTokens(x)
            }
            try norm.normalize(&cls)
            return try head?(cls) ?? cls
        } catch {
            throw .internalShape(error)
        }
    }
}

extension EVAVisionTransformer {
    /// The feed-forward half of a block.
    enum Feedforward: Sendable {
        case gelu(MLP)
        case swiGLU(GatedMLP)
    }

    /// Buffers one forward pass reuses in every block; every element is written before it is read.
    struct Workspace {
        var normed: Tensor  // [batch, tokens, width]: a norm's output, or a post-norm branch
        var attention: MultiheadSelfAttention.Workspace
        var gated: Tensor  // [batch·tokens, 2·hidden] (SwiGLU) or [batch·tokens, hidden] (GELU)
        var hidden: Tensor  // [batch·tokens, hidden]

        init(batch: Int, tokens: Int, _ c: CLIPConfiguration.EVAConfiguration) {
            let rows = batch * tokens, hidden = c.mlp.hidden
            normed = Tensor(uninitialized: [batch, tokens, c.width])
            attention = MultiheadSelfAttention.Workspace(batch: batch, tokens: tokens, width: c.width)
            if case .swiGLU = c.mlp {
                gated = Tensor(uninitialized: [rows, 2 * hidden])
                self.hidden = Tensor(uninitialized: [rows, hidden])
            } else {
                gated = Tensor(uninitialized: [rows, hidden])
                self.hidden = Tensor(uninitialized: [0])
            }
        }
    }

    /// An EVA block. Pre-norm: x + attn(norm1(x)), then + mlp(norm2(x)). Post-norm (EVA02-E): x + norm1(attn(x)),
    /// then + norm2(mlp(x)).
    struct Block: Sendable {
        let norm1: LayerNorm
        let attention: MultiheadSelfAttention
        let norm2: LayerNorm
        let feedforward: Feedforward
        let postNorm: Bool

        init(_ r: ParameterReader, _ p: String, _ c: CLIPConfiguration.EVAConfiguration,
             rotary: RotaryEmbedding?) throws(ModelLoadError) {
            let (w, eps) = (c.width, c.layerNormEps)
            norm1 = try LayerNorm(r, "\(p).norm1", width: w, eps: eps)
            norm2 = try LayerNorm(r, "\(p).norm2", width: w, eps: eps)
            let a = "\(p).attn"
            let inProj: Linear
            // timm keeps k without a bias in both layouts: its third of the fused bias is zero.
            let zeros = [Float](repeating: 0, count: w)
            if r.shape(of: "\(a).q_bias") != nil {
                let names = ["\(a).qkv.weight", "\(a).q_bias", "\(a).v_bias"]
                inProj = try Linear(r, packed: names[0], in: w, out: 3 * w, consumes: names) { () throws(ModelLoadError) in
                    let weight = try r.tensor(names[0], shape: [3 * w, w])
                    let (q, v) = (try r.tensor(names[1], shape: [w]), try r.tensor(names[2], shape: [w]))
                    return (weight, Tensor(uncheckedShape: [3 * w], scalars: q.scalars + zeros + v.scalars))
                }
            } else {
                let names = ["\(a).q_proj.weight", "\(a).q_proj.bias", "\(a).k_proj.weight", "\(a).v_proj.weight", "\(a).v_proj.bias"]
                inProj = try Linear(r, packed: names[0], in: w, out: 3 * w, consumes: names) { () throws(ModelLoadError) in
                    let (q, k, v) = (try r.tensor(names[0], shape: [w, w]), try r.tensor(names[2], shape: [w, w]),
                                     try r.tensor(names[3], shape: [w, w]))
                    let (qb, vb) = (try r.tensor(names[1], shape: [w]), try r.tensor(names[4], shape: [w]))
                    return (Tensor(uncheckedShape: [3 * w, w], scalars: q.scalars + k.scalars + v.scalars),
                            Tensor(uncheckedShape: [3 * w], scalars: qb.scalars + zeros + vb.scalars))
                }
            }
            attention = MultiheadSelfAttention(
                inProj: inProj, outProj: try Linear(r, "\(a).proj", in: w, out: w), heads: c.heads, rotary: rotary,
                contextNorm: c.attentionNorm ? try LayerNorm(r, "\(a).norm", width: w, eps: eps) : nil)
            switch c.mlp {
            case .gelu(let hidden):
                feedforward = .gelu(MLP(fc: try Linear(r, "\(p).mlp.fc1", in: w, out: hidden),
                                        proj: try Linear(r, "\(p).mlp.fc2", in: hidden, out: w), activation: .gelu))
            case .swiGLU(let hidden, let normed):
                feedforward = .swiGLU(try GatedMLP(r, "\(p).mlp", names: .swiGLU, width: w, hidden: hidden, gate: .silu,
                                                   hiddenNorm: normed, eps: eps))
            }
            postNorm = c.postNorm
        }

        private init(norm1: LayerNorm, attention: MultiheadSelfAttention, norm2: LayerNorm, feedforward: Feedforward,
                     postNorm: Bool) {
            (self.norm1, self.attention, self.norm2, self.feedforward, self.postNorm) = (norm1, attention, norm2, feedforward, postNorm)
        }

        func converted(to precision: Precision) throws(TensorError) -> Block {
            let feedforward: Feedforward
            switch self.feedforward {
            case .gelu(let m): feedforward = .gelu(try m.converted(to: precision))
            case .swiGLU(let m): feedforward = .swiGLU(try m.converted(to: precision))
            }
            return Block(norm1: norm1, attention: try attention.converted(to: precision), norm2: norm2,
                         feedforward: feedforward, postNorm: postNorm)
        }

        /// The block in place on `x` [batch, tokens, width].
        func forward(_ x: inout Tensor, workspace ws: inout Workspace) throws(TensorError) {
            if postNorm {
                try attention.forward(x, causal: false, into: &ws.normed, workspace: &ws.attention)
                try norm1.normalize(&ws.normed)
                Self.add(ws.normed, to: &x)
                try mlp(x, into: &ws.normed, accumulate: false, gated: &ws.gated, hidden: &ws.hidden)
                try norm2.normalize(&ws.normed)
                Self.add(ws.normed, to: &x)
            } else {
                try norm1.forward(x, into: &ws.normed)
                try attention.forward(ws.normed, causal: false, into: &x, accumulate: true, workspace: &ws.attention)
                try norm2.forward(x, into: &ws.normed)
                try mlp(ws.normed, into: &x, accumulate: true, gated: &ws.gated, hidden: &ws.hidden)
            }
        }

        /// The block for one token per sequence: `x` [batch, tokens, width] → [batch, 1, width], row b holding token
        /// `rows[b]` of sequence b after the block (every token still serves as a key and value). `kept` is a
        /// workspace for one token per sequence.
        func forward(_ x: Tensor, keeping rows: [Int], workspace ws: inout Workspace,
                     kept: inout Workspace) throws(TensorError) -> Tensor {
            var y = try gatherTokens(x, at: rows)
            if postNorm {
                try attention.forward(x, causal: false, queries: rows, into: &kept.normed, workspace: &ws.attention)
                try norm1.normalize(&kept.normed)
                Self.add(kept.normed, to: &y)
                try mlp(y, into: &kept.normed, accumulate: false, gated: &kept.gated, hidden: &kept.hidden)
                try norm2.normalize(&kept.normed)
                Self.add(kept.normed, to: &y)
            } else {
                try norm1.forward(x, into: &ws.normed)
                try attention.forward(ws.normed, causal: false, queries: rows, into: &y, accumulate: true,
                                      workspace: &ws.attention)
                try norm2.forward(y, into: &kept.normed)
                try mlp(kept.normed, into: &y, accumulate: true, gated: &kept.gated, hidden: &kept.hidden)
            }
            return y
        }

        private func mlp(_ x: Tensor, into out: inout Tensor, accumulate: Bool, gated: inout Tensor,
                         hidden: inout Tensor) throws(TensorError) {
            switch feedforward {
            case .gelu(let m): try m.forward(x, into: &out, accumulate: accumulate, hidden: &gated)
            case .swiGLU(let m): try m.forward(x, into: &out, accumulate: accumulate, gated: &gated, hidden: &hidden)
            }
        }

        /// x += branch, element by element (same shapes).
        private static func add(_ branch: Tensor, to x: inout Tensor) {
            x.scalars.withUnsafeMutableBufferPointer { xp in
                branch.scalars.withUnsafeBufferPointer { bp in
                    for i in 0..<min(xp.count, bp.count) { xp[i] += bp[i] }
                }
            }
        }
    }
}
