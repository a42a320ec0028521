import CLIPTensor

/// y = x · Wᵀ + b, PyTorch's `nn.Linear` layout: `weight` [out, in], `bias` [out].
public struct Linear: Sendable {
    public let weight: Tensor
    public let bias: Tensor?

    public var inFeatures: Int { weight.shape[1] }
    public var outFeatures: Int { weight.shape[0] }

    public init(weight: Tensor, bias: Tensor?) {
        self.weight = weight
        self.bias = bias
    }

    /// Loads `<prefix>.weight` [out, in] and, if `hasBias`, `<prefix>.bias` [out].
    public init(_ r: ParameterReader, _ prefix: String, in inFeatures: Int, out outFeatures: Int,
                bias hasBias: Bool = true) throws(ModelLoadError) {
        weight = try r.tensor("\(prefix).weight", shape: [outFeatures, inFeatures])
        bias = hasBias ? try r.tensor("\(prefix).bias", shape: [outFeatures]) : nil
    }

    /// Applies the layer to `rows` consecutive vectors of `inFeatures` at `x`, writing `rows × outFeatures`
    /// to `out`, or adding to it when `accumulate` (a residual connection without a separate pass).
    public func apply(_ x: UnsafePointer<Float>, rows: Int, out: UnsafeMutablePointer<Float>, accumulate: Bool = false,
                      parallel: Bool = true) {
        let (n, k) = (outFeatures, inFeatures)
        weight.scalars.withUnsafeBufferPointer { w in
            sgemm(transA: false, transB: true, m: rows, n: n, k: k, a: x, lda: k, b: w.baseAddress!, ldb: k,
                  beta: accumulate ? 1 : 0, c: out, ldc: n, parallel: parallel)
        }
        if let bias {
            bias.scalars.withUnsafeBufferPointer { b in addBiasRows(out, rows: rows, width: n, bias: b.baseAddress!) }
        }
    }

    /// `x` [.., in] → [.., out].
    public func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        guard x.rank >= 1, x.shape[x.rank - 1] == inFeatures else {
            throw .shapeMismatch(operation: "Linear", x.shape, weight.shape)
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
