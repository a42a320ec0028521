import CLIPTensor

/// Multi-head self-attention with PyTorch's fused projection layout (`nn.MultiheadAttention`):
/// `in_proj_weight` [3·width, width] holding q, k, v stacked, `in_proj_bias` [3·width], `out_proj` [width, width].
public struct MultiheadSelfAttention: Sendable {
    public let inProj: Linear
    public let outProj: Linear
    public let heads: Int

    public var width: Int { outProj.outFeatures }

    public init(_ r: ParameterReader, _ prefix: String, width: Int, heads: Int) throws(ModelLoadError) {
        guard heads > 0, width % heads == 0 else {
            throw .architecture("\(prefix): width \(width) is not divisible into \(heads) heads", origin: r.origin)
        }
        inProj = Linear(weight: try r.tensor("\(prefix).in_proj_weight", shape: [3 * width, width]),
                        bias: try r.tensor("\(prefix).in_proj_bias", shape: [3 * width]))
        outProj = try Linear(r, "\(prefix).out_proj", in: width, out: width)
        self.heads = heads
    }

    /// `x` [batch, tokens, width] → [batch, tokens, width]. With `causal`, token i attends to tokens 0...i only.
    public func callAsFunction(_ x: Tensor, causal: Bool) throws(TensorError) -> Tensor {
        guard x.rank == 3, x.shape[2] == width else {
            throw .shapeMismatch(operation: "MultiheadSelfAttention", x.shape, [width])
        }
        let (batch, tokens) = (x.shape[0], x.shape[1])
        let qkv = try inProj(x)  // [batch, tokens, 3·width]: one GEMM for all projections
        var context = Tensor(uncheckedZeros: x.shape)
        let (w, hd, heads) = (width, width / heads, heads)
        let scale = 1 / Float(hd).squareRoot()
        qkv.scalars.withUnsafeBufferPointer { qp in
            context.scalars.withUnsafeMutableBufferPointer { cp in
                let qBase = qp.baseAddress!, cBase = cp.baseAddress!
                parallelFor(batch * heads) { task in
                    let (b, h) = (task / heads, task % heads)
                    let q = qBase + b * tokens * 3 * w + h * hd
                    var scores = [Float](repeating: 0, count: tokens * tokens)
                    scores.withUnsafeMutableBufferPointer { sp in
                        let s = sp.baseAddress!
                        // scores = (q · kᵀ) / sqrt(head dim), read in place from the fused qkv rows.
                        sgemm(transA: false, transB: true, m: tokens, n: tokens, k: hd, alpha: scale,
                              a: q, lda: 3 * w, b: q + w, ldb: 3 * w, c: s, ldc: tokens, parallel: false)
                        for i in 0..<tokens {
                            let row = s + i * tokens
                            let valid = causal ? i + 1 : tokens
                            softmaxInPlace(row, count: valid)
                            for j in valid..<tokens { row[j] = 0 }
                        }
                        sgemm(transA: false, transB: false, m: tokens, n: hd, k: tokens, a: s, lda: tokens,
                              b: q + 2 * w, ldb: 3 * w, c: cBase + b * tokens * w + h * hd, ldc: w, parallel: false)
                    }
                }
            }
        }
        return try outProj(context)
    }
}

/// The MLP's non-linearity. OpenAI's CLIP uses QuickGELU; some open_clip and Hugging Face models use GELU.
public enum Activation: String, Sendable {
    case quickGELU = "quick_gelu"
    case gelu = "gelu"

    func apply(_ x: UnsafeMutablePointer<Float>, count: Int) {
        switch self {
        case .quickGELU: quickGELUInPlace(x, count: count)
        case .gelu: geluInPlace(x, count: count)
        }
    }
}

/// Two-layer MLP `c_fc` → activation → `c_proj`; `c_fc.weight` [hidden, width], `c_proj.weight` [width, hidden].
public struct MLP: Sendable {
    public let fc: Linear
    public let proj: Linear
    public let activation: Activation

    public init(_ r: ParameterReader, _ prefix: String, width: Int, activation: Activation) throws(ModelLoadError) {
        // The hidden width is read from the weights (4·width in CLIP; other ratios exist in open_clip).
        let hidden = r.shape(of: "\(prefix).c_fc.weight").flatMap { $0.count == 2 ? $0[0] : nil } ?? 4 * width
        fc = try Linear(r, "\(prefix).c_fc", in: width, out: hidden)
        proj = try Linear(r, "\(prefix).c_proj", in: hidden, out: width)
        self.activation = activation
    }

    /// `x` [.., width] → [.., width].
    public func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        var h = try fc(x)
        h.scalars.withUnsafeMutableBufferPointer { p in activation.apply(p.baseAddress!, count: p.count) }
        return try proj(h)
    }
}

/// Pre-norm transformer block: x + attn(ln_1(x)), then + mlp(ln_2(x)).
public struct ResidualAttentionBlock: Sendable {
    public let ln1: LayerNorm
    public let attention: MultiheadSelfAttention
    public let ln2: LayerNorm
    public let mlp: MLP

    public init(_ r: ParameterReader, _ prefix: String, width: Int, heads: Int, activation: Activation,
                eps: Float) throws(ModelLoadError) {
        ln1 = try LayerNorm(r, "\(prefix).ln_1", width: width, eps: eps)
        attention = try MultiheadSelfAttention(r, "\(prefix).attn", width: width, heads: heads)
        ln2 = try LayerNorm(r, "\(prefix).ln_2", width: width, eps: eps)
        mlp = try MLP(r, "\(prefix).mlp", width: width, activation: activation)
    }

    /// `x` [batch, tokens, width] → [batch, tokens, width].
    public func callAsFunction(_ x: Tensor, causal: Bool) throws(TensorError) -> Tensor {
        let h = try add(x, attention(ln1(x), causal: causal))
        return try add(h, mlp(ln2(h)))
    }
}

/// A stack of residual attention blocks named `<prefix>.resblocks.<i>`.
public struct Transformer: Sendable {
    public let blocks: [ResidualAttentionBlock]

    public init(_ r: ParameterReader, _ prefix: String, width: Int, layers: Int, heads: Int,
                activation: Activation, eps: Float) throws(ModelLoadError) {
        var blocks: [ResidualAttentionBlock] = []
        for i in 0..<layers {
            blocks.append(try ResidualAttentionBlock(r, "\(prefix).resblocks.\(i)", width: width, heads: heads,
                                                     activation: activation, eps: eps))
        }
        self.blocks = blocks
    }

    /// `x` [batch, tokens, width] → [batch, tokens, width].
    public func callAsFunction(_ x: Tensor, causal: Bool) throws(TensorError) -> Tensor {
        var x = x
        for block in blocks { x = try block(x, causal: causal) }
        return x
    }
}
