import CLIPTensor

/// Multi-head self-attention with PyTorch's fused projection layout (`nn.MultiheadAttention`):
/// `in_proj_weight` [3·width, width] holding q, k, v stacked, `in_proj_bias` [3·width], `out_proj` [width, width].
public struct MultiheadSelfAttention: Sendable {
    /// The fused q, k, v projection: `[.., width]` → `[.., 3·width]`.
    public let inProj: Linear
    /// The output projection: `[.., width]` → `[.., width]`.
    public let outProj: Linear
    /// Heads; each attends over `width / heads` channels.
    public let heads: Int

    /// Token width.
    public var width: Int { outProj.outFeatures }

    /// Reads `<prefix>.in_proj_weight` [3·width, width], `<prefix>.in_proj_bias` [3·width] and `<prefix>.out_proj.*`;
    /// `heads` must divide `width`.
    public init(_ r: ParameterReader, _ prefix: String, width: Int, heads: Int) throws(ModelLoadError) {
        guard heads > 0, width % heads == 0 else {
            throw .architecture("\(prefix): width \(width) is not divisible into \(heads) heads", origin: r.origin)
        }
        let weight = try r.tensor("\(prefix).in_proj_weight", shape: [3 * width, width])
        let bias = try r.tensor("\(prefix).in_proj_bias", shape: [3 * width])
        do throws(TensorError) {
            inProj = try Linear(weight: weight, bias: bias)
        } catch {
            throw .architecture("\(prefix).in_proj_weight: \(error)", origin: r.origin)
        }
        outProj = try Linear(r, "\(prefix).out_proj", in: width, out: width)
        self.heads = heads
    }

    init(inProj: Linear, outProj: Linear, heads: Int) {
        (self.inProj, self.outProj, self.heads) = (inProj, outProj, heads)
    }

    /// Scratch one attention pass fills: the fused projections [batch, tokens, 3·width] and the heads' context
    /// [batch, tokens, width]. Every element is written before it is read.
    public struct Workspace {
        var qkv: Tensor
        var context: Tensor

        /// Scratch for `batch` sequences of `tokens` tokens of `width` channels.
        public init(batch: Int, tokens: Int, width: Int) {
            qkv = Tensor(uninitialized: [batch, tokens, 3 * width])
            context = Tensor(uninitialized: [batch, tokens, width])
        }
    }

    /// `x` [batch, tokens, width] → `out` [batch, tokens, width] (added to it when `accumulate`, which makes the
    /// residual connection free). With `causal`, token i attends to tokens 0...i only. `kernel` picks the attention
    /// kernel's instruction set (tests run each against the portable one).
    public func forward(_ x: Tensor, causal: Bool, into out: inout Tensor, accumulate: Bool = false,
                        workspace ws: inout Workspace, kernel: GEMMKernel = .auto) throws(TensorError) {
        guard x.rank == 3, x.shape[2] == width, out.count == x.count,
              ws.qkv.count == 3 * x.count, ws.context.count == x.count else {
            throw .shapeMismatch(operation: "MultiheadSelfAttention", x.shape, [width])
        }
        let (batch, tokens) = (x.shape[0], x.shape[1])
        try inProj.forward(x, into: &ws.qkv)  // one GEMM for all three projections
        let (w, hd, heads) = (width, width / heads, heads)
        let scale = 1 / Float(hd).squareRoot()
        // Each task records whether its kernel found the scratch it needs (a few hundred KB; tokens are bounded when
        // a model is loaded), so an allocation failure is an error rather than a crash.
        var done = [Bool](repeating: false, count: batch * heads)
        ws.qkv.scalars.withUnsafeBufferPointer { qp in
            ws.context.scalars.withUnsafeMutableBufferPointer { cp in
                done.withUnsafeMutableBufferPointer { dp in
                    let qBase = qp.baseAddress!, cBase = cp.baseAddress!, flags = dp.baseAddress!
                    parallelFor(batch * heads) { task in
                        let (b, h) = (task / heads, task % heads)
                        let q = qBase + b * tokens * 3 * w + h * hd
                        flags[task] = attentionHead(tokens: tokens, headDim: hd, scale: scale, causal: causal, q: q,
                                                    k: q + w, v: q + 2 * w, ld: 3 * w,
                                                    out: cBase + b * tokens * w + h * hd, ldo: w, kernel: kernel)
                    }
                }
            }
        }
        guard done.allSatisfy({ $0 }) else { throw .outOfMemory("attention scratch for \(tokens) tokens") }
        try outProj.forward(ws.context, into: &out, accumulate: accumulate)
    }

    /// `x` [batch, tokens, width] → [batch, tokens, width].
    public func callAsFunction(_ x: Tensor, causal: Bool) throws(TensorError) -> Tensor {
        guard x.rank == 3 else { throw .shapeMismatch(operation: "MultiheadSelfAttention", x.shape, [width]) }
        var out = Tensor(uninitialized: x.shape)
        var ws = Workspace(batch: x.shape[0], tokens: x.shape[1], width: width)
        try forward(x, causal: causal, into: &out, workspace: &ws)
        return out
    }

    /// The same layer computing its projections in `precision`.
    public func converted(to precision: Precision) throws(TensorError) -> MultiheadSelfAttention {
        MultiheadSelfAttention(inProj: try inProj.converted(to: precision), outProj: try outProj.converted(to: precision),
                               heads: heads)
    }
}
