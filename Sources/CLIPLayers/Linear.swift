import CLIPTensor

/// y = x · Wᵀ + b, PyTorch's `nn.Linear` layout: `weight` [out, in], `bias` [out]. The weight is held only in
/// the GEMM kernel's packed layout (packed once at load).
public struct Linear: Sendable {
    public let packedWeight: PackedMatrix
    public let bias: Tensor?

    public var inFeatures: Int { packedWeight.k }
    public var outFeatures: Int { packedWeight.n }

    /// The weight [out, in], rebuilt from the packed form (for inspection and gradient code; not used by `apply`).
    public var weight: Tensor {
        let t = packedWeight.unpacked()  // [in, out]
        let (k, n) = (t.shape[0], t.shape[1])
        var out = [Float](repeating: 0, count: k * n)
        for i in 0..<k { for j in 0..<n { out[j * k + i] = t.scalars[i * n + j] } }
        return Tensor(uncheckedShape: [n, k], scalars: out)
    }

    public init(weight: Tensor, bias: Tensor?, precision: Precision = .fp32) throws(TensorError) {
        packedWeight = try PackedMatrix(weight, transposed: true, precision: precision)
        self.bias = bias
    }

    /// Loads `<prefix>.weight` [out, in] and, if `hasBias`, `<prefix>.bias` [out].
    public init(_ r: ParameterReader, _ prefix: String, in inFeatures: Int, out outFeatures: Int,
                bias hasBias: Bool = true) throws(ModelLoadError) {
        let w = try r.tensor("\(prefix).weight", shape: [outFeatures, inFeatures])
        do {
            packedWeight = try PackedMatrix(w, transposed: true, precision: r.precision)
        } catch {
            throw .architecture("\(prefix).weight: \(error)", origin: r.origin)
        }
        bias = hasBias ? try r.tensor("\(prefix).bias", shape: [outFeatures]) : nil
    }

    /// Applies the layer to `rows` consecutive vectors of `inFeatures` at `x`, writing `rows × outFeatures`
    /// to `out`, or adding to it when `accumulate` (a residual connection without a separate pass). The bias and
    /// `activation` are applied by the GEMM to each output tile as it finishes.
    public func apply(_ x: UnsafePointer<Float>, rows: Int, out: UnsafeMutablePointer<Float>, accumulate: Bool = false,
                      activation: OutputActivation = .none, parallel: Bool = true) {
        let n = outFeatures
        guard let bias else {
            packedWeight.multiply(x, rows: rows, lda: inFeatures, into: out, ldc: n, accumulate: accumulate,
                                  activation: activation, parallel: parallel)
            return
        }
        bias.scalars.withUnsafeBufferPointer { b in
            packedWeight.multiply(x, rows: rows, lda: inFeatures, into: out, ldc: n, accumulate: accumulate,
                                  bias: b.baseAddress!, activation: activation, parallel: parallel)
        }
    }

    /// `x` [.., in] → [.., out].
    public func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        guard x.rank >= 1, x.shape[x.rank - 1] == inFeatures else {
            throw .shapeMismatch(operation: "Linear", x.shape, [outFeatures, inFeatures])
        }
        var shape = x.shape
        shape[shape.count - 1] = outFeatures
        let rows = x.count / max(inFeatures, 1)
        var out = Tensor(uncheckedZeros: shape)
        x.scalars.withUnsafeBufferPointer { xp in
            out.scalars.withUnsafeMutableBufferPointer { op in
                apply(xp.baseAddress!, rows: rows, out: op.baseAddress!)
            }
        }
        return out
    }
}

/// LayerNorm over the last dimension, `weight` and `bias` [width].
public struct LayerNorm: Sendable {
    public let weight: Tensor
    public let bias: Tensor
    public let eps: Float

    public init(_ r: ParameterReader, _ prefix: String, width: Int, eps: Float = 1e-5) throws(ModelLoadError) {
        weight = try r.tensor("\(prefix).weight", shape: [width])
        bias = try r.tensor("\(prefix).bias", shape: [width])
        self.eps = eps
    }

    /// `x` [.., width] → [.., width].
    public func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        try layerNorm(x, weight: weight, bias: bias, eps: eps)
    }
}
