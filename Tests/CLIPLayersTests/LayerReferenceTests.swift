import CLIPLayers
import CLIPTensor
import Foundation
import Testing

// Each layer's one forward path against a plain double-precision implementation of what PyTorch computes, at odd
// sizes (widths that are not multiples of any kernel's panel, one row, one token). Tolerance: relative L2 error of
// the whole output ≤ 1e-5 in fp32, as for model parity.

/// Deterministic values in [-scale, scale).
struct Values {
    var rng: SplitMix64
    init(seed: UInt64) { rng = SplitMix64(state: seed) }
    mutating func tensor(_ shape: [Int], scale: Float = 1) -> Tensor {
        Tensor(uncheckedShape: shape, scalars: (0..<shape.reduce(1, *)).map { _ in rng.nextSigned() * scale })
    }
    /// A reader handing out fresh values for whatever a layer asks for; LayerNorm scales stay near 1.
    mutating func reader() -> ParameterReader {
        var copy = self
        rng = SplitMix64(state: rng.next())
        return ParameterReader(origin: "test") { name, shape in
            let t = copy.tensor(shape, scale: 0.3)
            guard name.hasSuffix("ln.weight") || name.contains("ln_") && name.hasSuffix(".weight") else { return t }
            return Tensor(uncheckedShape: shape, scalars: t.scalars.map { 1 + $0 })
        }
    }
}

func relativeError(_ a: [Float], _ b: [Double]) -> Double {
    var num = 0.0, den = 0.0
    for (x, y) in zip(a, b) { num += (Double(x) - y) * (Double(x) - y); den += y * y }
    return a.count == b.count ? (num / max(den, 1e-30)).squareRoot() : .infinity
}

// MARK: references (row-major, double precision)

/// x [rows, in] · Wᵀ (W [out, in]) + b → [rows, out].
func linearReference(_ x: [Double], rows: Int, _ w: Tensor, _ b: Tensor?) -> [Double] {
    let (out, inF) = (w.shape[0], w.shape[1])
    var y = [Double](repeating: 0, count: rows * out)
    for r in 0..<rows {
        for o in 0..<out {
            var s = b.map { Double($0.scalars[o]) } ?? 0
            for i in 0..<inF { s += x[r * inF + i] * Double(w.scalars[o * inF + i]) }
            y[r * out + o] = s
        }
    }
    return y
}

func layerNormReference(_ x: [Double], width: Int, _ g: Tensor, _ b: Tensor, eps: Double) -> [Double] {
    var y = x
    for r in 0..<(x.count / width) {
        let row = x[(r * width)..<((r + 1) * width)]
        let mean = row.reduce(0, +) / Double(width)
        let variance = row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(width)
        for i in 0..<width {
            y[r * width + i] = (x[r * width + i] - mean) / (variance + eps).squareRoot() * Double(g.scalars[i])
                + Double(b.scalars[i])
        }
    }
    return y
}

func activationReference(_ v: Double, _ a: Activation) -> Double {
    switch a {
    case .quickGELU: return v / (1 + exp(-1.702 * v))
    case .gelu: return v * 0.5 * (1 + erf(v / 2.0.squareRoot()))
    case .geluTanh: return 0.5 * v * (1 + tanh((2 / Double.pi).squareRoot() * (v + 0.044715 * v * v * v)))
    case .relu: return max(v, 0)
    }
}

/// `nn.MultiheadAttention` self-attention over x [batch, tokens, width].
func attentionReference(_ x: [Double], batch: Int, tokens: Int, _ a: MultiheadSelfAttention, causal: Bool) -> [Double] {
    let w = a.width, hd = w / a.heads
    let qkv = linearReference(x, rows: batch * tokens, a.inProj.weight, a.inProj.bias)
    var context = [Double](repeating: 0, count: batch * tokens * w)
    for b in 0..<batch {
        for h in 0..<a.heads {
            for i in 0..<tokens {
                let visible = causal ? i + 1 : tokens
                var scores = [Double](repeating: 0, count: visible)
                for j in 0..<visible {
                    var s = 0.0
                    for d in 0..<hd {
                        s += qkv[(b * tokens + i) * 3 * w + h * hd + d] * qkv[(b * tokens + j) * 3 * w + w + h * hd + d]
                    }
                    scores[j] = s / Double(hd).squareRoot()
                }
                let m = scores.max() ?? 0
                let e = scores.map { exp($0 - m) }, total = e.reduce(0, +)
                for d in 0..<hd {
                    var s = 0.0
                    for j in 0..<visible { s += e[j] / total * qkv[(b * tokens + j) * 3 * w + 2 * w + h * hd + d] }
                    context[(b * tokens + i) * w + h * hd + d] = s
                }
            }
        }
    }
    return linearReference(context, rows: batch * tokens, a.outProj.weight, a.outProj.bias)
}

