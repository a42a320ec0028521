import CLIPTensor

/// CoCa's attentional pooler (open_clip's `AttentionalPooler`): learned queries, normalised by `ln_q`, attend over
/// the tokens normalised by `ln_k` through a `nn.MultiheadAttention` whose keys and values come from the tower's
/// width and whose output has the pooled width. Reads `<prefix>.query` [queries, pooled], `<prefix>.ln_q.*`
/// [pooled], `<prefix>.ln_k.*` [width], `<prefix>.attn.q_proj_weight` [pooled, pooled], `k_proj_weight` and
/// `v_proj_weight` [pooled, width] (or one `in_proj_weight` [3·pooled, pooled] when the widths are equal),
/// `attn.in_proj_bias` [3·pooled] and `attn.out_proj.*`.
///
/// Only the first query's output is computed: open_clip's CoCa embeds an image by that query alone (after
/// `ln_post`), and the others feed only its caption decoder, which swift-clip does not run.
package struct AttentionalPooler: Sendable {
    /// The first query, ln_q(query₀)·W_qᵀ + b_q: the same for every image, so computed once at load. `[pooled]`
    let query: Tensor
    let lnK: LayerNorm
    /// The key and value projections: `[.., width]` → `[.., 2·pooled]`.
    let keyValue: Linear
    let outProj: Linear
    /// Attention heads; each attends over `pooled / heads` channels.
    package let heads: Int

    /// The width of the pooled output.
    package var pooledWidth: Int { outProj.outFeatures }

    /// Reads the pooler's tensors under `prefix`: tokens `width` wide pooled to `pooled`; `heads` must divide
    /// `pooled`.
    package init(_ r: ParameterReader, _ prefix: String, width: Int, pooled: Int, heads: Int,
                eps: Float) throws(ModelLoadError) {
        guard heads > 0, pooled % heads == 0 else {
            throw .architecture("\(prefix): the pooled width \(pooled) is not divisible into \(heads) heads", origin: r.origin)
        }
        guard let shape = r.shape(of: "\(prefix).query"), shape.count == 2, shape[0] >= 1, shape[1] == pooled else {
            throw .architecture("\(prefix).query has shape \(r.shape(of: "\(prefix).query")?.description ?? "(missing)"), expected [queries, \(pooled)]", origin: r.origin)
        }
        let queries = try r.tensor("\(prefix).query", shape: shape)
        let lnQ = try LayerNorm(r, "\(prefix).ln_q", width: pooled, eps: eps)
        lnK = try LayerNorm(r, "\(prefix).ln_k", width: width, eps: eps)
        let wq: [Float], wkv: [Float]
        let a = "\(prefix).attn"
        if width == pooled && r.shape(of: "\(a).in_proj_weight") != nil {
            let w = try r.tensor("\(a).in_proj_weight", shape: [3 * pooled, pooled]).scalars
            (wq, wkv) = (Array(w[..<(pooled * pooled)]), Array(w[(pooled * pooled)...]))
        } else {
            wq = try r.tensor("\(a).q_proj_weight", shape: [pooled, pooled]).scalars
            wkv = try r.tensor("\(a).k_proj_weight", shape: [pooled, width]).scalars
                + r.tensor("\(a).v_proj_weight", shape: [pooled, width]).scalars
        }
        let bias = try r.tensor("\(a).in_proj_bias", shape: [3 * pooled]).scalars
        let q0: Tensor
        do throws(TensorError) {
            q0 = try lnQ(Tensor(shape: [1, pooled], scalars: Array(queries.scalars[..<pooled])))
        } catch {
            throw .architecture("\(prefix).query: \(error)", origin: r.origin)
        }
        query = projectedQuery(q0.scalars, weight: wq, bias: bias, width: pooled)
        do throws(TensorError) {
            keyValue = try Linear(weight: Tensor(shape: [2 * pooled, width], scalars: wkv),
                                  bias: Tensor(shape: [2 * pooled], scalars: Array(bias[pooled...])))
        } catch {
            throw .architecture("\(a).k_proj_weight: \(error)", origin: r.origin)
        }
        outProj = try Linear(r, "\(a).out_proj", in: pooled, out: pooled)
        self.heads = heads
    }

    private init(query: Tensor, lnK: LayerNorm, keyValue: Linear, outProj: Linear, heads: Int) {
        (self.query, self.lnK, self.keyValue, self.outProj, self.heads) = (query, lnK, keyValue, outProj, heads)
    }

    /// The same layer computing its projections in `precision` (the query, the attention and the LayerNorm stay
    /// fp32).
    package func converted(to precision: Precision) throws(TensorError) -> AttentionalPooler {
        AttentionalPooler(query: query, lnK: lnK, keyValue: try keyValue.converted(to: precision),
                          outProj: try outProj.converted(to: precision), heads: heads)
    }

    /// `x` [N, tokens, width] → the first query's output [N, pooled].
    package func forward(_ x: Tensor) throws(TensorError) -> Tensor {
        guard x.rank == 3, x.shape[2] == lnK.width, x.shape[1] > 0 else {
            throw .shapeMismatch(operation: "AttentionalPooler", x.shape, [lnK.width])
        }
        guard x.shape[0] > 0 else { return Tensor(uncheckedZeros: [0, pooledWidth]) }
        let kv = try keyValue(lnK(x))  // [N, tokens, 2·pooled]
        return try outProj(singleQueryAttention(query: query, keyValue: kv, heads: heads))
    }
}
