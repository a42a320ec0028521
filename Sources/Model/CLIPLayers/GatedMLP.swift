import CLIPTensor

/// timm's gated MLPs: fc2(norm(act(fc1_gate(x)) ⊙ fc1_value(x))). EVA02's SwiGLU (`act` SiLU, `fc1_g`, `fc1_x`,
/// `fc2`, with a sub-LN over the hidden width when `scale_mlp`) and ViTamin's GeGLU (`act` exact GELU, `w0`, `w1`,
/// `w2`; its LayerNorm over the input is its block's). The gate and value weights [hidden, width] are stacked into one
/// product (gate rows first) so the input is read once.
package struct GatedMLP: Sendable {
    /// The gate's non-linearity.
    package enum Gate: Sendable, Equatable {
        /// SiLU: SwiGLU.
        case silu
        /// Exact GELU: GeGLU.
        case gelu
    }

    /// The checkpoint names of the three products under the MLP's prefix.
    package struct Names: Sendable {
        let gate: String, value: String, out: String
        /// timm's SwiGLU: `fc1_g`, `fc1_x`, `fc2`.
        package static let swiGLU = Names(gate: "fc1_g", value: "fc1_x", out: "fc2")
        /// timm's GeGluMlp (ViTamin): `w0`, `w1`, `w2`.
        package static let geGLU = Names(gate: "w0", value: "w1", out: "w2")
    }

    /// `[.., width]` → `[.., 2·hidden]`: the gate, then the value.
    package let fc1: Linear
    /// LayerNorm over the hidden width after the gating (EVA02's sub-LN), or nil.
    package let norm: LayerNorm?
    /// `[.., hidden]` → `[.., width]`.
    package let fc2: Linear
    /// The gate's non-linearity.
    package let gate: Gate

    /// The hidden width.
    package var hidden: Int { fc2.inFeatures }

    /// Reads `<prefix>.<gate>.*`, `<prefix>.<value>.*` (each [hidden, width] with bias), `<prefix>.norm.*` over the
    /// hidden width (when `hiddenNorm`) and `<prefix>.<out>.*`.
    package init(_ r: ParameterReader, _ prefix: String, names: Names, width: Int, hidden: Int, gate: Gate, hiddenNorm: Bool,
                 eps: Float) throws(ModelLoadError) {
        let p = ["\(prefix).\(names.gate)", "\(prefix).\(names.value)"]
        let stacked = ["\(p[0]).weight", "\(p[0]).bias", "\(p[1]).weight", "\(p[1]).bias"]
        fc1 = try Linear(r, packed: stacked[0], in: width, out: 2 * hidden, consumes: stacked) { () throws(ModelLoadError) in
            let (g, gb) = (try r.tensor(stacked[0], shape: [hidden, width]), try r.tensor(stacked[1], shape: [hidden]))
            let (x, xb) = (try r.tensor(stacked[2], shape: [hidden, width]), try r.tensor(stacked[3], shape: [hidden]))
            return (Tensor(uncheckedShape: [2 * hidden, width], scalars: g.scalars + x.scalars),
                    Tensor(uncheckedShape: [2 * hidden], scalars: gb.scalars + xb.scalars))
        }
        norm = hiddenNorm ? try LayerNorm(r, "\(prefix).norm", width: hidden, eps: eps) : nil
        fc2 = try Linear(r, "\(prefix).\(names.out)", in: hidden, out: width)
        self.gate = gate
    }

    init(fc1: Linear, norm: LayerNorm?, fc2: Linear, gate: Gate) { (self.fc1, self.norm, self.fc2, self.gate) = (fc1, norm, fc2, gate) }

    /// `x` [rows.., width] → `out` (added to it when `accumulate`); `gated` [rows, 2·hidden] and `hidden`
    /// [rows, hidden] are scratch, every element written before it is read.
    package func forward(_ x: Tensor, into out: inout Tensor, accumulate: Bool = false, gated: inout Tensor,
                        hidden h: inout Tensor) throws(TensorError) {
        let rows = x.count / max(fc1.inFeatures, 1)
        guard gated.count == rows * 2 * hidden, h.count == rows * hidden else {
            throw .shapeMismatch(operation: "GatedMLP scratch", gated.shape, [rows, 2 * hidden])
        }
        try fc1.forward(x, into: &gated)
        let (hiddenWidth, gate) = (hidden, gate)
        gated.scalars.withUnsafeBufferPointer { g in
            h.scalars.withUnsafeMutableBufferPointer { hp in
                switch gate {
                case .silu: swiGLURows(g.baseAddress!, rows: rows, hidden: hiddenWidth, out: hp.baseAddress!)
                case .gelu: geGLURows(g.baseAddress!, rows: rows, hidden: hiddenWidth, out: hp.baseAddress!)
                }
            }
        }
        if let norm { try norm.normalize(&h) }
        try fc2.forward(h, into: &out, accumulate: accumulate)
    }

    /// The same MLP computing its products in `precision` (the norm stays fp32).
    package func converted(to precision: Precision) throws(TensorError) -> GatedMLP {
        GatedMLP(fc1: try fc1.converted(to: precision), norm: norm, fc2: try fc2.converted(to: precision), gate: gate)
    }
}
