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
        let weight = try r.tensor("\(prefix).in_proj_weight", shape: [3 * width, width])
        let bias = try r.tensor("\(prefix).in_proj_bias", shape: [3 * width])
        let fused: Linear
        do throws(TensorError) {
            fused = try Linear(weight: weight, bias: bias, precision: r.precision)
        } catch {
            throw .architecture("\(prefix).in_proj_weight: \(error)", origin: r.origin)
        }
        inProj = fused
        outProj = try Linear(r, "\(prefix).out_proj", in: width, out: width)
        self.heads = heads
    }

    /// `x` [batch, tokens, width] → [batch, tokens, width]. With `causal`, token i attends to tokens 0...i only.
    public func callAsFunction(_ x: Tensor, causal: Bool) throws(TensorError) -> Tensor {
        guard x.rank == 3, x.shape[2] == width else {
            throw .shapeMismatch(operation: "MultiheadSelfAttention", x.shape, [width])
        }
        let (batch, tokens) = (x.shape[0], x.shape[1])
        var out = Tensor(uncheckedZeros: x.shape)
        var qkv = [Float](repeating: 0, count: batch * tokens * 3 * width)
        var context = [Float](repeating: 0, count: batch * tokens * width)
        x.scalars.withUnsafeBufferPointer { xp in
            out.scalars.withUnsafeMutableBufferPointer { op in
                qkv.withUnsafeMutableBufferPointer { qp in
                    context.withUnsafeMutableBufferPointer { cp in
                        apply(xp.baseAddress!, batch: batch, tokens: tokens, causal: causal, qkv: qp.baseAddress!,
                              context: cp.baseAddress!, out: op.baseAddress!, accumulate: false)
                    }
                }
            }
        }
        return out
    }

    /// Attention over `batch × tokens` rows of `width` at `x`, written to `out` (added to it when `accumulate`,
    /// which makes the residual connection free). `qkv` ([rows, 3·width]) and `context` ([rows, width]) are
    /// scratch buffers the caller reuses across layers. `kernel` picks the attention kernel's instruction set (tests
    /// run each against the portable one).
    public func apply(_ x: UnsafePointer<Float>, batch: Int, tokens: Int, causal: Bool, qkv: UnsafeMutablePointer<Float>,
                      context: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>, accumulate: Bool,
                      kernel: GEMMKernel = .auto) {
        let (w, hd, heads) = (width, width / heads, heads)
        inProj.apply(x, rows: batch * tokens, out: qkv)  // one GEMM for all projections
        let scale = 1 / Float(hd).squareRoot()
        let qBase = UnsafePointer(qkv), cBase = context
        parallelFor(batch * heads) { task in
            let (b, h) = (task / heads, task % heads)
            let q = qBase + b * tokens * 3 * w + h * hd
            let done = attentionHead(tokens: tokens, headDim: hd, scale: scale, causal: causal, q: q, k: q + w,
                                     v: q + 2 * w, ld: 3 * w, out: cBase + b * tokens * w + h * hd, ldo: w,
                                     kernel: kernel)
            // The arguments are valid by construction and the token count is bounded when a model is loaded, so
            // the kernel fails only when a few hundred KB of scratch cannot be allocated.
            precondition(done, "attention: out of memory for \(tokens) tokens")
        }
        outProj.apply(context, rows: batch * tokens, out: out, accumulate: accumulate)
    }
}

/// The MLP's non-linearity. OpenAI's CLIP uses QuickGELU; some open_clip and Hugging Face models use GELU.
public enum Activation: String, Sendable {
    case quickGELU = "quick_gelu"
    case gelu = "gelu"