func mlpReference(_ x: [Double], rows: Int, _ m: MLP) -> [Double] {
    linearReference(linearReference(x, rows: rows, m.fc.weight, m.fc.bias).map { activationReference($0, m.activation) },
                    rows: rows, m.proj.weight, m.proj.bias)
}

func blockReference(_ x: [Double], batch: Int, tokens: Int, _ blk: ResidualAttentionBlock, causal: Bool) -> [Double] {
    let w = blk.ln1.width, rows = batch * tokens
    let a = attentionReference(layerNormReference(x, width: w, blk.ln1.weight, blk.ln1.bias, eps: Double(blk.ln1.eps)),
                               batch: batch, tokens: tokens, blk.attention, causal: causal)
    let x1 = zip(x, a).map(+)
    let m = mlpReference(layerNormReference(x1, width: w, blk.ln2.weight, blk.ln2.bias, eps: Double(blk.ln2.eps)),
                         rows: rows, blk.mlp)
    return zip(x1, m).map(+)
}

/// Convolution of x [n, h, w, c] (channels last) with weight [o, c, k, k] → [n, ho, wo, o].
func convolutionReference(_ x: Tensor, _ weight: Tensor, _ bias: Tensor, stride: Int, padding: Int) -> [Double] {
    let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (o, k) = (weight.shape[0], weight.shape[2])
    let ho = (h + 2 * padding - k) / stride + 1, wo = (w + 2 * padding - k) / stride + 1
    var y = [Double](repeating: 0, count: n * ho * wo * o)
    for img in 0..<n {
        for oy in 0..<ho {
            for ox in 0..<wo {
                for oc in 0..<o {
                    var s = Double(bias.scalars[oc])
                    for ky in 0..<k {
                        for kx in 0..<k {
                            let iy = oy * stride + ky - padding, ix = ox * stride + kx - padding
                            guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                            for ic in 0..<c {
                                s += Double(x.scalars[((img * h + iy) * w + ix) * c + ic])
                                    * Double(weight.scalars[((oc * c + ic) * k + ky) * k + kx])
                            }
                        }
                    }
                    y[((img * ho + oy) * wo + ox) * o + oc] = s
                }
            }
        }
    }
    return y
}

// MARK: tests

@Test("Linear equals x·Wᵀ + b", arguments: [
    (rows: 1, inF: 5, outF: 3), (rows: 7, inF: 17, outF: 13), (rows: 33, inF: 64, outF: 96), (rows: 50, inF: 96, outF: 291),
])
func linearMatchesReference(rows: Int, inF: Int, outF: Int) throws {
    var v = Values(seed: UInt64(rows * 1000 + inF))
    let x = v.tensor([rows, inF]), w = v.tensor([outF, inF], scale: 0.3), b = v.tensor([outF])
    for bias in [b, nil] {
        let layer = try Linear(weight: w, bias: bias)
        #expect(layer.weight.scalars == w.scalars, "the packed weight unpacks to what was given")
        let expected = linearReference(x.scalars.map(Double.init), rows: rows, w, bias)
        #expect(relativeError(try layer(x).scalars, expected) <= 1e-5)
        // accumulate adds to what `y` holds: the residual connection.
        var y = v.tensor([rows, outF])
        let before = y.scalars
        try layer.forward(x, into: &y, accumulate: true)
        #expect(relativeError(y.scalars, zip(before, expected).map { Double($0) + $1 }) <= 1e-5)
    }
}

@Test("Linear applies its activation in the epilogue", arguments: [OutputActivation.quickGELU, .gelu, .relu, .geluTanh])
func linearActivationMatchesReference(_ activation: OutputActivation) throws {
    var v = Values(seed: 7)
    let (rows, inF, outF) = (9, 24, 37)
    let x = v.tensor([rows, inF]), w = v.tensor([outF, inF], scale: 0.5), b = v.tensor([outF])
    let layer = try Linear(weight: w, bias: b)
    var y = Tensor(uncheckedZeros: [rows, outF])
    try layer.forward(x, into: &y, activation: activation)
    let plain = linearReference(x.scalars.map(Double.init), rows: rows, w, b)
    let expected: [Double]
    switch activation {
    case .quickGELU: expected = plain.map { activationReference($0, .quickGELU) }
    case .gelu: expected = plain.map { activationReference($0, .gelu) }
    case .geluTanh: expected = plain.map { activationReference($0, .geluTanh) }
    case .relu: expected = plain.map { max($0, 0) }
    case .none: expected = plain
    }
    #expect(relativeError(y.scalars, expected) <= 1e-5)
}

