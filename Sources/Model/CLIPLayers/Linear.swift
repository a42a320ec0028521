import CLIPTensor

/// y = x · Wᵀ + b, PyTorch's `nn.Linear` layout: `weight` [out, in], `bias` [out]. The weight is held only in
/// the GEMM kernel's packed layout (packed once at load).
package struct Linear: Sendable {
    /// The weight as the GEMM's right-hand side `[in, out]`, in the kernel's packed layout.
    package let packedWeight: PackedMatrix
    /// `[out]`, or nil for a layer without bias.
    package let bias: Tensor?

    /// Width of an input row.
    package var inFeatures: Int { packedWeight.k }
    /// Width of an output row.
    package var outFeatures: Int { packedWeight.n }
    /// The arithmetic the product runs in.
    package var precision: Precision { packedWeight.precision }

    /// The weight [out, in], rebuilt from the packed form (for inspection and gradient code; not used by `forward`).
    package var weight: Tensor {
        let t = packedWeight.unpacked()  // [in, out]
        let (k, n) = (t.shape[0], t.shape[1])
        var out = [Float](repeating: 0, count: k * n)
        for i in 0..<k { for j in 0..<n { out[j * k + i] = t.scalars[i * n + j] } }
        return Tensor(uncheckedShape: [n, k], scalars: out)
    }

    /// Packs `weight` [out, in] for `kernel` (default: the fastest for `precision` on this CPU); `bias` is `[out]` or
    /// nil.
    package init(weight: Tensor, bias: Tensor?, precision: Precision = .fp32, kernel: GEMMKernel? = nil) throws(TensorError) {
        packedWeight = try PackedMatrix(weight, transposed: true, kernel: kernel, precision: precision)
        self.bias = bias
    }

    init(packedWeight: PackedMatrix, bias: Tensor?) {
        self.packedWeight = packedWeight
        self.bias = bias
    }

    /// Loads `<prefix>.weight` [out, in] (stored as `weightShape` when given: a 1×1 convolution's [out, in, 1, 1])
    /// and, if `hasBias`, `<prefix>.bias` [out].
    package init(_ r: ParameterReader, _ prefix: String, in inFeatures: Int, out outFeatures: Int,
                bias hasBias: Bool = true, weightShape: [Int]? = nil) throws(ModelLoadError) {
        let names = ["\(prefix).weight"] + (hasBias ? ["\(prefix).bias"] : [])
        (packedWeight, bias) = try r.packed(names[0], k: inFeatures, n: outFeatures, bias: hasBias, consumes: names) { () throws(ModelLoadError) in
            let stored = try r.tensor(names[0], shape: weightShape ?? [outFeatures, inFeatures])
            let w = Tensor(uncheckedShape: [outFeatures, inFeatures], scalars: stored.scalars)
            let packed: PackedMatrix
            do {
                packed = try PackedMatrix(w, transposed: true)
            } catch {
                throw .architecture("\(prefix).weight: \(error)", origin: r.origin)
            }
            return (packed, hasBias ? try r.tensor(names[1], shape: [outFeatures]) : nil)
        }
    }

    /// A layer whose weight [out, in] and bias [out] `values` derives from the checkpoint tensors `consumes` (fused
    /// or rescaled), packed under the name `packed` so that a packed-weight cache serves it next time.
    package init(_ r: ParameterReader, packed name: String, in inFeatures: Int, out outFeatures: Int, bias hasBias: Bool = true,
                 consumes: [String], values: () throws(ModelLoadError) -> (weight: Tensor, bias: Tensor?)) throws(ModelLoadError) {
        (packedWeight, bias) = try r.packed(name, k: inFeatures, n: outFeatures, bias: hasBias, consumes: consumes) { () throws(ModelLoadError) in
            let (weight, bias) = try values()
            do {
                return (try PackedMatrix(weight, transposed: true), bias)
            } catch {
                throw .architecture("\(name): \(error)", origin: r.origin)
            }
        }
    }

    /// Each of `parts`' `<part>.weight` [out, in] and `<part>.bias` [out] stacked row-wise into one Linear
    /// [parts·out, in], packed under the first part's weight name: Hugging Face's separate query, key and value
    /// projections as the one fused product attention runs.
    package init(_ r: ParameterReader, stacking parts: [String], in inFeatures: Int, out partFeatures: Int) throws(ModelLoadError) {
        let stacked = parts.count * partFeatures
        try self.init(r, packed: "\(parts[0]).weight", in: inFeatures, out: stacked,
                      consumes: parts.flatMap { ["\($0).weight", "\($0).bias"] }) { () throws(ModelLoadError) in
            var weight: [Float] = [], bias: [Float] = []
            for part in parts {
                weight += try r.tensor("\(part).weight", shape: [partFeatures, inFeatures]).scalars
                bias += try r.tensor("\(part).bias", shape: [partFeatures]).scalars
            }
            return (Tensor(uncheckedShape: [stacked, inFeatures], scalars: weight), Tensor(uncheckedShape: [stacked], scalars: bias))
        }
    }

    /// `<prefix>.weight` [out, in] (stored as `weightShape` when given: a 1×1 convolution's [out, in, 1, 1]) and
    /// `<prefix>.bias` [out] with every output row and bias scaled by `<scale>` [out] (timm's layer scale, stored as
    /// `scaleShape`), packed under the weight's name.
    package init(_ r: ParameterReader, _ prefix: String, scaledBy scale: String, scaleShape: [Int], in inFeatures: Int,
                 out outFeatures: Int, weightShape: [Int]? = nil) throws(ModelLoadError) {
        let names = ["\(prefix).weight", "\(prefix).bias", scale]
        try self.init(r, packed: names[0], in: inFeatures, out: outFeatures, consumes: names) { () throws(ModelLoadError) in
            let w = try r.tensor(names[0], shape: weightShape ?? [outFeatures, inFeatures])
            let b = try r.tensor(names[1], shape: [outFeatures])
            let gamma = try r.tensor(names[2], shape: scaleShape)
            var scaled = w.scalars, bias = b.scalars
            for o in 0..<outFeatures {
                let g = Double(gamma.scalars[o])
                for i in 0..<inFeatures { scaled[o * inFeatures + i] = Float(Double(scaled[o * inFeatures + i]) * g) }
                bias[o] = Float(Double(bias[o]) * g)
            }
            return (Tensor(uncheckedShape: [outFeatures, inFeatures], scalars: scaled),
                    Tensor(uncheckedShape: [outFeatures], scalars: bias))
        }
    }

    /// `x` [.., in] → `y` [.., out]: y = x·Wᵀ + b, or y += x·Wᵀ + b when `accumulate` (a residual connection
    /// without a separate pass), then `activation`; bias and activation are applied by the GEMM to each output tile
    /// as it finishes. `y` must hold as many rows as `x` (its shape is kept).
    package func forward(_ x: Tensor, into y: inout Tensor, accumulate: Bool = false,
                        activation: OutputActivation = .none) throws(TensorError) {
        try packedWeight.multiply(x, into: &y, accumulate: accumulate, bias: bias, activation: activation)
    }

    /// `x` [.., in] → [.., out].
    package func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        guard x.rank >= 1 else { throw .shapeMismatch(operation: "Linear", x.shape, [outFeatures, inFeatures]) }
        var shape = x.shape
        shape[shape.count - 1] = outFeatures
        var y = Tensor(uninitialized: shape)
        try forward(x, into: &y)
        return y
    }

    /// The same layer computing in `precision` (weights re-packed from their fp32 values).
    package func converted(to precision: Precision, kernel: GEMMKernel? = nil) throws(TensorError) -> Linear {
        Linear(packedWeight: try packedWeight.converted(to: precision, kernel: kernel), bias: bias)
    }
}

