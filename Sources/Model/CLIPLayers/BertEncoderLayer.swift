import CLIPTensor

/// A post-norm transformer layer as BERT and (XLM-)RoBERTa have it, under Hugging Face's names:
/// x = LayerNorm(x + attention(x)), then x = LayerNorm(x + output(GELU(intermediate(x)))). Reads
/// `<prefix>.attention.self.query|key|value.*` [width, width] (stacked into one fused projection),
/// `<prefix>.attention.output.dense.*`, `.attention.output.LayerNorm.*`, `.intermediate.dense.*` [hidden, width],
/// `.output.dense.*` [width, hidden] and `.output.LayerNorm.*`.
package struct BertEncoderLayer: Sendable {
    /// Self-attention over every token, padding hidden by a key mask.
    package let attention: MultiheadSelfAttention
    /// The LayerNorm after the attention's residual sum.
    package let attentionNorm: LayerNorm
    /// `[.., width]` → `[.., hidden]`, GELU in its epilogue.
    package let intermediate: Linear
    /// `[.., hidden]` → `[.., width]`.
    package let output: Linear
    /// The LayerNorm after the MLP's residual sum.
    package let outputNorm: LayerNorm

    /// Token width.
    package var width: Int { attention.width }

    /// Reads the layer under `prefix`; `heads` must divide `width`.
    package init(_ r: ParameterReader, _ prefix: String, width: Int, heads: Int, eps: Float) throws(ModelLoadError) {
        guard heads > 0, width % heads == 0 else {
            throw .architecture("\(prefix): width \(width) is not divisible into \(heads) heads", origin: r.origin)
        }
        let inProj = try Linear(r, stacking: ["query", "key", "value"].map { "\(prefix).attention.self.\($0)" }, in: width, out: width)
        attention = MultiheadSelfAttention(inProj: inProj,
                                           outProj: try Linear(r, "\(prefix).attention.output.dense", in: width, out: width),
                                           heads: heads)
        attentionNorm = try LayerNorm(r, "\(prefix).attention.output.LayerNorm", width: width, eps: eps)
        let hidden = r.shape(of: "\(prefix).intermediate.dense.weight").flatMap { $0.count == 2 ? $0[0] : nil } ?? 4 * width
        intermediate = try Linear(r, "\(prefix).intermediate.dense", in: width, out: hidden)
        output = try Linear(r, "\(prefix).output.dense", in: hidden, out: width)
        outputNorm = try LayerNorm(r, "\(prefix).output.LayerNorm", width: width, eps: eps)
    }

    private init(attention: MultiheadSelfAttention, attentionNorm: LayerNorm, intermediate: Linear, output: Linear,
                 outputNorm: LayerNorm) {
        (self.attention, self.attentionNorm, self.intermediate, self.output, self.outputNorm) =
            (attention, attentionNorm, intermediate, output, outputNorm)
    }

    /// The same layer computing its products in `precision` (LayerNorms stay fp32).
    package func converted(to precision: Precision) throws(TensorError) -> BertEncoderLayer {
        BertEncoderLayer(attention: try attention.converted(to: precision), attentionNorm: attentionNorm,
                         intermediate: try intermediate.converted(to: precision),
                         output: try output.converted(to: precision), outputNorm: outputNorm)
    }

    /// `x` [batch, tokens, width] in place; `keyMask` [batch·tokens] hides the keys marked false (padding).
    package func forward(_ x: inout Tensor, keyMask: [Bool]) throws(TensorError) {
        guard x.rank == 3, x.shape[2] == width else { throw .shapeMismatch(operation: "BertEncoderLayer", x.shape, [width]) }
        var ws = MultiheadSelfAttention.Workspace(batch: x.shape[0], tokens: x.shape[1], width: width)
        var sum = x
        try attention.forward(x, causal: false, keyMask: keyMask, into: &sum, accumulate: true, workspace: &ws)
        try attentionNorm.forward(sum, into: &x)
        var hidden = Tensor(uninitialized: [x.count / width, intermediate.outFeatures])
        try intermediate.forward(x, into: &hidden, activation: .gelu)
        sum = x
        try output.forward(hidden, into: &sum, accumulate: true)
        try outputNorm.forward(sum, into: &x)
    }
}
