#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLIPTensor

/// The MLP's non-linearity. OpenAI's CLIP uses QuickGELU; some open_clip and Hugging Face models use GELU; SigLIP
/// uses GELU's tanh approximation; NLLB's text tower (M2M100) uses ReLU. Raw values are Hugging Face's `hidden_act`
/// names.
public enum Activation: String, Sendable {
    case quickGELU = "quick_gelu"
    case gelu = "gelu"
    case geluTanh = "gelu_pytorch_tanh"
    case relu = "relu"

    /// The same function as a GEMM epilogue.
    var output: OutputActivation {
        switch self {
        case .quickGELU: return .quickGELU
        case .gelu: return .gelu
        case .geluTanh: return .geluTanh
        case .relu: return .relu
        }
    }
}

/// Two-layer MLP `c_fc` → activation → `c_proj`; `c_fc.weight` [hidden, width], `c_proj.weight` [width, hidden].
package struct MLP: Sendable {
    /// `c_fc`: `[.., width]` → `[.., hidden]`, with the activation applied in its epilogue.
    package let fc: Linear
    /// `c_proj`: `[.., hidden]` → `[.., width]`.
    package let proj: Linear
    /// The non-linearity between the two products.
    package let activation: Activation

    /// Reads `<prefix>.c_fc.*` and `<prefix>.c_proj.*`; the hidden width comes from `c_fc.weight`.
    package init(_ r: ParameterReader, _ prefix: String, width: Int, activation: Activation) throws(ModelLoadError) {
        // The hidden width is read from the weights (4·width in CLIP; other ratios exist in open_clip).
        let hidden = r.shape(of: "\(prefix).c_fc.weight").flatMap { $0.count == 2 ? $0[0] : nil } ?? 4 * width
        fc = try Linear(r, "\(prefix).c_fc", in: width, out: hidden)
        proj = try Linear(r, "\(prefix).c_proj", in: hidden, out: width)
        self.activation = activation
    }

    /// The MLP from its two layers (`fc.outFeatures` == `proj.inFeatures`).
    package init(fc: Linear, proj: Linear, activation: Activation) {
        (self.fc, self.proj, self.activation) = (fc, proj, activation)
    }

    /// `x` [.., width] → `out` [.., width] (added to it when `accumulate`); `hidden` [.., hidden width] is scratch
    /// (the activation is applied as the first product's tiles finish).
    package func forward(_ x: Tensor, into out: inout Tensor, accumulate: Bool = false,
                        hidden: inout Tensor) throws(TensorError) {
        try fc.forward(x, into: &hidden, activation: activation.output)
        try proj.forward(hidden, into: &out, accumulate: accumulate)
    }

    /// The same MLP computing its products in `precision`.
    package func converted(to precision: Precision) throws(TensorError) -> MLP {
        MLP(fc: try fc.converted(to: precision), proj: try proj.converted(to: precision), activation: activation)
    }
}