/// The offset-100 case is there for a one-pass variance (E[x²] − E[x]²), which would lose about 2e-3 of it; fp32
/// itself cannot place the mean of such rows closer than half an ulp of 100 (4e-6, about 1e-5 of the spread),
/// which PyTorch's fp32 LayerNorm shares, hence its looser tolerance.
@Test("LayerNorm normalises each row", arguments: [
    (rows: 1, width: 3, eps: Float(1e-5), offset: Float(0), tolerance: 1e-5),
    (rows: 13, width: 77, eps: 1e-6, offset: 0.5, tolerance: 1e-5),
    (rows: 4, width: 768, eps: 1e-5, offset: 0, tolerance: 1e-5),
    (rows: 5, width: 77, eps: 1e-5, offset: 100, tolerance: 1e-4),
])
func layerNormMatchesReference(rows: Int, width: Int, eps: Float, offset: Float, tolerance: Double) throws {
    var v = Values(seed: UInt64(width))
    let norm = try LayerNorm(v.reader(), "ln", width: width, eps: eps)
    let x = Tensor(uncheckedShape: [rows, width], scalars: v.tensor([rows, width]).scalars.map { $0 + offset })
    let expected = layerNormReference(x.scalars.map(Double.init), width: width, norm.weight, norm.bias, eps: Double(eps))
    let error = relativeError(try norm(x).scalars, expected)
    #expect(error <= tolerance, "relative error \(error)")
}

@Test("Self-attention equals nn.MultiheadAttention", arguments: [
    (batch: 1, tokens: 1, width: 24, heads: 3, causal: true), (batch: 2, tokens: 13, width: 40, heads: 5, causal: true),
    (batch: 3, tokens: 50, width: 64, heads: 1, causal: false), (batch: 1, tokens: 77, width: 96, heads: 4, causal: true),
])
func attentionMatchesReference(batch: Int, tokens: Int, width: Int, heads: Int, causal: Bool) throws {
    var v = Values(seed: UInt64(tokens * 100 + width))
    let attention = try MultiheadSelfAttention(v.reader(), "attn", width: width, heads: heads)
    let x = v.tensor([batch, tokens, width])
    let expected = attentionReference(x.scalars.map(Double.init), batch: batch, tokens: tokens, attention, causal: causal)
    #expect(relativeError(try attention(x, causal: causal).scalars, expected) <= 1e-5)
}

@Test("Attention refuses heads that do not divide the width, naming the layer")
func attentionRefusesBadHeads() throws {
    var v = Values(seed: 1)
    let reader = v.reader()
    let error = #expect(throws: ModelLoadError.self) {
        try MultiheadSelfAttention(reader, "visual.transformer.resblocks.3.attn", width: 40, heads: 3)
    }
    let message = error.map { "\($0)" } ?? ""
    #expect(message.contains("visual.transformer.resblocks.3.attn") && message.contains("40"), "\(message)")
}

@Test("MLP equals c_proj(act(c_fc(x)))", arguments: [Activation.quickGELU, .gelu, .geluTanh, .relu])
func mlpMatchesReference(_ activation: Activation) throws {
    var v = Values(seed: 11)
    let (rows, width) = (11, 36)
    let mlp = try MLP(v.reader(), "mlp", width: width, activation: activation)
    #expect(mlp.fc.outFeatures == 4 * width)
    let x = v.tensor([rows, width])
    var out = Tensor(uncheckedZeros: [rows, width]), hidden = Tensor(uncheckedZeros: [rows, 4 * width])
    try mlp.forward(x, into: &out, hidden: &hidden)
    #expect(relativeError(out.scalars, mlpReference(x.scalars.map(Double.init), rows: rows, mlp)) <= 1e-5)
}