/// LayerNorm over the last dimension, `weight` and `bias` [width].
package struct LayerNorm: Sendable {
    /// Per-channel scale γ: `[width]`.
    package let weight: Tensor
    /// Per-channel shift β: `[width]`.
    package let bias: Tensor
    /// Added to the variance before its square root.
    package let eps: Float

    /// Channels normalised over.
    package var width: Int { weight.count }

    /// Reads `<prefix>.weight` and `<prefix>.bias`, both `[width]`.
    package init(_ r: ParameterReader, _ prefix: String, width: Int, eps: Float = 1e-5) throws(ModelLoadError) {
        weight = try r.tensor("\(prefix).weight", shape: [width])
        bias = try r.tensor("\(prefix).bias", shape: [width])
        self.eps = eps
    }

    /// `x` [.., width] → `y` [.., width] (same element count; `y`'s shape is kept), rows split over the cores.
    package func forward(_ x: Tensor, into y: inout Tensor) throws(TensorError) {
        guard y.count == x.count else { throw .shapeMismatch(operation: "LayerNorm", x.shape, [width]) }
        let rows = try rowCount(x)
        guard rows > 0 else { return }
        x.scalars.withUnsafeBufferPointer { xp in
            y.scalars.withUnsafeMutableBufferPointer { yp in normalizeRows(xp.baseAddress!, rows: rows, into: yp.baseAddress!) }
        }
    }

    /// `x` [.., width] normalised in place.
    package func normalize(_ x: inout Tensor) throws(TensorError) {
        let rows = try rowCount(x)
        guard rows > 0 else { return }
        x.scalars.withUnsafeMutableBufferPointer { xp in normalizeRows(xp.baseAddress!, rows: rows, into: xp.baseAddress!) }
    }

    /// The rows of `x` [.., width]; throws unless its last dimension is the width.
    private func rowCount(_ x: Tensor) throws(TensorError) -> Int {
        guard x.rank >= 1, x.shape[x.rank - 1] == width else { throw .shapeMismatch(operation: "LayerNorm", x.shape, [width]) }
        return width == 0 ? 0 : x.count / width
    }

    /// `rows` rows from `x` into `out` (which may be `x`).
    private func normalizeRows(_ x: UnsafePointer<Float>, rows: Int, into out: UnsafeMutablePointer<Float>) {
        weight.scalars.withUnsafeBufferPointer { g in
            bias.scalars.withUnsafeBufferPointer { b in
                layerNormRows(x, rows: rows, width: width, weight: g.baseAddress!, bias: b.baseAddress!, eps: eps, out: out)
            }
        }
    }

    /// `x` [.., width] → [.., width].
    package func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        var y = Tensor(uninitialized: x.shape)
        try forward(x, into: &y)
        return y
    }
}

