#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLIPTensor

/// Multi-head attention pooling (SigLIP's "MAP head"): one learned probe token attends over all tokens through a
/// `nn.MultiheadAttention` (`attn.in_proj_weight` [3·width, width] holding q, k, v stacked, `attn.out_proj`), then
/// y = a + mlp(norm(a)) with `a` the attention's output. Reads `<prefix>.probe` [1, 1, width], `<prefix>.attn.*`,
/// `<prefix>.norm.*` and `<prefix>.mlp.c_fc|c_proj.*`.
package struct AttentionPooling: Sendable {
    /// The probe's query, probe·W_qᵀ + b_q: the same for every image, so computed once at load. `[width]`
    let query: Tensor
    /// The key and value projections (rows width..<3·width of `in_proj`): `[.., width]` → `[.., 2·width]`.
    let keyValue: Linear
    let outProj: Linear
    let norm: LayerNorm
    let mlp: MLP
    /// Attention heads; each attends over `width / heads` channels.
    package let heads: Int

    /// Token width.
    package var width: Int { outProj.outFeatures }

    /// Reads the pooling layer's tensors under `prefix`; `heads` must divide `width`.
    package init(_ r: ParameterReader, _ prefix: String, width: Int, heads: Int, activation: Activation,
                eps: Float) throws(ModelLoadError) {
        guard heads > 0, width % heads == 0 else {
            throw .architecture("\(prefix): width \(width) is not divisible into \(heads) heads", origin: r.origin)
        }
        let probe = try r.tensor("\(prefix).probe", shape: [1, 1, width])
        let weight = try r.tensor("\(prefix).attn.in_proj_weight", shape: [3 * width, width])
        let bias = try r.tensor("\(prefix).attn.in_proj_bias", shape: [3 * width])
        query = projectedQuery(probe.scalars, weight: weight.scalars, bias: bias.scalars, width: width)
        do throws(TensorError) {
            keyValue = try Linear(
                weight: Tensor(uncheckedShape: [2 * width, width], scalars: Array(weight.scalars[(width * width)...])),
                bias: Tensor(uncheckedShape: [2 * width], scalars: Array(bias.scalars[width...])))
        } catch {
            throw .architecture("\(prefix).attn.in_proj_weight: \(error)", origin: r.origin)
        }
        outProj = try Linear(r, "\(prefix).attn.out_proj", in: width, out: width)
        norm = try LayerNorm(r, "\(prefix).norm", width: width, eps: eps)
        mlp = try MLP(r, "\(prefix).mlp", width: width, activation: activation)
        self.heads = heads
    }

    private init(query: Tensor, keyValue: Linear, outProj: Linear, norm: LayerNorm, mlp: MLP, heads: Int) {
        (self.query, self.keyValue, self.outProj, self.norm, self.mlp, self.heads) =
            (query, keyValue, outProj, norm, mlp, heads)
    }

    /// The same layer computing its products in `precision` (the probe's query, the attention and the LayerNorm
    /// stay fp32).
    package func converted(to precision: Precision) throws(TensorError) -> AttentionPooling {
        AttentionPooling(query: query, keyValue: try keyValue.converted(to: precision),
                         outProj: try outProj.converted(to: precision), norm: norm,
                         mlp: try mlp.converted(to: precision), heads: heads)
    }

    /// `x` [N, tokens, width] → [N, width].
    package func forward(_ x: Tensor) throws(TensorError) -> Tensor {
        guard x.rank == 3, x.shape[2] == width, x.shape[1] > 0 else {
            throw .shapeMismatch(operation: "AttentionPooling", x.shape, [width])
        }
        let n = x.shape[0]
        guard n > 0 else { return Tensor(uncheckedZeros: [0, width]) }
        let kv = try keyValue(x)  // [N, tokens, 2·width]: keys then values per token
        let context = singleQueryAttention(query: query, keyValue: kv, heads: heads)
        var pooled = try outProj(context)  // [N, width]
        var hidden = Tensor(uninitialized: [n, mlp.fc.outFeatures])
        let normed = try norm(pooled)
        try mlp.forward(normed, into: &pooled, accumulate: true, hidden: &hidden)
        return pooled
    }
}

/// One query attending over every token of each sequence: `query` [width] (already projected), `kv` [N, tokens,
/// 2·width] each token's projected key then value → the heads' context [N, width] (before the output projection).
/// A single query needs no score matrix, so this is a dot product and a weighted sum per head.
func singleQueryAttention(query: Tensor, keyValue kv: Tensor, heads: Int) -> Tensor {
    let (n, tokens, w) = (kv.shape[0], kv.shape[1], query.count)
    let hd = w / heads
    let scale = 1 / Float(hd).squareRoot()
    var context = Tensor(uncheckedZeros: [n, w])
    kv.scalars.withUnsafeBufferPointer { kvp in
        query.scalars.withUnsafeBufferPointer { qp in
            context.scalars.withUnsafeMutableBufferPointer { cp in
                let (kvBase, q, cBase) = (kvp.baseAddress!, qp.baseAddress!, cp.baseAddress!)
                parallelFor(n * heads) { task in
                    let (b, h) = (task / heads, task % heads)
                    let rows = kvBase + b * tokens * 2 * w
                    var p = [Float](repeating: 0, count: tokens)
                    var largest = -Float.infinity
                    for t in 0..<tokens {
                        let k = rows + t * 2 * w + h * hd
                        var s: Float = 0
                        for d in 0..<hd { s += q[h * hd + d] * k[d] }
                        p[t] = s * scale
                        largest = max(largest, p[t])
                    }
                    var total: Float = 0
                    for t in 0..<tokens { p[t] = expf(p[t] - largest); total += p[t] }
                    let out = cBase + b * w + h * hd
                    for t in 0..<tokens {
                        let v = rows + t * 2 * w + w + h * hd, weight = p[t] / total
                        for d in 0..<hd { out[d] += weight * v[d] }
                    }
                }
            }
        }
    }
    return context
}

/// A learned query through the attention's query projection, x·W_qᵀ + b_q, in double: `x` [width], `weight` whose
/// first width·width values are W_q [width, width], `bias` whose first width values are b_q → [width]. It is the same
/// for every input, so pooling layers compute it once at load.
func projectedQuery(_ x: [Float], weight: [Float], bias: [Float], width: Int) -> Tensor {
    var q = [Float](repeating: 0, count: width)
    for o in 0..<width {
        var s = Double(bias[o])
        for i in 0..<width { s += Double(x[i]) * Double(weight[o * width + i]) }
        q[o] = Float(s)
    }
    return Tensor(uncheckedShape: [width], scalars: q)
}
