import CLIPTensor

/// A 2-D convolution with optional bias; `weight` [out, in, kh, kw].
public struct Conv2d: Sendable {
    public let weight: Tensor
    public let bias: Tensor?
    public let stride: Int
    public let padding: Int

    public init(weight: Tensor, bias: Tensor?, stride: Int, padding: Int) {
        self.weight = weight
        self.bias = bias
        self.stride = stride
        self.padding = padding
    }

    /// Loads a bias-free convolution `<conv>.weight` and the inference-mode BatchNorm `<bn>` that follows it,
    /// folding the normalisation into the convolution: W' = W·γ/√(var+ε), b' = β − mean·γ/√(var+ε).
    public init(_ r: ParameterReader, conv: String, batchNorm bn: String, in c: Int, out o: Int, kernel k: Int,
                stride: Int = 1, padding: Int = 0, eps: Double = 1e-5) throws(ModelLoadError) {
        let w = try r.tensor("\(conv).weight", shape: [o, c, k, k])
        let gamma = try r.tensor("\(bn).weight", shape: [o])
        let beta = try r.tensor("\(bn).bias", shape: [o])
        let mean = try r.tensor("\(bn).running_mean", shape: [o])
        let variance = try r.tensor("\(bn).running_var", shape: [o])
        var folded = w.scalars
        var bias = [Float](repeating: 0, count: o)
        let per = c * k * k
        for ch in 0..<o {
            let scale = Double(gamma.scalars[ch]) / (Double(variance.scalars[ch]) + eps).squareRoot()
            for i in 0..<per { folded[ch * per + i] = Float(Double(folded[ch * per + i]) * scale) }
            bias[ch] = Float(Double(beta.scalars[ch]) - Double(mean.scalars[ch]) * scale)
        }
        weight = Tensor(uncheckedShape: w.shape, scalars: folded)
        self.bias = Tensor(uncheckedShape: [o], scalars: bias)
        self.stride = stride
        self.padding = padding
    }

    /// `x` [N, in, H, W] → [N, out, H', W'], optionally followed by ReLU.
    public func callAsFunction(_ x: Tensor, relu: Bool = false) throws(TensorError) -> Tensor {
        try conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding, relu: relu)
    }
}

/// CLIP's ResNet bottleneck: 1×1 → 3×3 → (average pool when strided) → 1×1 ×4 channels, with an
/// anti-aliased shortcut (average pool, then 1×1 convolution) when the shape changes.
public struct Bottleneck: Sendable {
    public static let expansion = 4
    public let conv1: Conv2d
    public let conv2: Conv2d
    public let conv3: Conv2d
    public let downsample: Conv2d?
    public let stride: Int

    public init(_ r: ParameterReader, _ prefix: String, inplanes: Int, planes: Int, stride: Int) throws(ModelLoadError) {
        conv1 = try Conv2d(r, conv: "\(prefix).conv1", batchNorm: "\(prefix).bn1", in: inplanes, out: planes, kernel: 1)
        conv2 = try Conv2d(r, conv: "\(prefix).conv2", batchNorm: "\(prefix).bn2", in: planes, out: planes, kernel: 3,
                           padding: 1)
        conv3 = try Conv2d(r, conv: "\(prefix).conv3", batchNorm: "\(prefix).bn3", in: planes,
                           out: planes * Self.expansion, kernel: 1)
        if stride > 1 || inplanes != planes * Self.expansion {
            downsample = try Conv2d(r, conv: "\(prefix).downsample.0", batchNorm: "\(prefix).downsample.1",
                                    in: inplanes, out: planes * Self.expansion, kernel: 1)
        } else {
            downsample = nil
        }
        self.stride = stride
    }

    /// `x` [N, inplanes, H, W] → [N, 4·planes, H/stride, W/stride].
    public func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        var out = try conv1(x, relu: true)
        out = try conv2(out, relu: true)
        if stride > 1 { out = try avgPool2d(out, kernel: stride) }
        out = try conv3(out)
        var identity = x
        if let downsample {
            if stride > 1 { identity = try avgPool2d(identity, kernel: stride) }
            identity = try downsample(identity)
        }
        guard out.shape == identity.shape else { throw .shapeMismatch(operation: "Bottleneck", out.shape, identity.shape) }
        out.scalars.withUnsafeMutableBufferPointer { o in
            identity.scalars.withUnsafeBufferPointer { id in
                for i in 0..<o.count { o[i] = max(o[i] + id[i], 0) }
            }
        }
        return out
    }
}

