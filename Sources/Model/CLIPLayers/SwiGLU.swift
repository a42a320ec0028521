import CLIPTensor

/// timm's SwiGLU MLP (EVA02): fc2(norm(silu(fc1_g(x)) ⊙ fc1_x(x))), the norm being EVA02's sub-LN over the hidden
/// width (`scale_mlp`) when present. `fc1_g.weight` and `fc1_x.weight` [hidden, width] are stacked into one product
/// (gate rows first) so the input is read once.
package struct SwiGLU: Sendable {
    /// `[.., width]` → `[.., 2·hidden]`: the gate, then the value.
    package let fc1: Linear
    /// LayerNorm over the hidden width, or nil.
    package let norm: LayerNorm?
    /// `[.., hidden]` → `[.., width]`.
    package let fc2: Linear

    /// The hidden width.
    package var hidden: Int { fc2.inFeatures }

    /// Reads `<prefix>.fc1_g.*`, `<prefix>.fc1_x.*` (each [hidden, width]), `<prefix>.norm.*` (when `normed`) and
    /// `<prefix>.fc2.*`.
    package init(_ r: ParameterReader, _ prefix: String, width: Int, hidden: Int, normed: Bool, eps: Float) throws(ModelLoadError) {
        let names = ["\(prefix).fc1_g.weight", "\(prefix).fc1_g.bias", "\(prefix).fc1_x.weight", "\(prefix).fc1_x.bias"]
        fc1 = try Linear(r, packed: names[0], in: width, out: 2 * hidden, consumes: names) { () throws(ModelLoadError) in
            let (g, gb) = (try r.tensor(names[0], shape: [hidden, width]), try r.tensor(names[1], shape: [hidden]))
            let (x, xb) = (try r.tensor(names[2], shape: [hidden, width]), try r.tensor(names[3], shape: [hidden]))
            return (Tensor(uncheckedShape: [2 * hidden, width], scalars: g.scalars + x.scalars),
                    Tensor(uncheckedShape: [2 * hidden], scalars: gb.scalars + xb.scalars))
        }
        norm = normed ? try LayerNorm(r, "\(prefix).norm", width: hidden, eps: eps) : nil
        fc2 = try Linear(r, "\(prefix).fc2", in: hidden, out: width)
    }

    init(fc1: Linear, norm: LayerNorm?, fc2: Linear) { (self.fc1, self.norm, self.fc2) = (fc1, norm, fc2) }

    /// `x` [rows.., width] → `out` (added to it when `accumulate`); `gated` [rows, 2·hidden] and `hidden`
    /// [rows, hidden] are scratch, every element written before it is read.
    package func forward(_ x: Tensor, into out: inout Tensor, accumulate: Bool = false, gated: inout Tensor,
                        hidden h: inout Tensor) throws(TensorError) {
        let rows = x.count / max(fc1.inFeatures, 1)
        guard gated.count == rows * 2 * hidden, h.count == rows * hidden else {
            throw .shapeMismatch(operation: "SwiGLU scratch", gated.shape, [rows, 2 * hidden])
        }
        try fc1.forward(x, into: &gated)
        gated.scalars.withUnsafeBufferPointer { g in
            h.scalars.withUnsafeMutableBufferPointer { hp in
                swiGLURows(g.baseAddress!, rows: rows, hidden: hidden, out: hp.baseAddress!)
            }
        }
        if let norm { try norm.normalize(&h) }
        try fc2.forward(h, into: &out, accumulate: accumulate)
    }

    /// The same MLP computing its products in `precision` (the norm stays fp32).
    package func converted(to precision: Precision) throws(TensorError) -> SwiGLU {
        SwiGLU(fc1: try fc1.converted(to: precision), norm: norm, fc2: try fc2.converted(to: precision))
    }
}
