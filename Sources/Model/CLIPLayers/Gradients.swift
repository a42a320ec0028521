import CLIPTensor

/// Gradients of a model's parameters by checkpoint name (`visual.transformer.resblocks.0.attn.in_proj_weight`, …),
/// each the shape of its parameter. Backward passes add to them, so a parameter used twice (or a batch split into
/// micro-batches) sums its contributions, as PyTorch's `.grad` does.
package struct Gradients: Sendable {
    /// The gradient of each parameter a backward pass reached.
    package private(set) var tensors: [String: Tensor] = [:]

    /// No gradients yet.
    package init() {}

    /// The gradient of `name`, or nil when no backward pass reached it.
    package subscript(name: String) -> Tensor? { tensors[name] }

    /// Hands `body` the gradient buffer of `name` (zeros the first time), to add into.
    package mutating func accumulate(_ name: String, shape: [Int], _ body: (UnsafeMutablePointer<Float>) -> Void) {
        if tensors[name] == nil { tensors[name] = Tensor(uncheckedZeros: shape) }
        tensors[name]!.scalars.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
    }

    /// Adds `values` (the shape `shape`) to the gradient of `name`.
    package mutating func add(_ name: String, shape: [Int], _ values: UnsafePointer<Float>) {
        let count = shape.reduce(1, *)
        accumulate(name, shape: shape) { g in for i in 0..<count { g[i] += values[i] } }
    }

    /// Every gradient multiplied by `factor` (gradient clipping, averaging accumulated micro-batches).
    package mutating func scale(by factor: Float) {
        for name in Array(tensors.keys) {
            tensors[name]!.scalars.withUnsafeMutableBufferPointer { g in
                for i in g.indices { g[i] *= factor }  // vectorised; a few MB at most per step
            }
        }
    }

    /// The L2 norm over all gradients together (what gradient clipping bounds), accumulated in double.
    package var globalNorm: Double {
        var s = 0.0
        for name in tensors.keys.sorted() {
            tensors[name]!.scalars.withUnsafeBufferPointer { s += sumOfSquares($0.baseAddress!, count: $0.count) }
        }
        return s.squareRoot()
    }
}

/// The values of a model's parameters by checkpoint name, as backward passes read them (a Linear layer holds only
/// its packed weight; its input gradient needs the weight itself).
package typealias ParameterValues = [String: Tensor]

extension ParameterValues {
    /// The value of `name`, or an error naming it.
    package func value(_ name: String) throws(TensorError) -> Tensor {
        guard let t = self[name] else { throw .missingParameter(name) }
        return t
    }
}

extension Gradients {
    /// Gives the gradient of `name` the parameter's own shape (a convolution weight trained as a [out, in] matrix).
    package mutating func reshape(_ name: String, to shape: [Int]) throws(TensorError) {
        guard let t = tensors[name] else { return }
        tensors[name] = try t.reshaped(shape)
    }
}

/// The backward pass of y = x·P for a plain projection parameter P [in, out] (CLIP's `proj` and
/// `text_projection`): `x` [rows, in], `dy` [rows, out]; adds xᵀ·dy to `name`, returns dx = dy·Pᵀ [rows, in].
package func projectionBackward(input x: Tensor, outputGradient dy: Tensor, projection p: Tensor, name: String,
                               into gradients: inout Gradients) throws(TensorError) -> Tensor {
    guard p.rank == 2, x.count == x.count / max(p.shape[0], 1) * p.shape[0],
          dy.count == x.count / max(p.shape[0], 1) * p.shape[1] else {
        throw .shapeMismatch(operation: "projection backward", x.shape, p.shape)
    }
    let (k, n) = (p.shape[0], p.shape[1]), rows = x.count / max(k, 1)
    guard rows > 0, k > 0, n > 0 else { return Tensor(uncheckedZeros: x.shape) }
    x.scalars.withUnsafeBufferPointer { xp in
        dy.scalars.withUnsafeBufferPointer { dyp in
            gradients.accumulate(name, shape: [k, n]) { g in
                sgemm(transA: true, transB: false, m: k, n: n, k: rows, a: xp.baseAddress!, lda: k,
                      b: dyp.baseAddress!, ldb: n, beta: 1, c: g, ldc: n)
            }
        }
    }
    return Tensor(uncheckedShape: x.shape) { dx in
        dy.scalars.withUnsafeBufferPointer { dyp in
            p.scalars.withUnsafeBufferPointer { pp in
                sgemm(transA: false, transB: true, m: rows, n: k, k: n, a: dyp.baseAddress!, lda: n,
                      b: pp.baseAddress!, ldb: n, c: dx.baseAddress!, ldc: k)
            }
        }
    }
}