@Test("Residual block and stack equal the pre-norm transformer", arguments: [true, false])
func transformerMatchesReference(causal: Bool) throws {
    var v = Values(seed: causal ? 3 : 4)
    let (batch, tokens, width, heads, layers) = (2, 9, 48, 3, 2)
    let stack = try Transformer(v.reader(), "t", width: width, layers: layers, heads: heads, activation: .quickGELU,
                                eps: 1e-5)
    #expect(stack.blocks.count == layers)
    let x0 = v.tensor([batch, tokens, width])
    var expected = x0.scalars.map(Double.init)
    for blk in stack.blocks { expected = blockReference(expected, batch: batch, tokens: tokens, blk, causal: causal) }
    var x = x0
    try stack.forward(&x, causal: causal)
    #expect(relativeError(x.scalars, expected) <= 1e-5)
}

@Test("Conv2d equals a direct convolution", arguments: [
    (n: 1, size: 7, c: 3, o: 5, k: 3, stride: 2, padding: 1), (n: 2, size: 9, c: 16, o: 33, k: 1, stride: 1, padding: 0),
    (n: 1, size: 6, c: 32, o: 16, k: 3, stride: 1, padding: 1), (n: 2, size: 11, c: 3, o: 8, k: 5, stride: 3, padding: 0),
])
func convolutionMatchesReference(n: Int, size: Int, c: Int, o: Int, k: Int, stride: Int, padding: Int) throws {
    var v = Values(seed: UInt64(size * 10 + c))
    let weight = v.tensor([o, c, k, k], scale: 0.3), bias = v.tensor([o]), x = v.tensor([n, size, size, c])
    let conv = try Conv2d(weight: weight, bias: bias, stride: stride, padding: padding)
    let expected = convolutionReference(x, weight, bias, stride: stride, padding: padding)
    #expect(relativeError(try conv.forward(x).scalars, expected) <= 1e-5)
    #expect(relativeError(try conv.forward(x, relu: true).scalars, expected.map { max($0, 0) }) <= 1e-5)
}

@Test("Forward paths refuse buffers of the wrong shape instead of writing past them")
func forwardRefusesWrongShapes() throws {
    var v = Values(seed: 5)
    let layer = try Linear(weight: v.tensor([8, 4]), bias: nil)
    var small = Tensor(uncheckedZeros: [2, 7])
    #expect(throws: TensorError.self) { try layer.forward(v.tensor([2, 4]), into: &small) }
    #expect(throws: TensorError.self) { try layer(v.tensor([2, 5])) }
    let norm = try LayerNorm(v.reader(), "ln", width: 4)
    #expect(throws: TensorError.self) { try norm(v.tensor([3, 5])) }
    let attention = try MultiheadSelfAttention(v.reader(), "attn", width: 8, heads: 2)
    #expect(throws: TensorError.self) { try attention(v.tensor([2, 3, 4]), causal: false) }
    let conv = try Conv2d(weight: v.tensor([2, 3, 3, 3]), bias: v.tensor([2]), stride: 1, padding: 0)
    #expect(throws: TensorError.self) { try conv.forward(v.tensor([1, 2, 2, 3])) }
}

// MARK: precision as a pass

@Test("converted(to:) keeps a layer's function within its precision's error",
      .enabled(if: Precision.int8.isAvailable || Precision.bf16.isAvailable, "this CPU has neither int8 nor bf16 kernels"),
      arguments: [Precision.int8, .bf16])
func conversionKeepsTheFunction(_ precision: Precision) throws {
    var v = Values(seed: 21)
    let (rows, width) = (17, 64)
    let fp32 = try MLP(v.reader(), "mlp", width: width, activation: .quickGELU)
    guard precision.isAvailable else {
        // Refused by name, never silently computed in fp32.
        #expect(throws: TensorError.self) { try fp32.converted(to: precision) }
        return
    }
    let reduced = try fp32.converted(to: precision)
    #expect(reduced.fc.precision == precision && reduced.proj.precision == precision)
    #expect(fp32.fc.precision == .fp32, "the original is unchanged")
    let x = v.tensor([rows, width])
    var a = Tensor(uncheckedZeros: [rows, width]), b = a, hidden = Tensor(uncheckedZeros: [rows, 4 * width])
    try fp32.forward(x, into: &a, hidden: &hidden)
    try reduced.forward(x, into: &b, hidden: &hidden)
    let error = relativeError(b.scalars, a.scalars.map(Double.init))
    #expect(error <= (precision == .int8 ? 0.03 : 0.01), "\(precision.rawValue): relative error \(error)")
    #expect(error > 0, "a reduced-precision product that equals fp32 exactly was not converted")
}