    /// The same function as a GEMM epilogue.
    var output: OutputActivation {
        switch self {
        case .quickGELU: return .quickGELU
        case .gelu: return .gelu
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
        guard x.rank >= 1, x.shape[x.rank - 1] == fc.inFeatures else {
            throw .shapeMismatch(operation: "MLP", x.shape, [fc.inFeatures])
        }
        let rows = x.count / max(fc.inFeatures, 1)
        var shape = x.shape
        shape[shape.count - 1] = proj.outFeatures
        var out = Tensor(uncheckedZeros: shape)
        var hidden = [Float](repeating: 0, count: rows * fc.outFeatures)
        x.scalars.withUnsafeBufferPointer { xp in
            hidden.withUnsafeMutableBufferPointer { hp in
                out.scalars.withUnsafeMutableBufferPointer { op in
                    apply(xp.baseAddress!, rows: rows, hidden: hp.baseAddress!, out: op.baseAddress!, accumulate: false)
                }
            }
        }
        return out
    }

    /// `rows` vectors at `x` through the MLP into `out` (added to it when `accumulate`); `hidden` is scratch of
    /// rows × hidden width.
    public func apply(_ x: UnsafePointer<Float>, rows: Int, hidden: UnsafeMutablePointer<Float>,
                      out: UnsafeMutablePointer<Float>, accumulate: Bool) {
        fc.apply(x, rows: rows, out: hidden, activation: activation.output)
        proj.apply(hidden, rows: rows, out: out, accumulate: accumulate)
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
        guard x.rank == 3, x.shape[2] == attention.width else {
            throw .shapeMismatch(operation: "ResidualAttentionBlock", x.shape, [attention.width])
        }
        var out = x
        var ws = TransformerWorkspace(rows: x.shape[0] * x.shape[1], width: attention.width, hidden: mlp.fc.outFeatures)
        out.scalars.withUnsafeMutableBufferPointer { p in
            apply(p.baseAddress!, batch: x.shape[0], tokens: x.shape[1], causal: causal, workspace: &ws)
        }
        return out
    }

    /// The block in place on `batch × tokens` rows at `x`: x += attn(ln_1(x)); x += mlp(ln_2(x)).
    public func apply(_ x: UnsafeMutablePointer<Float>, batch: Int, tokens: Int, causal: Bool,
                      workspace ws: inout TransformerWorkspace) {
        let rows = batch * tokens, w = attention.width
        ws.normed.withUnsafeMutableBufferPointer { h in
            ws.qkv.withUnsafeMutableBufferPointer { qkv in
                ws.context.withUnsafeMutableBufferPointer { ctx in
                    ws.hidden.withUnsafeMutableBufferPointer { hid in
                        ln1.weight.scalars.withUnsafeBufferPointer { g in
                            ln1.bias.scalars.withUnsafeBufferPointer { b in
                                layerNormRows(x, rows: rows, width: w, weight: g.baseAddress!, bias: b.baseAddress!,
                                              eps: ln1.eps, out: h.baseAddress!)
                            }
                        }
                        attention.apply(h.baseAddress!, batch: batch, tokens: tokens, causal: causal,
                                        qkv: qkv.baseAddress!, context: ctx.baseAddress!, out: x, accumulate: true)
                        ln2.weight.scalars.withUnsafeBufferPointer { g in
                            ln2.bias.scalars.withUnsafeBufferPointer { b in
                                layerNormRows(x, rows: rows, width: w, weight: g.baseAddress!, bias: b.baseAddress!,
                                              eps: ln2.eps, out: h.baseAddress!)
                            }
                        }
                        mlp.apply(h.baseAddress!, rows: rows, hidden: hid.baseAddress!, out: x, accumulate: true)
                    }
                }
            }
        }
    }
}

/// Activation buffers for one forward pass, allocated once and reused by every block of a stack.
public struct TransformerWorkspace {
    var normed: [Float]
    var qkv: [Float]
    var context: [Float]
    var hidden: [Float]

    /// Every buffer is written (LayerNorm, GEMM, attention) before it is read, so none is zero-filled first.
    public init(rows: Int, width: Int, hidden: Int) {
        normed = Self.scratch(rows * width)
        qkv = Self.scratch(rows * 3 * width)
        context = Self.scratch(rows * width)
        self.hidden = Self.scratch(rows * hidden)
    }

    private static func scratch(_ count: Int) -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { _, initialized in initialized = count }
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

    /// `x` [batch, tokens, width] → [batch, tokens, width], computed in one buffer with shared scratch space.
    public func callAsFunction(_ x: Tensor, causal: Bool) throws(TensorError) -> Tensor {
        guard let first = blocks.first else { return x }
        guard x.rank == 3, x.shape[2] == first.attention.width else {
            throw .shapeMismatch(operation: "Transformer", x.shape, [first.attention.width])
        }
        var out = x
        let hidden = blocks.map { $0.mlp.fc.outFeatures }.max() ?? 0
        var ws = TransformerWorkspace(rows: x.shape[0] * x.shape[1], width: first.attention.width, hidden: hidden)
        out.scalars.withUnsafeMutableBufferPointer { p in
            for block in blocks {
                block.apply(p.baseAddress!, batch: x.shape[0], tokens: x.shape[1], causal: causal, workspace: &ws)
            }
        }
        return out
    }
}
