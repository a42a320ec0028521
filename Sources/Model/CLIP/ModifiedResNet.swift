import CLIPLayers
import CLIPTensor

/// CLIP's modified ResNet image tower: a three-convolution stem with average pooling, four stages of
/// anti-aliased Bottleneck blocks, and an attention-pooling head. BatchNorm is folded into the convolutions, and the
/// tower works channels-last ([N, H, W, C]) so 1×1 convolutions are plain GEMMs.
public struct ModifiedResNet: Sendable {
    /// The stage sizes and pool heads this tower was built with.
    public let configuration: CLIPConfiguration.ResNetConfiguration
    let stem: [Conv2d]  // conv1 (stride 2), conv2, conv3; each followed by ReLU
    let stages: [[Bottleneck]]
    let attentionPool: AttentionPool2d

    init(_ r: ParameterReader, _ c: CLIPConfiguration.ResNetConfiguration, embedDim: Int) throws(ModelLoadError) {
        configuration = c
        let w = c.width
        guard w % 2 == 0 else {
            throw .architecture("ResNet width \(w) is odd; the stem halves it", origin: r.origin)
        }
        stem = [
            try Conv2d(r, conv: "visual.conv1", batchNorm: "visual.bn1", in: 3, out: w / 2, kernel: 3, stride: 2, padding: 1),
            try Conv2d(r, conv: "visual.conv2", batchNorm: "visual.bn2", in: w / 2, out: w / 2, kernel: 3, padding: 1),
            try Conv2d(r, conv: "visual.conv3", batchNorm: "visual.bn3", in: w / 2, out: w, kernel: 3, padding: 1),
        ]
        var inplanes = w
        var stages: [[Bottleneck]] = []
        for (i, count) in c.layers.enumerated() {
            let planes = w << i
            var blocks: [Bottleneck] = []
            for b in 0..<count {
                blocks.append(try Bottleneck(r, "visual.layer\(i + 1).\(b)", inplanes: inplanes, planes: planes,
                                             stride: b == 0 && i > 0 ? 2 : 1))
                inplanes = planes * Bottleneck.expansion
            }
            stages.append(blocks)
        }
        self.stages = stages
        attentionPool = try AttentionPool2d(r, "visual.attnpool", spatial: c.outputGrid, embedDim: w * 32,
                                            heads: c.heads, outputDim: embedDim)
    }

    private init(configuration: CLIPConfiguration.ResNetConfiguration, stem: [Conv2d], stages: [[Bottleneck]],
                 attentionPool: AttentionPool2d) {
        (self.configuration, self.stem, self.stages, self.attentionPool) = (configuration, stem, stages, attentionPool)
    }

    /// `pixels` [N, 3, H, W] → [N, embed]. Any input whose final feature map has outputGrid² cells is
    /// accepted, as in the reference.
    func forward(_ pixels: Tensor) throws(CLIPError) -> Tensor {
        // The stem's first convolution (3×3, stride 2, pad 1) needs at least one output pixel; each later
        // pooling halves with floor. Reject inputs that would shrink to nothing before running them.
        var side = min(pixels.shape[2], pixels.shape[3])
        side = (side - 1) / 2 + 1
        for _ in 0..<4 { side /= 2 }
        let g = configuration.outputGrid
        guard side >= 1 else { throw .imageShape(pixels.shape, expected: "[N, 3, \(g * 32), \(g * 32)]") }
        let features: Tensor
        do throws(TensorError) {
            var x = channelsLast(pixels)
            for conv in stem { x = try conv.forward(x, relu: true) }
            x = try avgPoolChannelsLast(x, kernel: 2)
            for stage in stages { for block in stage { x = try block.forward(x) } }
            features = x
        } catch {
            throw .internalShape(error)
        }
        guard features.shape[1] * features.shape[2] == g * g else {
            throw .imageShape(pixels.shape, expected: "[N, 3, \(g * 32), \(g * 32)] (the final feature map is \(features.shape[1])×\(features.shape[2]); the attention pool needs \(g)×\(g))")
        }
        do throws(TensorError) { return try attentionPool.forward(features) } catch { throw .internalShape(error) }
    }

    func converted(to precision: Precision) throws(TensorError) -> ModifiedResNet {
        var stages: [[Bottleneck]] = []
        for stage in self.stages {
            var blocks: [Bottleneck] = []
            for block in stage { blocks.append(try block.converted(to: precision)) }
            stages.append(blocks)
        }
        var stem: [Conv2d] = []
        for conv in self.stem { stem.append(try conv.converted(to: precision)) }
        return ModifiedResNet(configuration: configuration, stem: stem, stages: stages,
                              attentionPool: try attentionPool.converted(to: precision))
    }
}