/// Pre-norm transformer block: x + attn(ln_1(x)), then + mlp(ln_2(x)). With open_clip's layer scale
/// (`ls_init_value`: `ls_1.gamma`, `ls_2.gamma` [width]) each branch is multiplied by its gamma.
package struct ResidualAttentionBlock: Sendable {
    /// LayerNorm before attention (`ln_1`).
    package let ln1: LayerNorm
    /// Self-attention (`attn`).
    package let attention: MultiheadSelfAttention
    /// LayerNorm before the MLP (`ln_2`).
    package let ln2: LayerNorm
    /// The MLP (`mlp`).
    package let mlp: MLP
    /// Whether the block has layer scale; its gammas are folded into the rows of `attn.out_proj` and `mlp.c_proj`
    /// (gamma ⊙ (W·h + b) = (diag(gamma)·W)·h + gamma ⊙ b), so the forward pass costs nothing more.
    package let layerScaled: Bool

    /// Reads `<prefix>.ln_1`, `.attn`, `.ln_2` and `.mlp`, and `.ls_1.gamma` and `.ls_2.gamma` when present;
    /// `rotary` turns the attention's patch queries and keys (PE-Core).
    package init(_ r: ParameterReader, _ prefix: String, width: Int, heads: Int, activation: Activation,
                eps: Float, rotary: RotaryEmbedding? = nil) throws(ModelLoadError) {
        ln1 = try LayerNorm(r, "\(prefix).ln_1", width: width, eps: eps)
        var attention = try MultiheadSelfAttention(r, "\(prefix).attn", width: width, heads: heads)
        if let rotary {
            attention = MultiheadSelfAttention(inProj: attention.inProj, outProj: attention.outProj, heads: heads, rotary: rotary)
        }
        ln2 = try LayerNorm(r, "\(prefix).ln_2", width: width, eps: eps)
        var mlp = try MLP(r, "\(prefix).mlp", width: width, activation: activation)
        layerScaled = r.shape(of: "\(prefix).ls_1.gamma") != nil || r.shape(of: "\(prefix).ls_2.gamma") != nil
        if layerScaled {
            let g1 = try r.tensor("\(prefix).ls_1.gamma", shape: [width])
            let g2 = try r.tensor("\(prefix).ls_2.gamma", shape: [width])
            attention = MultiheadSelfAttention(
                inProj: attention.inProj, outProj: try Self.scaled(r, "\(prefix).attn.out_proj", by: g1, in: width),
                heads: heads, rotary: rotary)
            mlp = MLP(fc: mlp.fc, proj: try Self.scaled(r, "\(prefix).mlp.c_proj", by: g2, in: mlp.fc.outFeatures),
                      activation: activation)
        }
        (self.attention, self.mlp) = (attention, mlp)
    }

    /// The Linear `<prefix>.weight` [width, inputs], `<prefix>.bias` [width] with row i multiplied by gamma[i].
    private static func scaled(_ r: ParameterReader, _ prefix: String, by gamma: Tensor,
                               in inputs: Int) throws(ModelLoadError) -> Linear {
        let width = gamma.count
        return try Linear(r, packed: "\(prefix).weight", in: inputs, out: width,
                          consumes: ["\(prefix).weight", "\(prefix).bias"]) { () throws(ModelLoadError) in
            var weight = try r.tensor("\(prefix).weight", shape: [width, inputs])
            var bias = try r.tensor("\(prefix).bias", shape: [width])
            for o in 0..<width {
                bias.scalars[o] *= gamma.scalars[o]
                for i in 0..<inputs { weight.scalars[o * inputs + i] *= gamma.scalars[o] }
            }
            return (weight, bias)
        }
    }

    init(ln1: LayerNorm, attention: MultiheadSelfAttention, ln2: LayerNorm, mlp: MLP, layerScaled: Bool) {
        (self.ln1, self.attention, self.ln2, self.mlp, self.layerScaled) = (ln1, attention, ln2, mlp, layerScaled)
    }

    /// The block in place on `x` [batch, tokens, width]: x += attn(ln_1(x)); x += mlp(ln_2(x)). `keyMask`
    /// [batch·tokens] hides the keys marked false (see `MultiheadSelfAttention.forward`).
    package func forward(_ x: inout Tensor, causal: Bool, keyMask: [Bool]? = nil,
                        workspace ws: inout TransformerWorkspace) throws(TensorError) {
        ws.fitHidden(rows: x.count / max(ln1.width, 1), width: mlp.fc.outFeatures)
        try ln1.forward(x, into: &ws.normed)
        try attention.forward(ws.normed, causal: causal, keyMask: keyMask, into: &x, accumulate: true,
                              workspace: &ws.attention)
        try ln2.forward(x, into: &ws.normed)
        try mlp.forward(ws.normed, into: &x, accumulate: true, hidden: &ws.hidden)
    }

    /// The block for the tokens a pooling reads: `x` [batch, tokens, width] → [batch, 1, width], row b holding
    /// token `rows[b]` of sequence b after the block (every token still serves as a key and value).
    package func forward(_ x: Tensor, causal: Bool, keyMask: [Bool]? = nil, keeping rows: [Int],
                        workspace ws: inout TransformerWorkspace) throws(TensorError) -> Tensor {
        guard isTokenPerSequence(rows, of: x), keyMask.map({ $0.count == x.shape[0] * x.shape[1] }) ?? true else {
            throw .shapeMismatch(operation: "ResidualAttentionBlock (kept token per sequence)", x.shape, [rows.count])
        }
        var y = try gatherTokens(x, at: rows)
        try ln1.forward(x, into: &ws.normed)
        // The attention takes the sequences whole (rotary positions are the image's) and lists each query's keys.
        try attention.forward(ws.normed, causal: causal, keyMask: keyMask, queries: rows, into: &y,
                              accumulate: true, workspace: &ws.attention)
        return try mlpHalf(&y, workspace: &ws).reshaped([rows.count, 1, width])
    }

    /// The block over rows whose attention is listed: `x` [rows, width] → [queries, width], row i holding row
    /// `queries[i]` after the block, its attention over the rows `keys` lists for it (a prefix tree's, or one
    /// token per sequence); every row of `x` is normalised and projected, whether listed or not.
    package func forward(_ x: Tensor, queries: [Int], keys: KeyRows,
                        workspace ws: inout TransformerWorkspace) throws(TensorError) -> Tensor {
        let rows = x.count / max(width, 1)
        guard x.rank >= 1, x.shape[x.rank - 1] == width, queries.allSatisfy({ $0 >= 0 && $0 < rows }) else {
            throw .shapeMismatch(operation: "ResidualAttentionBlock (listed keys)", x.shape, [queries.count, width])
        }
        var y = try gatherRows(x, at: queries)
        if ws.normed.count != x.count { ws.normed = Tensor(uninitialized: [rows, width]) }
        try ln1.forward(x, into: &ws.normed)
        try attention.forward(ws.normed, queries: queries, keys: keys, into: &y, accumulate: true,
                              workspace: &ws.attention)
        return try mlpHalf(&y, workspace: &ws)
    }

    /// Token width.
    package var width: Int { ln1.width }

    /// y += mlp(ln_2(y)) for `y` [n, width], resizing the workspace's buffers to its rows.
    private func mlpHalf(_ y: inout Tensor, workspace ws: inout TransformerWorkspace) throws(TensorError) -> Tensor {
        let n = y.count / max(width, 1)
        if ws.normed.count != y.count { ws.normed = Tensor(uninitialized: [n, width]) }
        ws.fitHidden(rows: n, width: mlp.fc.outFeatures)
        try ln2.forward(y, into: &ws.normed)
        try mlp.forward(ws.normed, into: &y, accumulate: true, hidden: &ws.hidden)
        return try y.reshaped([n, width])
    }

    /// The same block computing its products in `precision` (LayerNorms stay fp32).
    package func converted(to precision: Precision) throws(TensorError) -> ResidualAttentionBlock {
        ResidualAttentionBlock(ln1: ln1, attention: try attention.converted(to: precision), ln2: ln2,
                               mlp: try mlp.converted(to: precision), layerScaled: layerScaled)
    }
}

