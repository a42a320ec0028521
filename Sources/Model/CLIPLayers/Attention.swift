#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLIPTensor

/// Multi-head self-attention with PyTorch's fused projection layout (`nn.MultiheadAttention`):
/// `in_proj_weight` [3·width, width] holding q, k, v stacked, `in_proj_bias` [3·width], `out_proj` [width, width].
package struct MultiheadSelfAttention: Sendable {
    /// The fused q, k, v projection: `[.., width]` → `[.., 3·width]`.
    package let inProj: Linear
    /// The output projection: `[.., width]` → `[.., width]`.
    package let outProj: Linear
    /// Heads; each attends over `width / heads` channels.
    package let heads: Int
    /// EVA02's rotary position embedding, applied to the patch tokens' queries and keys after the projection.
    package let rotary: RotaryEmbedding?
    /// EVA02's sub-LN (timm's `scale_attn_inner`): a LayerNorm over the heads' context before the output projection.
    package let contextNorm: LayerNorm?

    /// Token width.
    package var width: Int { outProj.outFeatures }

    /// Reads `<prefix>.in_proj_weight` [3·width, width], `<prefix>.in_proj_bias` [3·width] and `<prefix>.out_proj.*`;
    /// `heads` must divide `width`.
    package init(_ r: ParameterReader, _ prefix: String, width: Int, heads: Int) throws(ModelLoadError) {
        guard heads > 0, width % heads == 0 else {
            throw .architecture("\(prefix): width \(width) is not divisible into \(heads) heads", origin: r.origin)
        }
        inProj = try Linear(r, packed: "\(prefix).in_proj_weight", in: width, out: 3 * width,
                            consumes: ["\(prefix).in_proj_weight", "\(prefix).in_proj_bias"]) { () throws(ModelLoadError) in
            (try r.tensor("\(prefix).in_proj_weight", shape: [3 * width, width]),
             try r.tensor("\(prefix).in_proj_bias", shape: [3 * width]))
        }
        outProj = try Linear(r, "\(prefix).out_proj", in: width, out: width)
        self.heads = heads
        (rotary, contextNorm) = (nil, nil)
    }

    /// The layer from its projections; `inProj` yields q, k, v side by side, each `outProj.inFeatures` wide.
    package init(inProj: Linear, outProj: Linear, heads: Int, rotary: RotaryEmbedding? = nil, contextNorm: LayerNorm? = nil) {
        (self.inProj, self.outProj, self.heads, self.rotary, self.contextNorm) = (inProj, outProj, heads, rotary, contextNorm)
    }

    /// Scratch one attention pass fills: the fused projections [batch, tokens, 3·width] and the heads' context
    /// [batch, tokens, width] (the whole-sequence passes only; listed keys keep a context of their queries' size).
    /// Every element is written before it is read.
    package struct Workspace {
        var qkv: Tensor
        var context: Tensor

        /// Scratch for `batch` sequences of `tokens` tokens of `width` channels.
        package init(batch: Int, tokens: Int, width: Int) {
            qkv = Tensor(uninitialized: [batch, tokens, 3 * width])
            context = Tensor(uninitialized: [batch, tokens, width])
        }
    }

    /// `x` [batch, tokens, width] → `out` [batch, tokens, width] (added to it when `accumulate`, which makes the
    /// residual connection free). With `causal`, token i attends to tokens 0...i only. `keyMask` [batch·tokens],
    /// when given, hides the keys marked false from every query of their sequence (CoCa's padding). `kernel` picks
    /// the attention kernel's instruction set (tests run each against the portable one).
    package func forward(_ x: Tensor, causal: Bool, keyMask: [Bool]? = nil, into out: inout Tensor,
                        accumulate: Bool = false, workspace ws: inout Workspace,
                        kernel: GEMMKernel = .auto) throws(TensorError) {
        guard x.rank == 3, x.shape[2] == width, out.count == x.count,
              ws.qkv.count == 3 * x.count, ws.context.count == x.count else {
            throw .shapeMismatch(operation: "MultiheadSelfAttention", x.shape, [width])
        }
        let (batch, tokens) = (x.shape[0], x.shape[1])
        if let keyMask, keyMask.count != batch * tokens {
            throw .shapeMismatch(operation: "MultiheadSelfAttention key mask", [keyMask.count], [batch, tokens])
        }
        try inProj.forward(x, into: &ws.qkv)  // one GEMM for all three projections
        if let rotary { try rotary.apply(to: &ws.qkv, width: width) }
        let (w, hd, heads) = (width, width / heads, heads)
        let scale = 1 / Float(hd).squareRoot()
        if let keyMask {
            // The fused kernels know only the causal mask; a key mask forms each head's probabilities explicitly,
            // as the training path does (CoCa's text tower, 77 tokens, is the one user).
            ws.qkv.scalars.withUnsafeBufferPointer { qp in
                ws.context.scalars.withUnsafeMutableBufferPointer { cp in
                    keyMask.withUnsafeBufferPointer { mp in
                        let (qBase, cBase, mBase) = (qp.baseAddress!, cp.baseAddress!, mp.baseAddress!)
                        parallelFor(batch * heads) { task in
                            let (b, h) = (task / heads, task % heads)
                            var p = [Float](repeating: 0, count: tokens * tokens)
                            p.withUnsafeMutableBufferPointer { pp in
                                explicitAttentionHead(tokens: tokens, headDim: hd, scale: scale, causal: causal,
                                                      keys: mBase + b * tokens, q: qBase + b * tokens * 3 * w + h * hd,
                                                      ld: 3 * w, width: w, probabilities: pp.baseAddress!,
                                                      out: cBase + b * tokens * w + h * hd, ldo: w)
                            }
                        }
                    }
                }
            }
            if let contextNorm { try contextNorm.normalize(&ws.context) }
            try outProj.forward(ws.context, into: &out, accumulate: accumulate)
            return
        }
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
        if let contextNorm { try contextNorm.normalize(&ws.context) }
        try outProj.forward(ws.context, into: &out, accumulate: accumulate)
    }

    /// Attention for one query per sequence: `x` [batch, tokens, width] gives every key and value, token
    /// `queries[b]` of sequence b asks, and `out` [batch, 1, width] gets its result (added to it when `accumulate`).
    /// Masks as `forward`. A tower's last block needs only the token its pooling reads: there the other queries, the
    /// output projection and the MLP of every other token would be computed and thrown away (1/16 of ViT-B/32).
    package func forward(_ x: Tensor, causal: Bool, keyMask: [Bool]? = nil, queries: [Int], into out: inout Tensor,
                        accumulate: Bool = false, workspace ws: inout Workspace) throws(TensorError) {
        guard x.rank == 3, x.shape[2] == width, queries.count == x.shape[0], out.count == queries.count * width,
              ws.qkv.count == 3 * x.count else {
            throw .shapeMismatch(operation: "MultiheadSelfAttention (one query per sequence)", x.shape, [queries.count, width])
        }
        let (batch, tokens) = (x.shape[0], x.shape[1])
        guard queries.allSatisfy({ $0 >= 0 && $0 < tokens }) else {
            throw .shapeMismatch(operation: "MultiheadSelfAttention query position", [queries.min() ?? 0, queries.max() ?? 0], [tokens])
        }
        if let keyMask, keyMask.count != batch * tokens {
            throw .shapeMismatch(operation: "MultiheadSelfAttention key mask", [keyMask.count], [batch, tokens])
        }
        try inProj.forward(x, into: &ws.qkv)
        if let rotary { try rotary.apply(to: &ws.qkv, width: width) }
        let rows = queries.enumerated().map { $0 * tokens + $1 }
        try attendListed(ws.qkv, queries: rows,
                         keys: KeyRows(batch: batch, tokens: tokens, causal: causal, keyMask: keyMask, queries: queries),
                         into: &out, accumulate: accumulate)
    }

    /// Attention over listed keys: `x` [rows, width] gives every query, key and value; query i is row `queries[i]`
    /// and attends to the rows `keys` lists for it (a prefix tree's ancestors, for one); `out` [queries, width] gets
    /// the results (added to it when `accumulate`). Rotary embedding needs image positions and is refused here.
    package func forward(_ x: Tensor, queries: [Int], keys: KeyRows, into out: inout Tensor, accumulate: Bool = false,
                        workspace ws: inout Workspace) throws(TensorError) {
        let rows = x.count / max(width, 1)
        guard x.rank >= 1, x.shape[x.rank - 1] == width, rotary == nil, keys.count == queries.count,
              out.count == queries.count * width, queries.allSatisfy({ $0 >= 0 && $0 < rows }), keys.isWithin(rows: rows) else {
            throw .shapeMismatch(operation: "MultiheadSelfAttention (listed keys)", x.shape, [queries.count, width])
        }
        if ws.qkv.count != 3 * x.count { ws.qkv = Tensor(uninitialized: [rows, 3 * width]) }
        try inProj.forward(x, into: &ws.qkv)
        try attendListed(ws.qkv, queries: queries, keys: keys, into: &out, accumulate: accumulate)
    }

    /// The heads of each listed query over its listed keys, from the fused projections `qkv` [rows, 3·width], then
    /// the output projection into `out` [queries, width]. Plain loops: the uses are a tower's last-block tokens and
    /// prefix trees of short texts, where the projections around them are the cost. A query with no key gets zeros.
    private func attendListed(_ qkv: Tensor, queries: [Int], keys: KeyRows, into out: inout Tensor,
                              accumulate: Bool) throws(TensorError) {
        let (w, hd, heads) = (width, width / heads, heads)
        let scale = 1 / Float(hd).squareRoot()
        var context = Tensor(uncheckedZeros: [queries.count, w])
        let longest = keys.longest
        qkv.scalars.withUnsafeBufferPointer { qp in
            context.scalars.withUnsafeMutableBufferPointer { cp in
                keys.offsets.withUnsafeBufferPointer { op in
                    keys.rows.withUnsafeBufferPointer { kp in
                        let (base, cBase, offsets, keyRows) = (qp.baseAddress!, cp.baseAddress!, op.baseAddress!, kp.baseAddress!)
                        let bounds = chunkBounds(total: queries.count, parts: availableCores * 4, granule: 1)
                        parallelFor(bounds.count - 1) { part in
                            withUnsafeTemporaryAllocation(of: Float.self, capacity: max(longest, 1)) { sp in
                                let s = sp.baseAddress!
                                for i in bounds[part]..<bounds[part + 1] {
                                    let listed = offsets[i]..<offsets[i + 1]
                                    for h in 0..<heads {
                                        let q = base + queries[i] * 3 * w + h * hd
                                        var largest = -Float.infinity
                                        for (j, r) in listed.enumerated() {
                                            let k = base + keyRows[r] * 3 * w + w + h * hd
                                            s[j] = dotProduct(q, k, count: hd) * scale
                                            largest = max(largest, s[j])
                                        }
                                        var total: Float = 0
                                        for j in 0..<listed.count {
                                            s[j] = expf(s[j] - largest)
                                            total += s[j]
                                        }
                                        let inverse = total > 0 ? 1 / total : 0
                                        let o = cBase + i * w + h * hd
                                        for (j, r) in listed.enumerated() {
                                            addScaled(base + keyRows[r] * 3 * w + 2 * w + h * hd, s[j] * inverse,
                                                      to: o, count: hd)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        if let contextNorm { try contextNorm.normalize(&context) }
        try outProj.forward(context, into: &out, accumulate: accumulate)
    }

    /// `x` [batch, tokens, width] → [batch, tokens, width].
    package func callAsFunction(_ x: Tensor, causal: Bool) throws(TensorError) -> Tensor {
        guard x.rank == 3 else { throw .shapeMismatch(operation: "MultiheadSelfAttention", x.shape, [width]) }
        var out = Tensor(uninitialized: x.shape)
        var ws = Workspace(batch: x.shape[0], tokens: x.shape[1], width: width)
        try forward(x, causal: causal, into: &out, workspace: &ws)
        return out
    }

    /// The same layer computing its projections in `precision`.
    package func converted(to precision: Precision) throws(TensorError) -> MultiheadSelfAttention {
        MultiheadSelfAttention(inProj: try inProj.converted(to: precision), outProj: try outProj.converted(to: precision),
                               heads: heads, rotary: rotary, contextNorm: contextNorm)
    }
}

extension MultiheadSelfAttention {
    /// What the backward pass needs from a training forward: the input, the fused projections, every head's
    /// attention probabilities [batch, heads, tokens, tokens] and the heads' context [batch, tokens, width].
    package struct Trace: Sendable {
        var input: Tensor
        var qkv: Tensor
        var probabilities: [Float]
        var context: Tensor
    }

    /// The forward pass for training: the same projections as `forward`, but each head's softmax(scale·Q·Kᵀ) is
    /// formed explicitly and kept, because its backward needs it (`forward`'s fused kernel never materialises it).
    /// `x` [batch, tokens, width] → [batch, tokens, width] added into `out`.
    package func forward(_ x: Tensor, causal: Bool, addingTo out: inout Tensor) throws(TensorError) -> Trace {
        guard x.rank == 3, x.shape[2] == width, out.count == x.count else {
            throw .shapeMismatch(operation: "MultiheadSelfAttention", x.shape, [width])
        }
        // EVA02's attention is inference-only here: its backward would have to undo the rotation and the sub-LN.
        guard rotary == nil, contextNorm == nil else {
            throw .shapeMismatch(operation: "MultiheadSelfAttention training with rotary embedding or context norm", x.shape, [])
        }
        let (batch, t, w, hd) = (x.shape[0], x.shape[1], width, width / heads)
        var qkv = Tensor(uninitialized: [batch, t, 3 * w])
        try inProj.forward(x, into: &qkv)
        var probs = [Float](repeating: 0, count: batch * heads * t * t)
        var context = Tensor(uninitialized: x.shape)
        let scale = 1 / Float(hd).squareRoot()
        qkv.scalars.withUnsafeBufferPointer { qp in
            probs.withUnsafeMutableBufferPointer { pp in
                context.scalars.withUnsafeMutableBufferPointer { cp in
                    let (qBase, pBase, cBase) = (qp.baseAddress!, pp.baseAddress!, cp.baseAddress!)
                    parallelFor(batch * heads) { task in
                        let (b, h) = (task / heads, task % heads)
                        explicitAttentionHead(tokens: t, headDim: hd, scale: scale, causal: causal, keys: nil,
                                              q: qBase + b * t * 3 * w + h * hd, ld: 3 * w, width: w,
                                              probabilities: pBase + task * t * t, out: cBase + b * t * w + h * hd,
                                              ldo: w)
                    }
                }
            }
        }
        try outProj.forward(context, into: &out, accumulate: true)
        return Trace(input: x, qkv: qkv, probabilities: probs, context: context)
    }

    /// The backward pass of `forward(_:causal:addingTo:)`: `dy` [batch, tokens, width] the gradient of the output.
    /// Adds the projections' gradients under `prefix` (`in_proj_weight`, `in_proj_bias`, `out_proj.*`); `inProjWeight`
    /// [3·width, width] and `outProjWeight` [width, width] are the values the layer was built from. Returns dx.
    package func backward(_ trace: Trace, outputGradient dy: Tensor, prefix: String, inProjWeight: Tensor,
                         outProjWeight: Tensor, into gradients: inout Gradients) throws(TensorError) -> Tensor {
        let x = trace.input
        let (batch, t, w, hd) = (x.shape[0], x.shape[1], width, width / heads)
        guard let dContext = try outProj.backward(
            input: trace.context, outputGradient: dy, weight: outProjWeight,
            names: ("\(prefix).out_proj.weight", "\(prefix).out_proj.bias"), into: &gradients) else { return dy }
        let scale = 1 / Float(hd).squareRoot()
        var dqkv = Tensor(uninitialized: trace.qkv.shape)
        trace.qkv.scalars.withUnsafeBufferPointer { qp in
            trace.probabilities.withUnsafeBufferPointer { pp in
                dContext.scalars.withUnsafeBufferPointer { dop in
                    dqkv.scalars.withUnsafeMutableBufferPointer { dp in
                        let (qBase, pBase, doBase, dBase) = (qp.baseAddress!, pp.baseAddress!, dop.baseAddress!, dp.baseAddress!)
                        parallelFor(batch * heads) { task in
                            let (b, h) = (task / heads, task % heads)
                            let off = b * t * 3 * w + h * hd
                            attentionHeadBackward(tokens: t, headDim: hd, scale: scale, q: qBase + off,
                                                  probabilities: pBase + task * t * t,
                                                  dOut: doBase + b * t * w + h * hd, ldo: w, dq: dBase + off, ld: 3 * w,
                                                  width: w)
                        }
                    }
                }
            }
        }
        return try inProj.backward(input: x, outputGradient: dqkv, weight: inProjWeight,
                                   names: ("\(prefix).in_proj_weight", "\(prefix).in_proj_bias"),
                                   into: &gradients) ?? dqkv
    }
}

/// a · b over `count` floats, eight lanes at a time (a float sum is not reordered by the compiler on its own).
@inline(__always)
private func dotProduct(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
    var lanes = SIMD8<Float>(), d = 0
    while d + 8 <= count {
        lanes += UnsafeRawPointer(a + d).loadUnaligned(as: SIMD8<Float>.self)
            * UnsafeRawPointer(b + d).loadUnaligned(as: SIMD8<Float>.self)
        d += 8
    }
    var sum = lanes.sum()
    while d < count { sum += a[d] * b[d]; d += 1 }
    return sum
}

/// y += p · x over `count` floats.
@inline(__always)
private func addScaled(_ x: UnsafePointer<Float>, _ p: Float, to y: UnsafeMutablePointer<Float>, count: Int) {
    var d = 0
    while d + 8 <= count {
        let sum = UnsafeRawPointer(y + d).loadUnaligned(as: SIMD8<Float>.self)
            + p * UnsafeRawPointer(x + d).loadUnaligned(as: SIMD8<Float>.self)
        UnsafeMutableRawPointer(y + d).storeBytes(of: sum, as: SIMD8<Float>.self)
        d += 8
    }
    while d < count { y[d] += p * x[d]; d += 1 }
}

/// One head of attention with its probabilities formed explicitly: p [tokens, tokens] = softmax(scale·Q·Kᵀ) over
/// the keys each query may see (0...i with `causal`; only those marked true in `keys` [tokens] when given; a query
/// that sees none gets zeros), then out = p·V. Q, K and V are read in the fused [tokens, 3·width] layout at `q`
/// (+`width` for K, +2·`width` for V, rows `ld` apart); row i of the result goes to out + i·ldo.
private func explicitAttentionHead(tokens t: Int, headDim hd: Int, scale: Float, causal: Bool,
                                   keys: UnsafePointer<Bool>?, q: UnsafePointer<Float>, ld: Int, width w: Int,
                                   probabilities p: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>,
                                   ldo: Int) {
    sgemm(transA: false, transB: true, m: t, n: t, k: hd, alpha: scale, a: q, lda: ld, b: q + w, ldb: ld, c: p,
          ldc: t, parallel: false)
    for i in 0..<t {
        let visible = causal ? i + 1 : t, row = p + i * t
        if let keys {
            var largest = -Float.infinity
            for j in 0..<visible where keys[j] { largest = max(largest, row[j]) }
            var total: Float = 0
            for j in 0..<visible {
                row[j] = keys[j] ? expf(row[j] - largest) : 0
                total += row[j]
            }
            let inverse = total > 0 ? 1 / total : 0
            for j in 0..<visible { row[j] *= inverse }
        } else {
            softmaxInPlace(row, count: visible)
        }
        for j in visible..<t { row[j] = 0 }
    }
    sgemm(transA: false, transB: false, m: t, n: hd, k: t, a: p, lda: t, b: q + 2 * w, ldb: ld, c: out, ldc: ldo,
          parallel: false)
}

/// One head's backward: with P the probabilities and dO the gradient of its output, dV = Pᵀ·dO, dP = dO·Vᵀ,
/// dS = P ⊙ (dP − rowsum(dP ⊙ P))·scale (zero where masked, since P is), dQ = dS·K, dK = dSᵀ·Q. Q, K, V and their
/// gradients are read and written in the fused [tokens, 3·width] layout at `q`/`dq` (+width for K, +2·width for V).
private func attentionHeadBackward(tokens t: Int, headDim hd: Int, scale: Float, q: UnsafePointer<Float>,
                                   probabilities p: UnsafePointer<Float>, dOut: UnsafePointer<Float>, ldo: Int,
                                   dq: UnsafeMutablePointer<Float>, ld: Int, width w: Int) {
    var ds = [Float](repeating: 0, count: t * t)
    ds.withUnsafeMutableBufferPointer { dsp in
        let d = dsp.baseAddress!
        sgemm(transA: true, transB: false, m: t, n: hd, k: t, a: p, lda: t, b: dOut, ldb: ldo,
              c: dq + 2 * w, ldc: ld, parallel: false)  // dV
        sgemm(transA: false, transB: true, m: t, n: t, k: hd, a: dOut, lda: ldo, b: q + 2 * w, ldb: ld,
              c: d, ldc: t, parallel: false)  // dP
        for i in 0..<t {
            var dot: Float = 0
            for j in 0..<t { dot += d[i * t + j] * p[i * t + j] }
            for j in 0..<t { d[i * t + j] = p[i * t + j] * (d[i * t + j] - dot) * scale }
        }
        sgemm(transA: false, transB: false, m: t, n: hd, k: t, a: d, lda: t, b: q + w, ldb: ld,
              c: dq, ldc: ld, parallel: false)  // dQ
        sgemm(transA: true, transB: false, m: t, n: hd, k: t, a: d, lda: t, b: q, ldb: ld,
              c: dq + w, ldc: ld, parallel: false)  // dK
    }
}