/// Average pooling of channels-last [N, H, W, C] with a square window equal to its stride, dropping incomplete
/// windows (PyTorch's floor mode) → [N, H/k, W/k, C].
func avgPoolChannelsLast(_ x: Tensor, kernel k: Int) throws(TensorError) -> Tensor {
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
struct Bottleneck: Sendable {
    static let expansion = 4
    let conv1: Conv2d
    let conv2: Conv2d
    let conv3: Conv2d
    let downsample: Conv2d?
    let stride: Int

    init(_ r: ParameterReader, _ prefix: String, inplanes: Int, planes: Int, stride: Int) throws(ModelLoadError) {
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

    private init(conv1: Conv2d, conv2: Conv2d, conv3: Conv2d, downsample: Conv2d?, stride: Int) {
        (self.conv1, self.conv2, self.conv3, self.downsample, self.stride) = (conv1, conv2, conv3, downsample, stride)
    }

    func converted(to precision: Precision) throws(TensorError) -> Bottleneck {
        Bottleneck(conv1: try conv1.converted(to: precision), conv2: try conv2.converted(to: precision),
                   conv3: try conv3.converted(to: precision), downsample: try downsample?.converted(to: precision),
                   stride: stride)
    }

    /// `x` [N, H, W, inplanes] → [N, H/stride, W/stride, 4·planes].
    func forward(_ x: Tensor) throws(TensorError) -> Tensor {
        var out = try conv1.forward(x, relu: true)
        out = try conv2.forward(out, relu: true)
        if stride > 1 { out = try avgPoolChannelsLast(out, kernel: stride) }
        out = try conv3.forward(out)
        var identity = x
        if let downsample {
            if stride > 1 { identity = try avgPoolChannelsLast(identity, kernel: stride) }
            identity = try downsample.forward(identity)
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
struct AttentionPool2d: Sendable {
    let positionalEmbedding: Tensor
    let q: Linear, k: Linear, v: Linear, c: Linear
    let heads: Int

    var embedDim: Int { q.inFeatures }
    var outputDim: Int { c.outFeatures }
    /// Side of the feature map the positional embedding was made for.
    let spatial: Int

    init(_ r: ParameterReader, _ prefix: String, spatial: Int, embedDim: Int, heads: Int,
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

    private init(positionalEmbedding: Tensor, q: Linear, k: Linear, v: Linear, c: Linear, heads: Int, spatial: Int) {
        (self.positionalEmbedding, self.q, self.k, self.v, self.c, self.heads, self.spatial) =
            (positionalEmbedding, q, k, v, c, heads, spatial)
    }

    func converted(to precision: Precision) throws(TensorError) -> AttentionPool2d {
        AttentionPool2d(positionalEmbedding: positionalEmbedding, q: try q.converted(to: precision),
                        k: try k.converted(to: precision), v: try v.converted(to: precision),
                        c: try c.converted(to: precision), heads: heads, spatial: spatial)
    }

    /// `x` [N, H, W, embed] (channels-last) with H·W = spatial² → [N, outputDim].
    func forward(_ x: Tensor) throws(TensorError) -> Tensor {
        guard x.rank == 4, x.shape[3] == embedDim, x.shape[1] * x.shape[2] == spatial * spatial else {
            throw .shapeMismatch(operation: "AttentionPool2d", x.shape, [spatial, spatial, embedDim])
        }
        let (n, e) = (x.shape[0], embedDim)
        let tokens = poolingTokens(x)  // [N, HW + 1, E]
        let len = tokens.shape[1]
        var means = Tensor(uninitialized: [n, e])
        for img in 0..<n {
            let start = img * len * e
            means.scalars.replaceSubrange((img * e)..<(img * e + e), with: tokens.scalars[start..<(start + e)])
        }
        // Only the mean token is queried.
        let pooled = attend(query: try q(means), keys: try k(tokens), values: try v(tokens))
        return try c(pooled)
    }

    /// [N, H, W, E] → tokens [N, H·W + 1, E]: the spatial mean first, then the feature vectors, plus positions.
    private func poolingTokens(_ x: Tensor) -> Tensor {
        let (n, e, hw) = (x.shape[0], embedDim, x.shape[1] * x.shape[2])
        let len = hw + 1
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
        return tokens
    }

    /// One query per image ([N, E]) against its tokens' keys and values ([N, len, E]), per head → [N, E].
    private func attend(query: Tensor, keys: Tensor, values: Tensor) -> Tensor {
        let (n, len, e) = (keys.shape[0], keys.shape[1], embedDim)
        let hd = e / heads
        let scale = 1 / Float(hd).squareRoot()
        var pooled = Tensor(uncheckedZeros: [n, e])
        let heads = heads
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
        return pooled
    }
}
