import CLIPLayers
import CLIPTensor
import Testing

// Each backward pass against central differences of the double-precision reference forward (LayerReferenceTests):
// for L = Σ c ⊙ block(x), dL/dx and sampled dL/dθ for every parameter. Odd sizes: width 10 in 2 heads of 5, 3 tokens.
// Tolerance: relative L2 error ≤ 1e-4 (the gradient target), over all of dx and over each parameter's samples.

/// A block whose parameters are `values`, and L = Σ c ⊙ reference(x) in double.
private func referenceLoss(_ x: [Double], _ c: [Float], _ values: [String: Tensor], activation: Activation, causal: Bool,
                           batch: Int, tokens: Int, width: Int) throws -> Double {
    let block = try makeBlock(values, activation: activation, width: width)
    let y = blockReference(x, batch: batch, tokens: tokens, block, causal: causal)
    return zip(y, c).reduce(0) { $0 + $1.0 * Double($1.1) }
}

private func makeBlock(_ values: [String: Tensor], activation: Activation, width: Int) throws -> ResidualAttentionBlock {
    let reader = ParameterReader(origin: "test") { name, _ in values[name]! }
    return try ResidualAttentionBlock(reader, "b", width: width, heads: 2, activation: activation, eps: 1e-5)
}

@Test("a residual attention block's backward equals finite differences (both activations, causal or not)",
      arguments: [(Activation.quickGELU, true), (.quickGELU, false), (.gelu, true)])
func blockBackwardMatchesFiniteDifferences(activation: Activation, causal: Bool) throws {
    let (batch, tokens, width) = (2, 3, 10)
    var values: [String: Tensor] = [:], names: [String] = []
    var v = Values(seed: 42)
    let recorder = ParameterReader(origin: "test") { name, shape in
        var t = v.tensor(shape, scale: 0.4)
        if name.contains("ln_") && name.hasSuffix(".weight") { t = Tensor(uncheckedShape: shape, scalars: t.scalars.map { 1 + $0 }) }
        values[name] = t
        names.append(name)
        return t
    }
    let block = try ResidualAttentionBlock(recorder, "b", width: width, heads: 2, activation: activation, eps: 1e-5)
    let x = v.tensor([batch, tokens, width]), c = v.tensor([batch, tokens, width]).scalars
    var y = x
    let trace = try block.forwardTraining(&y, causal: causal)
    var gradients = Gradients()
    let dx = try block.backward(trace, outputGradient: Tensor(shape: x.shape, scalars: c), prefix: "b", parameters: values,
                                into: &gradients)
    let h = 1e-3
    let loss = { (x: [Double], values: [String: Tensor]) throws -> Double in
        try referenceLoss(x, c, values, activation: activation, causal: causal, batch: batch, tokens: tokens, width: width)
    }
    let x0 = x.scalars.map(Double.init)
    var numeric: [Double] = []
    for i in 0..<x0.count {
        var plus = x0, minus = x0
        plus[i] += h
        minus[i] -= h
        numeric.append((try loss(plus, values) - loss(minus, values)) / (2 * h))
    }
    #expect(relativeError(dx.scalars, numeric) <= 1e-4, "dx: \(relativeError(dx.scalars, numeric))")
    var rng = SplitMix64(state: 7)
    for name in names {
        let g = try #require(gradients[name], "no gradient for \(name)")
        let p = values[name]!
        var got: [Float] = [], want: [Double] = []
        for _ in 0..<min(6, p.count) {
            let i = Int(rng.next() % UInt64(p.count))
            var up = values, down = values
            up[name]!.scalars[i] += Float(h)
            down[name]!.scalars[i] -= Float(h)
            let step = Double(up[name]!.scalars[i]) - Double(down[name]!.scalars[i])
            want.append((try loss(x0, up) - loss(x0, down)) / step)
            got.append(g.scalars[i])
        }
        #expect(relativeError(got, want) <= 1e-4, "\(name): \(relativeError(got, want))")
    }
}