/// CLIP's attention-pooling head: the spatial mean joins the H·W feature vectors as a query token,
/// positional embeddings are added, and one multi-head attention step with the mean as the only query gives
/// the image embedding. Separate `q_proj`, `k_proj`, `v_proj` [embed, embed] and `c_proj` [out, embed].
public struct AttentionPool2d: Sendable {
    public let positionalEmbedding: Tensor
    public let q: Linear, k: Linear, v: Linear, c: Linear
    public let heads: Int

    public var embedDim: Int { q.inFeatures }
    public var outputDim: Int { c.outFeatures }
    /// Side of the feature map the positional embedding was made for.
    public let spatial: Int

    public init(_ r: ParameterReader, _ prefix: String, spatial: Int, embedDim: Int, heads: Int,
                outputDim: Int) throws(ModelLoadError) {
        guard heads > 0, embedDim % heads == 0 else {
            throw .architecture("\(prefix): embedding width \(embedDim) is not divisible into \(heads) heads",
                                origin: r.origin)
        }
        positionalEmbedding = try r.tensor("\(prefix).positional_embedding", shape: [spatial * spatial + 1, embedDim])
        q = try Linear(r, "\(prefix).q_proj", in: embedDim, out: embedDim)
        k = try Linear(r, "\(prefix).k_proj", in: embedDim, out: embedDim)
        v = try Linear(r, "\(prefix).v_proj", in: embedDim, out: embedDim)
        c = try Linear(r, "\(prefix).c_proj", in: embedDim, out: outputDim)
        self.heads = heads
        self.spatial = spatial
    }

    /// `x` [N, embed, H, W] with H·W = spatial² → [N, outputDim].
    public func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        guard x.rank == 4, x.shape[1] == embedDim, x.shape[2] * x.shape[3] == spatial * spatial else {
            throw .shapeMismatch(operation: "AttentionPool2d", x.shape, [embedDim, spatial, spatial])
        }
        let (n, e, hw) = (x.shape[0], embedDim, x.shape[2] * x.shape[3])
        let len = hw + 1
        // tokens [N, HW+1, E]: mean first, then the feature map transposed to channels-last, plus positions.
        var tokens = Tensor(uncheckedZeros: [n, len, e])
        x.scalars.withUnsafeBufferPointer { xp in
            positionalEmbedding.scalars.withUnsafeBufferPointer { pp in
                tokens.scalars.withUnsafeMutableBufferPointer { tp in
                    for img in 0..<n {
                        let src = xp.baseAddress! + img * e * hw
                        let dst = tp.baseAddress! + img * len * e
                        for ch in 0..<e {
                            var s: Float = 0
                            for p in 0..<hw {
                                let val = src[ch * hw + p]
                                s += val
                                dst[(p + 1) * e + ch] = val
                            }
                            dst[ch] = s / Float(hw)
                        }
                        for i in 0..<(len * e) { dst[i] += pp[i] }
                    }
                }
            }
        }
        var means = Tensor(uncheckedZeros: [n, e])
        for img in 0..<n {
            let start = img * len * e
            means.scalars.replaceSubrange((img * e)..<(img * e + e), with: tokens.scalars[start..<(start + e)])
        }
        let query = try q(means)  // [N, E]: only the mean token is queried
        let keys = try k(tokens)  // [N, len, E]
        let values = try v(tokens)
        let hd = e / heads
        let scale = 1 / Float(hd).squareRoot()
        var pooled = Tensor(uncheckedZeros: [n, e])
        query.scalars.withUnsafeBufferPointer { qp in
            keys.scalars.withUnsafeBufferPointer { kp in
                values.scalars.withUnsafeBufferPointer { vp in
                    pooled.scalars.withUnsafeMutableBufferPointer { op in
                        let (qB, kB, vB, oB) = (qp.baseAddress!, kp.baseAddress!, vp.baseAddress!, op.baseAddress!)
                        parallelFor(n * heads) { task in
                            let (img, h) = (task / heads, task % heads)
                            var scores = [Float](repeating: 0, count: len)
                            scores.withUnsafeMutableBufferPointer { sp in
                                sgemm(transA: false, transB: true, m: 1, n: len, k: hd, alpha: scale,
                                      a: qB + img * e + h * hd, lda: e, b: kB + img * len * e + h * hd, ldb: e,
                                      c: sp.baseAddress!, ldc: len, parallel: false)
                                softmaxInPlace(sp.baseAddress!, count: len)
                                sgemm(transA: false, transB: false, m: 1, n: hd, k: len, a: sp.baseAddress!, lda: len,
                                      b: vB + img * len * e + h * hd, ldb: e, c: oB + img * e + h * hd, ldc: e,
                                      parallel: false)
                            }
                        }
                    }
                }
            }
        }
        return try c(pooled)
    }
}