/// Token `rows[b]` of each sequence b of `x` [batch, tokens, width] → [batch, 1, width].
package func gatherTokens(_ x: Tensor, at rows: [Int]) throws(TensorError) -> Tensor {
    guard isTokenPerSequence(rows, of: x) else { throw .shapeMismatch(operation: "gatherTokens", x.shape, [rows.count]) }
    let tokens = x.shape[1]
    return try gatherRows(x, at: rows.enumerated().map { $0 * tokens + $1 }).reshaped([rows.count, 1, x.shape[2]])
}

/// Rows `rows` of `x` [.., width] → [rows.count, width].
package func gatherRows(_ x: Tensor, at rows: [Int]) throws(TensorError) -> Tensor {
    let w = x.rank >= 1 ? x.shape[x.rank - 1] : 0
    let count = w > 0 ? x.count / w : 0
    guard x.rank >= 1, rows.allSatisfy({ $0 >= 0 && $0 < count }) else {
        throw .shapeMismatch(operation: "gatherRows", x.shape, [rows.count])
    }
    var y = Tensor(uninitialized: [rows.count, w])
    x.scalars.withUnsafeBufferPointer { xp in
        y.scalars.withUnsafeMutableBufferPointer { yp in
            for (i, r) in rows.enumerated() { (yp.baseAddress! + i * w).update(from: xp.baseAddress! + r * w, count: w) }
        }
    }
    return y
}

