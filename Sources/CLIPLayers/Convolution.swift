import CLIPTensor

/// A 2-D convolution over channels-last images ([N, H, W, C]) with a bias, lowered to one GEMM whose right-hand side
/// is the weight, packed once: 1×1 stride-1 convolutions multiply the pixels directly, others go through a
/// channels-last im2col. `weight` is PyTorch's [out, in, kh, kw] (with any BatchNorm already folded in).
public struct Conv2d: Sendable {
    public let packedWeight: PackedMatrix   // [kh·kw·in, out], patch order (y, x, channel)
    public let bias: Tensor
    public let kernel: Int
    public let stride: Int
    public let padding: Int
    public let inChannels: Int
    public var outChannels: Int { packedWeight.n }

    public init(weight: Tensor, bias: Tensor, stride: Int, padding: Int, precision: Precision = .fp32) throws(TensorError) {
        guard weight.rank == 4, weight.shape[2] == weight.shape[3], bias.shape == [weight.shape[0]] else {
            throw .shapeMismatch(operation: "Conv2d", weight.shape, bias.shape)
        }
        let (o, c, k) = (weight.shape[0], weight.shape[1], weight.shape[2])
        // Reorder [O, C, kh, kw] to [O, kh, kw, C] to match channels-last patches.
        var reordered = [Float](repeating: 0, count: weight.count)
        for oc in 0..<o {
            for ic in 0..<c {
                for y in 0..<k {
                    for x in 0..<k {
                        reordered[((oc * k + y) * k + x) * c + ic] = weight.scalars[((oc * c + ic) * k + y) * k + x]
                    }
                }
            }
        }
        packedWeight = try PackedMatrix(Tensor(uncheckedShape: [o, k * k * c], scalars: reordered), transposed: true,
                                        precision: precision)
        self.bias = bias
        self.kernel = k
        self.stride = stride
        self.padding = padding
        self.inChannels = c
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
        do {
            try self.init(weight: Tensor(uncheckedShape: w.shape, scalars: folded),
                          bias: Tensor(uncheckedShape: [o], scalars: bias), stride: stride, padding: padding,
                          precision: r.precision)
        } catch {
            throw .architecture("\(conv).weight: \(error)", origin: r.origin)
        }
    }

    /// `x` [N, H, W, in] → [N, H', W', out], optionally followed by ReLU.
    public func callAsFunction(_ x: Tensor, relu: Bool = false) throws(TensorError) -> Tensor {
        try apply(x, relu: relu, explicitIm2col: false)
    }

    /// The convolution; `explicitIm2col` forces the im2col-buffer path that the implicit one (fp32, kernels > 1) is
    /// tested against.
    package func apply(_ x: Tensor, relu: Bool, explicitIm2col: Bool) throws(TensorError) -> Tensor {
        guard x.rank == 4, x.shape[3] == inChannels, x.shape[1] + 2 * padding >= kernel, x.shape[2] + 2 * padding >= kernel else {
            throw .shapeMismatch(operation: "Conv2d", x.shape, [outChannels, inChannels, kernel, kernel])
        }
        let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let ho = (h + 2 * padding - kernel) / stride + 1, wo = (w + 2 * padding - kernel) / stride + 1
        let o = outChannels, kdim = kernel * kernel * c, pixels = ho * wo
        guard kdim > 0 else { throw .shapeMismatch(operation: "Conv2d", x.shape, [o, c, kernel, kernel]) }
        if n * pixels * o == 0 { return Tensor(uncheckedZeros: [n, ho, wo, o]) }
        let activation: OutputActivation = relu ? .relu : .none
        // Every output element is written by the GEMM, which also adds the bias and applies ReLU per tile.
        return Tensor(uncheckedShape: [n, ho, wo, o]) { op in
            x.scalars.withUnsafeBufferPointer { xp in
                bias.scalars.withUnsafeBufferPointer { bp in
                    let xBase = xp.baseAddress!, oBase = op.baseAddress!, b = bp.baseAddress!
                    if kernel == 1 && stride == 1 && padding == 0 {
                        // Every pixel of the batch is a row: one GEMM, split over the cores.
                        packedWeight.multiply(xBase, rows: n * pixels, lda: c, into: oBase, ldc: o, bias: b,
                                              activation: activation)
                        return
                    }
                    // Whole images per core when there are enough of them; otherwise each GEMM uses every core.
                    // Each core reuses one im2col buffer for its images (a fresh multi-megabyte buffer per image
                    // would page-fault anew every time); im2col writes every element, zeros outside the image.
                    let acrossImages = n >= availableCores
                    let bounds = chunkBounds(total: n, parts: acrossImages ? availableCores : 1, granule: 1)
                    if !explicitIm2col && c % 16 == 0 {
                        // fp32: the GEMM packs the receptive fields straight from the image (no im2col buffer), 16
                        // channels at a time; the 3-channel stem keeps its im2col, which packs with full vectors.
                        var done = true
                        let results = UnsafeMutableBufferPointer<Bool>.allocate(capacity: n)
                        defer { results.deallocate() }
                        parallelFor(bounds.count - 1) { t in
                            for img in bounds[t]..<bounds[t + 1] {
                                results[img] = packedWeight.convolve(
                                    image: xBase + img * h * w * c, height: h, width: w, channels: c, kernel: kernel,
                                    stride: stride, padding: padding, outHeight: ho, outWidth: wo,
                                    into: oBase + img * pixels * o, bias: b, activation: activation,
                                    parallel: !acrossImages)
                            }
                        }
                        for img in 0..<n where !results[img] { done = false }
                        if done { return }
                    }
                    parallelFor(bounds.count - 1) { t in
                        guard bounds[t + 1] > bounds[t] else { return }
                        let col = UnsafeMutablePointer<Float>.allocate(capacity: pixels * kdim)
                        defer { col.deallocate() }
                        for img in bounds[t]..<bounds[t + 1] {
                            im2colChannelsLast(xBase + img * h * w * c, height: h, width: w, channels: c, kernel: kernel,
                                               stride: stride, padding: padding, ho: ho, wo: wo, out: col)
                            packedWeight.multiply(col, rows: pixels, lda: kdim, into: oBase + img * pixels * o, ldc: o,
                                                  bias: b, activation: activation, parallel: !acrossImages)
                        }
                    }
                }
            }
        }
    }
}