extension Linear {
    /// The backward pass of `forward` (without activation): `x` [rows, in] the input, `dy` [rows, out] the gradient
    /// of the output, `weight` [out, in] the values this layer was packed from. Adds dW = dyᵀ·x to `names.weight`
    /// and Σ_rows dy to `names.bias` in `gradients`; returns dx = dy·W [rows, in] when `inputGradient`. A bf16 layer
    /// computes both products in bf16 with fp32 sums, as its forward product does (mixed-precision training); the
    /// bias gradient is an fp32 sum either way.
    package func backward(input x: Tensor, outputGradient dy: Tensor, weight: Tensor,
                         names: (weight: String, bias: String?), into gradients: inout Gradients,
                         inputGradient: Bool = true) throws(TensorError) -> Tensor? {
        let (n, k) = (outFeatures, inFeatures)
        let rows = x.count / max(k, 1)
        guard x.count == rows * k, dy.count == rows * n, weight.shape == [n, k] else {
            throw .shapeMismatch(operation: "Linear.backward", x.shape, dy.shape)
        }
        guard rows > 0 else { return inputGradient ? Tensor(uncheckedZeros: x.shape) : nil }
        let bf16 = precision == .bf16
        dy.scalars.withUnsafeBufferPointer { dyp in
            x.scalars.withUnsafeBufferPointer { xp in
                gradients.accumulate(names.weight, shape: [n, k]) { g in
                    sgemm(transA: true, transB: false, m: n, n: k, k: rows, a: dyp.baseAddress!, lda: n,
                          b: xp.baseAddress!, ldb: k, beta: 1, c: g, ldc: k, bf16: bf16)
                }
            }
            if let biasName = names.bias {
                gradients.accumulate(biasName, shape: [n]) { g in addRowSums(dyp.baseAddress!, rows: rows, width: n, into: g) }
            }
        }
        guard inputGradient else { return nil }
        return Tensor(uncheckedShape: x.shape) { dx in
            dy.scalars.withUnsafeBufferPointer { dyp in
                weight.scalars.withUnsafeBufferPointer { wp in
                    sgemm(transA: false, transB: false, m: rows, n: k, k: n, a: dyp.baseAddress!, lda: n,
                          b: wp.baseAddress!, ldb: k, c: dx.baseAddress!, ldc: k, bf16: bf16)
                }
            }
        }
    }
}

extension LayerNorm {
    /// The backward pass of `forward`: `x` [.., width] the input, `dy` the gradient of the output (same shape).
    /// Adds dγ and dβ to `<prefix>.weight` and `<prefix>.bias` in `gradients`; returns dx. Mean and variance are
    /// recomputed from `x` (cheaper to keep than to store).
    package func backward(input x: Tensor, outputGradient dy: Tensor, prefix: String,
                         into gradients: inout Gradients) throws(TensorError) -> Tensor {
        guard x.rank >= 1, x.shape[x.rank - 1] == width, dy.count == x.count else {
            throw .shapeMismatch(operation: "LayerNorm.backward", x.shape, dy.shape)
        }
        let w = width, rows = w == 0 ? 0 : x.count / w
        var dGamma = [Float](repeating: 0, count: w), dBeta = [Float](repeating: 0, count: w)
        let dx = Tensor(uncheckedShape: x.shape) { dxp in
            x.scalars.withUnsafeBufferPointer { xp in
                dy.scalars.withUnsafeBufferPointer { dyp in
                    weight.scalars.withUnsafeBufferPointer { gp in
                        guard rows > 0 else { return }
                        layerNormBackwardRows(xp.baseAddress!, dyp.baseAddress!, rows: rows, width: w, gamma: gp.baseAddress!,
                                              eps: eps, dx: dxp.baseAddress!, dGamma: &dGamma, dBeta: &dBeta)
                    }
                }
            }
        }
        dGamma.withUnsafeBufferPointer { gradients.add("\(prefix).weight", shape: [w], $0.baseAddress!) }
        dBeta.withUnsafeBufferPointer { gradients.add("\(prefix).bias", shape: [w], $0.baseAddress!) }
        return dx
    }
}