/// Whether `rows` names one token of each sequence of `x` [batch, tokens, width].
func isTokenPerSequence(_ rows: [Int], of x: Tensor) -> Bool {
    x.rank == 3 && rows.count == x.shape[0] && rows.allSatisfy { $0 >= 0 && $0 < x.shape[1] }
}

/// Activation buffers for one forward pass of a transformer, allocated once and reused by every block; every
/// element is written (LayerNorm, GEMM, attention) before it is read, so none is zero-filled first.
package struct TransformerWorkspace {
    var normed: Tensor
    var hidden: Tensor
    var attention: MultiheadSelfAttention.Workspace

    /// Buffers for `batch` sequences of `tokens` tokens of `width` channels and an MLP `hidden` wide.
    package init(batch: Int, tokens: Int, width: Int, hidden: Int) {
        normed = Tensor(uninitialized: [batch, tokens, width])
        self.hidden = Tensor(uninitialized: [batch * tokens, hidden])
        attention = MultiheadSelfAttention.Workspace(batch: batch, tokens: tokens, width: width)
    }

    /// A block whose MLP is wider or narrower than the last one gets a hidden buffer of its own width.
    mutating func fitHidden(rows: Int, width: Int) {
        if hidden.shape != [rows, width] { hidden = Tensor(uninitialized: [rows, width]) }
    }
}

/// A stack of residual attention blocks named `<prefix>.resblocks.<i>`.
package struct Transformer: Sendable {
    /// The blocks, applied in order.
    package let blocks: [ResidualAttentionBlock]

    /// Reads `layers` blocks `<prefix>.resblocks.0` … `<prefix>.resblocks.<layers-1>`; `rotary` goes to every
    /// block's attention.
    package init(_ r: ParameterReader, _ prefix: String, width: Int, layers: Int, heads: Int,
                activation: Activation, eps: Float, rotary: RotaryEmbedding? = nil) throws(ModelLoadError) {
        try self.init(r, layers: layers) { (i) throws(ModelLoadError) in
            try ResidualAttentionBlock(r, "\(prefix).resblocks.\(i)", width: width, heads: heads, activation: activation,
                                       eps: eps, rotary: rotary)
        }
    }

    /// `layers` blocks, block i read by `block(i)`, which runs on several threads at once when `r` reads
    /// concurrently: it must only read what it captures (not `@Sendable`, because `ParameterReader` is shared by
    /// reference across that one load and is not).
    package init(_ r: ParameterReader, layers: Int,
                 block: (Int) throws(ModelLoadError) -> ResidualAttentionBlock) throws(ModelLoadError) {
        var blocks: [ResidualAttentionBlock] = []
        if r.readsConcurrently && layers > 1 {
            // Reading and packing a block's weights is memory-bound work on one core; the blocks are independent,
            // so loading them on every core cuts a large model's start-up. Errors are reported for the first
            // failing block, as a sequential load would.
            var built = [Result<ResidualAttentionBlock, ModelLoadError>?](repeating: nil, count: layers)
            built.withUnsafeMutableBufferPointer { out in
                let o = out.baseAddress!
                parallelFor(layers) { i in
                    o[i] = Result { () throws(ModelLoadError) in try block(i) }
                }
            }
            for result in built { blocks.append(try result!.get()) }
        } else {
            for i in 0..<layers { blocks.append(try block(i)) }
        }
        self.blocks = blocks
    }

    init(blocks: [ResidualAttentionBlock]) { self.blocks = blocks }

    /// `x` [batch, tokens, width] in place, through every block with one shared workspace; `keyMask`
    /// [batch·tokens] hides the keys marked false in every block. With `rows` [batch] (the token each sequence's
    /// pooling reads), `x` leaves as [batch, 1, width]: the last block computes only those tokens.
    package func forward(_ x: inout Tensor, causal: Bool, keyMask: [Bool]? = nil,
                         keeping rows: [Int]? = nil) throws(TensorError) {
        guard x.rank == 3 else { throw .shapeMismatch(operation: "Transformer", x.shape, []) }
        guard let first = blocks.first else {
            if let rows { x = try gatherTokens(x, at: rows) }
            return
        }
        guard x.shape[2] == first.attention.width else {
            throw .shapeMismatch(operation: "Transformer", x.shape, [first.attention.width])
        }
        if let rows, !isTokenPerSequence(rows, of: x) {
            throw .shapeMismatch(operation: "Transformer (kept token per sequence)", x.shape, [rows.count])
        }
        var ws = TransformerWorkspace(batch: x.shape[0], tokens: x.shape[1], width: x.shape[2],
                                      hidden: first.mlp.fc.outFeatures)
        for (i, block) in blocks.enumerated() {
            if let rows, i == blocks.count - 1 {
                x = try block.forward(x, causal: causal, keyMask: keyMask, keeping: rows, workspace: &ws)
            } else {
                try block.forward(&x, causal: causal, keyMask: keyMask, workspace: &ws)
            }
        }
    }

    /// A causal stack over a prefix tree's nodes: `x` [tree.count, width], each node's embedding at its position →
    /// [tree.ends.count, width], each sequence's last token after every block. The same numbers as the sequences
    /// run whole under the causal mask, computed once per node.
    package func forward(_ x: Tensor, tree: PrefixTree) throws(TensorError) -> Tensor {
        guard x.rank == 2, x.shape[0] == tree.count, blocks.first.map({ x.shape[1] == $0.width }) ?? true else {
            throw .shapeMismatch(operation: "Transformer (prefix tree)", x.shape, [tree.count])
        }
        guard let first = blocks.first else { return try gatherRows(x, at: tree.ends) }
        var ws = TransformerWorkspace(batch: 1, tokens: tree.count, width: first.width, hidden: first.mlp.fc.outFeatures)
        let all = Array(0..<tree.count)
        let keys = blocks.count > 1 ? tree.keys(of: all) : KeyRows()
        var y = x
        for block in blocks.dropLast() { y = try block.forward(y, queries: all, keys: keys, workspace: &ws) }
        return try blocks[blocks.count - 1].forward(y, queries: tree.ends, keys: tree.keys(of: tree.ends), workspace: &ws)
    }

    /// The same stack computing its products in `precision`.
    package func converted(to precision: Precision) throws(TensorError) -> Transformer {
        var converted: [ResidualAttentionBlock] = []
        for block in blocks { converted.append(try block.converted(to: precision)) }
        return Transformer(blocks: converted)
    }
}