// MARK: attention pooling

/// The tensors a reader handed out, by name (for references built from the same values).
final class HandedOut: @unchecked Sendable {
    var values: [String: Tensor] = [:]
}

/// SigLIP's pooling head as PyTorch computes it: `nn.MultiheadAttention(probe, x, x)` then a + mlp(norm(a)).
func attentionPoolingReference(_ x: [Double], batch: Int, tokens: Int, width w: Int, heads: Int,
                               _ p: [String: Tensor], eps: Double, activation: Activation) -> [Double] {
    let weight = p["pool.attn.in_proj_weight"]!, bias = p["pool.attn.in_proj_bias"]!
    func part(_ i: Int) -> (Tensor, Tensor) {
        (Tensor(uncheckedShape: [w, w], scalars: Array(weight.scalars[(i * w * w)..<((i + 1) * w * w)])),
         Tensor(uncheckedShape: [w], scalars: Array(bias.scalars[(i * w)..<((i + 1) * w)])))
    }
    let (wq, bq) = part(0), (wk, bk) = part(1), (wv, bv) = part(2)
    let q = linearReference(p["pool.probe"]!.scalars.map(Double.init), rows: 1, wq, bq)
    let k = linearReference(x, rows: batch * tokens, wk, bk), v = linearReference(x, rows: batch * tokens, wv, bv)
    let hd = w / heads
    var context = [Double](repeating: 0, count: batch * w)
    for b in 0..<batch {
        for h in 0..<heads {
            var s = (0..<tokens).map { t in
                (0..<hd).reduce(0.0) { $0 + q[h * hd + $1] * k[(b * tokens + t) * w + h * hd + $1] } / Double(hd).squareRoot()
            }
            let m = s.max()!
            s = s.map { exp($0 - m) }
            let total = s.reduce(0, +)
            for t in 0..<tokens {
                for d in 0..<hd { context[b * w + h * hd + d] += s[t] / total * v[(b * tokens + t) * w + h * hd + d] }
            }
        }
    }
    let a = linearReference(context, rows: batch, p["pool.attn.out_proj.weight"]!, p["pool.attn.out_proj.bias"]!)
    let normed = layerNormReference(a, width: w, p["pool.norm.weight"]!, p["pool.norm.bias"]!, eps: eps)
    let hidden = linearReference(normed, rows: batch, p["pool.mlp.c_fc.weight"]!, p["pool.mlp.c_fc.bias"]!)
        .map { activationReference($0, activation) }
    let mlp = linearReference(hidden, rows: batch, p["pool.mlp.c_proj.weight"]!, p["pool.mlp.c_proj.bias"]!)
    return zip(a, mlp).map { $0 + $1 }
}

@Test("AttentionPooling equals nn.MultiheadAttention(probe, x, x) plus its MLP", arguments: [
    (batch: 1, tokens: 1, width: 8, heads: 1), (batch: 3, tokens: 25, width: 48, heads: 3),
    (batch: 2, tokens: 7, width: 36, heads: 4),
])
func attentionPoolingMatchesReference(batch: Int, tokens: Int, width: Int, heads: Int) throws {
    var v = Values(seed: UInt64(tokens * 7 + width))
    let handed = HandedOut()
    var values = Values(seed: UInt64(width))
    let reader = ParameterReader(origin: "test") { name, shape in
        var t = values.tensor(shape, scale: 0.3)
        if name == "pool.norm.weight" { t = Tensor(uncheckedShape: shape, scalars: t.scalars.map { 1 + $0 }) }
        handed.values[name] = t
        return t
    }
    let pool = try AttentionPooling(reader, "pool", width: width, heads: heads, activation: .geluTanh, eps: 1e-6)
    let x = v.tensor([batch, tokens, width])
    let expected = attentionPoolingReference(x.scalars.map(Double.init), batch: batch, tokens: tokens, width: width,
                                             heads: heads, handed.values, eps: 1e-6, activation: .geluTanh)
    let y = try pool.forward(x)
    #expect(y.shape == [batch, width])
    #expect(relativeError(y.scalars, expected) <= 1e-5)
    var other = Values(seed: 1)
    let badReader = other.reader()
    #expect(throws: ModelLoadError.self) {
        try AttentionPooling(badReader, "pool", width: 10, heads: 3, activation: .gelu, eps: 1e-6)
    }
}