/// Unfolds the kernel × kernel receptive fields of one [H, W, C] image into rows [Ho·Wo, kernel·kernel·C],
/// zero outside the image.
func im2colChannelsLast(_ x: UnsafePointer<Float>, height h: Int, width w: Int, channels c: Int, kernel k: Int,
                        stride: Int, padding: Int, ho: Int, wo: Int, out: UnsafeMutablePointer<Float>) {
    let kdim = k * k * c
    for oy in 0..<ho {
        for ox in 0..<wo {
            let row = out + (oy * wo + ox) * kdim
            for dy in 0..<k {
                let iy = oy * stride + dy - padding
                for dx in 0..<k {
                    let ix = ox * stride + dx - padding
                    let dst = row + (dy * k + dx) * c
                    if iy < 0 || iy >= h || ix < 0 || ix >= w {
                        dst.update(repeating: 0, count: c)
                    } else {
                        dst.update(from: x + (iy * w + ix) * c, count: c)
                    }
                }
            }
        }
    }
}

/// Average pooling of channels-last [N, H, W, C] with a square window equal to its stride, dropping incomplete
/// windows (PyTorch's floor mode) → [N, H/k, W/k, C].
public func avgPoolChannelsLast(_ x: Tensor, kernel k: Int) throws(TensorError) -> Tensor {
    guard x.rank == 4, k >= 1 else { throw .shapeMismatch(operation: "avgPool", x.shape, [k]) }
    let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (ho, wo) = (h / k, w / k)
    var out = Tensor(uncheckedZeros: [n, ho, wo, c])
    let inv = 1 / Float(k * k)
    x.scalars.withUnsafeBufferPointer { xp in
        out.scalars.withUnsafeMutableBufferPointer { op in
            for img in 0..<n {
                for oy in 0..<ho {
                    for ox in 0..<wo {
                        let dst = op.baseAddress! + ((img * ho + oy) * wo + ox) * c
                        for dy in 0..<k {
                            for dx in 0..<k {
                                let src = xp.baseAddress! + ((img * h + oy * k + dy) * w + ox * k + dx) * c
                                for ch in 0..<c { dst[ch] += src[ch] }
                            }
                        }
                        for ch in 0..<c { dst[ch] *= inv }
                    }
                }
            }
        }
    }
    return out
}

/// CLIP's ResNet bottleneck, channels-last: 1×1 → 3×3 → (average pool when strided) → 1×1 ×4 channels, with an
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

    /// `x` [N, H, W, inplanes] → [N, H/stride, W/stride, 4·planes].
    public func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        var out = try conv1(x, relu: true)
        out = try conv2(out, relu: true)
        if stride > 1 { out = try avgPoolChannelsLast(out, kernel: stride) }
        out = try conv3(out)
        var identity = x
        if let downsample {
            if stride > 1 { identity = try avgPoolChannelsLast(identity, kernel: stride) }
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

    /// `x` [N, H, W, embed] (channels-last) with H·W = spatial² → [N, outputDim].
    public func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        guard x.rank == 4, x.shape[3] == embedDim, x.shape[1] * x.shape[2] == spatial * spatial else {
            throw .shapeMismatch(operation: "AttentionPool2d", x.shape, [spatial, spatial, embedDim])
        }
        let (n, e, hw) = (x.shape[0], embedDim, x.shape[1] * x.shape[2])
        let len = hw + 1
        // tokens [N, HW+1, E]: the spatial mean first, then the (channels-last) feature vectors, plus positions.
        var tokens = Tensor(uncheckedZeros: [n, len, e])
        x.scalars.withUnsafeBufferPointer { xp in
            positionalEmbedding.scalars.withUnsafeBufferPointer { pp in
                tokens.scalars.withUnsafeMutableBufferPointer { tp in
                    for img in 0..<n {
                        let src = xp.baseAddress! + img * hw * e
                        let dst = tp.baseAddress! + img * len * e
                        (dst + e).update(from: src, count: hw * e)
                        for ch in 0..<e {
                            var s: Float = 0
                            for p in 0..<hw { s += src[p * e + ch] }
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