extension Activation {
    /// f(z) in place over `count` elements.
    func apply(_ z: UnsafeMutablePointer<Float>, count: Int) {
        switch self {
        case .quickGELU: quickGELUInPlace(z, count: count)
        case .gelu: geluInPlace(z, count: count)
        case .geluTanh: geluTanhInPlace(z, count: count)
        case .relu: for i in 0..<count where z[i] < 0 { z[i] = 0 }
        }
    }

    /// dh *= f′(z) over `count` elements; `h` = f(z) from the forward pass.
    func backward(_ z: UnsafePointer<Float>, _ h: UnsafePointer<Float>, _ dh: UnsafeMutablePointer<Float>, count: Int) {
        activationBackward(output, z, h, dh, count: count)
    }
}

extension MLP {
    /// What the backward pass needs: the input, the pre-activation and the activation [rows, hidden].
    package struct Trace: Sendable {
        var input: Tensor
        var preActivation: Tensor
        var hidden: Tensor
    }

    /// The forward pass for training: as `forward`, with the activation applied as its own pass so that its input
    /// is kept. `x` [.., width] → added into `out` [.., width].
    package func forward(_ x: Tensor, addingTo out: inout Tensor) throws(TensorError) -> Trace {
        var z = Tensor(uninitialized: [x.count / max(fc.inFeatures, 1), fc.outFeatures])
        try fc.forward(x, into: &z)
        var h = z
        h.scalars.withUnsafeMutableBufferPointer { activation.apply($0.baseAddress!, count: $0.count) }
        try proj.forward(h, into: &out, accumulate: true)
        return Trace(input: x, preActivation: z, hidden: h)
    }

    /// The backward pass: `dy` the gradient of the output; adds `<prefix>.c_fc.*` and `<prefix>.c_proj.*`
    /// gradients; returns dx.
    package func backward(_ trace: Trace, outputGradient dy: Tensor, prefix: String, parameters p: ParameterValues,
                         into gradients: inout Gradients) throws(TensorError) -> Tensor {
        guard var dh = try proj.backward(input: trace.hidden, outputGradient: dy,
                                         weight: p.value("\(prefix).c_proj.weight"),
                                         names: ("\(prefix).c_proj.weight", "\(prefix).c_proj.bias"),
                                         into: &gradients) else { return dy }
        trace.preActivation.scalars.withUnsafeBufferPointer { z in
            trace.hidden.scalars.withUnsafeBufferPointer { h in
                dh.scalars.withUnsafeMutableBufferPointer { d in
                    activation.backward(z.baseAddress!, h.baseAddress!, d.baseAddress!, count: d.count)
                }
            }
        }
        return try fc.backward(input: trace.input, outputGradient: dh, weight: p.value("\(prefix).c_fc.weight"),
                               names: ("\(prefix).c_fc.weight", "\(prefix).c_fc.bias"), into: &gradients) ?? dh
    }
}

extension ResidualAttentionBlock {
    /// What the backward pass needs from one block: its input, the residual stream between the two halves, and
    /// the sublayers' traces (the LayerNorms' outputs are the sublayers' inputs).
    package struct Trace: Sendable {
        var input: Tensor
        var middle: Tensor
        var attention: MultiheadSelfAttention.Trace
        var mlp: MLP.Trace
    }

    /// The forward pass for training on `x` [batch, tokens, width] in place, keeping what backward needs.
    package func forwardTraining(_ x: inout Tensor, causal: Bool) throws(TensorError) -> Trace {
        let input = x
        let attentionTrace = try attention.forward(ln1(x), causal: causal, addingTo: &x)
        let middle = x
        let mlpTrace = try mlp.forward(ln2(x), addingTo: &x)
        return Trace(input: input, middle: middle, attention: attentionTrace, mlp: mlpTrace)
    }

    /// The backward pass: `dy` the gradient of the block's output; adds every parameter's gradient under
    /// `prefix`; returns the gradient of its input.
    package func backward(_ trace: Trace, outputGradient dy: Tensor, prefix: String, parameters p: ParameterValues,
                         into gradients: inout Gradients) throws(TensorError) -> Tensor {
        let dNormed2 = try mlp.backward(trace.mlp, outputGradient: dy, prefix: "\(prefix).mlp", parameters: p,
                                        into: &gradients)
        var dMiddle = try ln2.backward(input: trace.middle, outputGradient: dNormed2, prefix: "\(prefix).ln_2",
                                       into: &gradients)
        addInPlace(&dMiddle, dy)
        let dNormed1 = try attention.backward(trace.attention, outputGradient: dMiddle, prefix: "\(prefix).attn",
                                              inProjWeight: p.value("\(prefix).attn.in_proj_weight"),
                                              outProjWeight: p.value("\(prefix).attn.out_proj.weight"),
                                              into: &gradients)
        var dx = try ln1.backward(input: trace.input, outputGradient: dNormed1, prefix: "\(prefix).ln_1",
                                  into: &gradients)
        addInPlace(&dx, dMiddle)
        return dx
    }
}

/// a += b, element by element (same counts).
func addInPlace(_ a: inout Tensor, _ b: Tensor) {
    b.scalars.withUnsafeBufferPointer { bp in
        a.scalars.withUnsafeMutableBufferPointer { ap in for i in ap.indices { ap[i] += bp[i] } }
    }
}

extension Transformer {
    /// The forward pass for training on `x` [batch, tokens, width] in place; one trace per block.
    package func forwardTraining(_ x: inout Tensor, causal: Bool) throws(TensorError) -> [ResidualAttentionBlock.Trace] {
        var traces: [ResidualAttentionBlock.Trace] = []
        for block in blocks { traces.append(try block.forwardTraining(&x, causal: causal)) }
        return traces
    }

    /// The backward pass through every block, last first; blocks are `<prefix>.resblocks.<i>`. Returns dx.
    package func backward(_ traces: [ResidualAttentionBlock.Trace], outputGradient dy: Tensor, prefix: String,
                         parameters p: ParameterValues, into gradients: inout Gradients) throws(TensorError) -> Tensor {
        var d = dy
        for (i, block) in blocks.enumerated().reversed() {
            d = try block.backward(traces[i], outputGradient: d, prefix: "\(prefix).resblocks.\(i)", parameters: p,
                                   into: &gradients)
        }
        return d
    }
}
