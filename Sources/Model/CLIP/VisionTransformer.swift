import CLIPLayers
import CLIPTensor

/// The ViT image tower: patch embedding (a convolution with kernel = stride = patch and no bias), a class
/// token, positional embeddings, `ln_pre`, a transformer, `ln_post` on the class token, and `proj`. SigLIP's
/// variant: a patch bias, no class token and no `ln_pre`, `ln_post` on every patch, attention pooling
/// (`visual.attn_pool`) and no projection. CoCa's: `AttentionalPooler` (`visual.attn_pool`) over every token, then
/// `ln_post` of its first query and `proj`. CLIPA's: no `ln_pre`, the mean of the patch tokens, then `ln_post`.
public struct VisionTransformer: Sendable {
    /// The sizes this tower was built with.
    public let configuration: CLIPConfiguration.VisionTransformerConfiguration
    /// Pixels to patch embeddings: the patch convolution, or timm's convolutional stem.
    let patchEmbedding: PatchEmbedding

    /// How pixels become patch embeddings.
    enum PatchEmbedding: Sendable {
        /// `conv1.weight` flattened to [width, 3·patch·patch], so patch embedding is one GEMM over patch rows (packed
        /// once, in the model's precision like every other projection).
        case patches(Linear)
        /// timm's convolutional stem (BatchNorms folded in) over channels-last pixels: GELU after all but the last.
        case convStem([Conv2d])

        func converted(to precision: Precision) throws(TensorError) -> PatchEmbedding {
            switch self {
            case .patches(let linear): return .patches(try linear.converted(to: precision))
            case .convStem(let layers):
                var converted: [Conv2d] = []
                for layer in layers { converted.append(try layer.converted(to: precision)) }
                return .convStem(converted)
            }
        }
    }
    let classEmbedding: Tensor  // [width]; empty without a class token
    let positionalEmbedding: Tensor  // [tokens, width]
    let lnPre: LayerNorm?
    let transformer: Transformer
    let lnPost: LayerNorm
    let attentionPooling: AttentionPooling?
    let attentionalPooler: AttentionalPooler?
    let proj: Tensor?  // [width, embed]
    let projBias: Tensor?  // [embed]

    init(_ r: ParameterReader, _ c: CLIPConfiguration.VisionTransformerConfiguration, embedDim: Int) throws(ModelLoadError) {
        let (activation, eps) = (c.activation, c.layerNormEps)
        configuration = c
        let (w, p) = (c.width, c.patchSize)
        if let stem = c.convStem {
            var layers: [Conv2d] = [], inputs = 3
            for (i, (k, out)) in zip(stem.kernels, stem.channels).enumerated() {
                let prefix = "visual.trunk.patch_embed.backbone.\(i)"
                layers.append(i == stem.kernels.count - 1
                    ? try Conv2d(r, "\(prefix).conv", in: inputs, out: out, kernel: k, stride: k)
                    : try Conv2d(r, conv: "\(prefix).conv", batchNorm: "\(prefix).bn", in: inputs, out: out, kernel: k, stride: k))
                inputs = out
            }
            patchEmbedding = .convStem(layers)
        } else {
            patchEmbedding = .patches(try patchEmbeddingLayer(r, weight: "visual.conv1.weight",
                                                              bias: c.patchBias ? "visual.conv1.bias" : nil, width: w, patch: p))
        }
        classEmbedding = c.hasClassToken ? try r.tensor("visual.class_embedding", shape: [w]) : Tensor(uncheckedZeros: [0])
        if c.hasClassToken && !c.classTokenPosition {
            // No position for the class token: a zero row in its place.
            let patches = try r.tensor("visual.positional_embedding", shape: [c.tokens - 1, w])
            positionalEmbedding = Tensor(uncheckedShape: [c.tokens, w], scalars: [Float](repeating: 0, count: w) + patches.scalars)
        } else {
            positionalEmbedding = try r.tensor("visual.positional_embedding", shape: [c.tokens, w])
        }
        lnPre = c.preNorm ? try LayerNorm(r, "visual.ln_pre", width: w, eps: eps) : nil
        let rotary = c.rotary.map {
            RotaryEmbedding(grid: c.grid, headDim: w / c.heads, referenceGrid: $0.referenceGrid, offset: $0.offset,
                            columnsFirst: $0.columnsFirst, prefixTokens: c.hasClassToken ? 1 : 0)
        }
        transformer = try Transformer(r, "visual.transformer", width: w, layers: c.layers, heads: c.heads,
                                      activation: activation, eps: eps, rotary: rotary)
        var pooledWidth = w
        switch c.pooling {
        case .classToken, .average, .normalizedAverage:
            (attentionPooling, attentionalPooler) = (nil, nil)
        case .attention(let heads):
            attentionPooling = try AttentionPooling(r, "visual.attn_pool", width: w, heads: heads,
                                                    activation: activation, eps: eps)
            attentionalPooler = nil
        case .attentionalPooler(let heads):
            attentionPooling = nil
            attentionalPooler = try AttentionalPooler(r, "visual.attn_pool", width: w, pooled: embedDim, heads: heads,
                                                      eps: eps)
            pooledWidth = embedDim
        }
        lnPost = try LayerNorm(r, "visual.ln_post", width: pooledWidth, eps: eps)
        proj = c.projection ? try r.tensor("visual.proj", shape: [pooledWidth, embedDim]) : nil
        projBias = c.projection && c.projectionBias ? try r.tensor("visual.proj_bias", shape: [embedDim]) : nil
    }

    private init(configuration: CLIPConfiguration.VisionTransformerConfiguration, patchEmbedding: PatchEmbedding,
                 classEmbedding: Tensor, positionalEmbedding: Tensor, lnPre: LayerNorm?, transformer: Transformer,
                 lnPost: LayerNorm, attentionPooling: AttentionPooling?, attentionalPooler: AttentionalPooler?,
                 proj: Tensor?, projBias: Tensor?) {
        (self.configuration, self.patchEmbedding, self.classEmbedding, self.positionalEmbedding) =
            (configuration, patchEmbedding, classEmbedding, positionalEmbedding)
        (self.lnPre, self.transformer, self.lnPost, self.attentionPooling, self.attentionalPooler, self.proj) =
            (lnPre, transformer, lnPost, attentionPooling, attentionalPooler, proj)
        self.projBias = projBias
    }

    /// The tower with its patch embedding and transformer computing in `precision`.
    func converted(to precision: Precision) throws(TensorError) -> VisionTransformer {
        VisionTransformer(configuration: configuration, patchEmbedding: try patchEmbedding.converted(to: precision),
                          classEmbedding: classEmbedding, positionalEmbedding: positionalEmbedding, lnPre: lnPre,
                          transformer: try transformer.converted(to: precision), lnPost: lnPost,
                          attentionPooling: try attentionPooling?.converted(to: precision),
                          attentionalPooler: try attentionalPooler?.converted(to: precision), proj: proj, projBias: projBias)
    }

    /// `pixels` [N, 3, H, W] → [N, embed]. As with the reference's strided convolution, pixels past the last
    /// whole patch are ignored; the patch grid must match the positional embedding.
    func forward(_ pixels: Tensor) throws(CLIPError) -> Tensor {
        if configuration.variableGrid { return try forwardVariableGrid(pixels) }
        let patches: Tensor
        if case .convStem = patchEmbedding { patches = try stemInput(pixels) } else { patches = try patchRows(pixels) }
        do {
            var x = try embed(patches)
            if let lnPre { try lnPre.forward(x, into: &x) }
            // Class-token pooling reads one token: the last block computes only it.
            let classTokenOnly = configuration.pooling == .classToken
            try transformer.forward(&x, causal: false, keeping: classTokenOnly ? [Int](repeating: 0, count: x.shape[0]) : nil)
            let pooled: Tensor
            if let attentionPooling {
                try lnPost.forward(x, into: &x)
                pooled = try attentionPooling.forward(x)
            } else if let attentionalPooler {
                pooled = try lnPost(attentionalPooler.forward(x))
            } else if configuration.pooling == .average {
                pooled = try lnPost(patchMean(x))
            } else if configuration.pooling == .normalizedAverage {
                try lnPost.forward(x, into: &x)
                pooled = patchMean(x)
            } else {
                pooled = try lnPost(classTokens(x))
            }
            guard let proj else { return pooled }
            var out = try matmul(pooled, proj)
            if let projBias {
                out.scalars.withUnsafeMutableBufferPointer { o in
                    projBias.scalars.withUnsafeBufferPointer { b in
                        addBiasRows(o.baseAddress!, rows: out.shape[0], width: b.count, bias: b.baseAddress!)
                    }
                }
            }
            return out
        } catch {
            throw .internalShape(error)
        }
    }

    /// `pixels` [N, 3, H, W] → patches as rows [N·grid², 3·p·p] in the (channel, y, x) order of the convolution
    /// weight, so patch embedding is one GEMM.
    func patchRows(_ pixels: Tensor) throws(CLIPError) -> Tensor {
        try imagePatchRows(pixels, patchSize: configuration.patchSize, grid: configuration.grid)
    }

    /// Patch rows [N·grid², 3·p·p] (with a convolutional stem: channels-last pixels [N, H, W, 3]) → tokens
    /// [N, tokens, width]: the class token first (when the tower has one), positions added.
    func embed(_ patches: Tensor) throws(TensorError) -> Tensor {
        let embedded: Tensor
        switch patchEmbedding {
        case .patches(let linear):
            embedded = try linear(patches)
        case .convStem(let layers):
            var x = patches
            for (i, layer) in layers.enumerated() { x = try layer.forward(x, activation: i == layers.count - 1 ? .none : .gelu) }
            embedded = Tensor(uncheckedShape: [x.count / configuration.width, configuration.width], scalars: x.scalars)
        }
        return tokenRows(embedded, classEmbedding: classEmbedding, positions: positionalEmbedding, grid: configuration.grid)
    }

    /// `pixels` [N, 3, H, W] → channels-last [N, H, W, 3] for the convolutional stem, which takes exactly the size timm
    /// builds it for (its grid times the patch).
    func stemInput(_ pixels: Tensor) throws(CLIPError) -> Tensor {
        let side = configuration.patchSize * configuration.grid
        guard pixels.shape[2] == side, pixels.shape[3] == side else {
            throw .imageShape(pixels.shape, expected: "[N, 3, \(side), \(side)]")
        }
        return channelsLast(pixels)
    }

    /// Tokens [N, tokens, width] (the class token first) → each image's mean over its patch tokens [N, width].
    func patchMean(_ x: Tensor) -> Tensor {
        meanOfRows(x, images: x.shape[0], rows: x.shape[1], width: x.shape[2], from: 1)
    }

    /// Tokens [N, tokens, width] → the class token of each image [N, width].
    func classTokens(_ x: Tensor) -> Tensor { firstTokens(x) }
}

/// Tokens [N, tokens, width] → the first token of each image [N, width].
func firstTokens(_ x: Tensor) -> Tensor {
    let (n, tokens, w) = (x.shape[0], x.shape[1], x.shape[2])
    var cls = Tensor(uncheckedZeros: [n, w])
    for img in 0..<n {
        cls.scalars.replaceSubrange((img * w)..<((img + 1) * w), with: x.scalars[(img * tokens * w)..<(img * tokens * w + w)])
    }
    return cls
}

extension VisionTransformer {
    /// What the backward pass needs from a training forward.
    struct Trace: Sendable {
        var patches: Tensor  // [N·grid², 3·p·p]
        var embedded: Tensor  // [N, tokens, width], before ln_pre
        var blocks: [ResidualAttentionBlock.Trace]
        var classTokens: Tensor  // [N, width], before ln_post
        var pooled: Tensor  // [N, width], after ln_post
    }

    /// The forward pass for training: `pixels` [N, 3, R, R] → [N, embed], keeping what `backward` needs.
    func forwardTraining(_ pixels: Tensor) throws(CLIPError) -> (Tensor, Trace) {
        let patches = try patchRows(pixels)
        guard let lnPre, let proj, configuration.pooling == .classToken else {
            throw .training("this image tower (no class token, ln_pre or projection) cannot train yet")
        }
        do {
            let embedded = try embed(patches)
            var x = try lnPre(embedded)
            let blocks = try transformer.forwardTraining(&x, causal: false)
            let cls = classTokens(x)
            let pooled = try lnPost(cls)
            let trace = Trace(patches: patches, embedded: embedded, blocks: blocks, classTokens: cls, pooled: pooled)
            return (try matmul(pooled, proj), trace)
        } catch {
            throw .internalShape(error)
        }
    }

    /// The backward pass: `dy` [N, embed] the gradient of the features; adds the gradient of every `visual.*`
    /// parameter (the input pixels get none).
    func backward(_ trace: Trace, featureGradient dy: Tensor, parameters p: ParameterValues,
                  into gradients: inout Gradients) throws(TensorError) {
        let (g, w) = (configuration.grid, configuration.width)
        let tokens = g * g + 1, n = trace.classTokens.shape[0]
        guard let lnPre, let proj else { throw .shapeMismatch(operation: "VisionTransformer backward (no ln_pre or projection)", [], []) }
        let dPooled = try projectionBackward(input: trace.pooled, outputGradient: dy, projection: proj,
                                             name: "visual.proj", into: &gradients)
        let dCls = try lnPost.backward(input: trace.classTokens, outputGradient: dPooled, prefix: "visual.ln_post",
                                       into: &gradients)
        var dx = Tensor(uncheckedZeros: [n, tokens, w])
        for img in 0..<n {
            dx.scalars.replaceSubrange((img * tokens * w)..<(img * tokens * w + w), with: dCls.scalars[(img * w)..<((img + 1) * w)])
        }
        dx = try transformer.backward(trace.blocks, outputGradient: dx, prefix: "visual.transformer", parameters: p,
                                      into: &gradients)
        let dEmbedded = try lnPre.backward(input: trace.embedded, outputGradient: dx, prefix: "visual.ln_pre",
                                           into: &gradients)
        var dPatches = Tensor(uncheckedZeros: [n * g * g, w])
        dEmbedded.scalars.withUnsafeBufferPointer { d in
            for img in 0..<n {
                let src = d.baseAddress! + img * tokens * w
                gradients.add("visual.class_embedding", shape: [w], src)
                gradients.add("visual.positional_embedding", shape: [tokens, w], src)
                dPatches.scalars.withUnsafeMutableBufferPointer { dp in
                    (dp.baseAddress! + img * g * g * w).update(from: src + w, count: g * g * w)
                }
            }
        }
        let conv = try p.value("visual.conv1.weight")
        guard case .patches(let patchEmbedding) = patchEmbedding else {
            throw .shapeMismatch(operation: "patch embedding backward (a convolutional stem does not train)", conv.shape, [])
        }
        _ = try patchEmbedding.backward(input: trace.patches, outputGradient: dPatches,
                                        weight: conv.reshaped([w, trace.patches.shape[1]]),
                                        names: ("visual.conv1.weight", nil), into: &gradients, inputGradient: false)
        try gradients.reshape("visual.conv1.weight", to: conv.shape)
    }
}

/// A patch convolution, `weight` [width, 3, p, p] with `bias` [width] when named, as one Linear over patch rows
/// [.., 3·p·p] (see `imagePatchRows`), packed under the weight's name.
func patchEmbeddingLayer(_ r: ParameterReader, weight: String, bias: String?, width w: Int,
                         patch p: Int) throws(ModelLoadError) -> Linear {
    try Linear(r, packed: weight, in: 3 * p * p, out: w, bias: bias != nil,
               consumes: [weight] + (bias.map { [$0] } ?? [])) { () throws(ModelLoadError) in
        let conv = try r.tensor(weight, shape: [w, 3, p, p])
        var b: Tensor?
        if let bias { b = try r.tensor(bias, shape: [w]) }
        return (Tensor(uncheckedShape: [w, 3 * p * p], scalars: conv.scalars), b)
    }
}

/// `pixels` [N, 3, H, W] → the patches of a `grid` × `grid` grid as rows [N·grid², 3·p·p], in the (channel, y, x)
/// order of a patch convolution's weight. As with the reference's strided convolution, pixels past the last whole
/// patch are ignored; the grid they make must be `grid`.
func imagePatchRows(_ pixels: Tensor, patchSize p: Int, grid g: Int) throws(CLIPError) -> Tensor {
    let (n, h, wpx) = (pixels.shape[0], pixels.shape[2], pixels.shape[3])
    guard h / p == g, wpx / p == g else {
        throw .imageShape(pixels.shape, expected: "[N, 3, \(g * p), \(g * p)] (a \(g)×\(g) grid of \(p)-pixel patches)")
    }
    let pdim = 3 * p * p
    return Tensor(uncheckedShape: [n * g * g, pdim]) { dst in
        pixels.scalars.withUnsafeBufferPointer { src in
            for img in 0..<n {
                for gy in 0..<g {
                    for gx in 0..<g {
                        let row = dst.baseAddress! + ((img * g + gy) * g + gx) * pdim
                        for ch in 0..<3 {
                            for y in 0..<p {
                                let s = src.baseAddress! + ((img * 3 + ch) * h + gy * p + y) * wpx + gx * p
                                let d = row + (ch * p + y) * p
                                for x in 0..<p { d[x] = s[x] }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Embedded patches [N·grid², width] → tokens [N, tokens, width]: the class token (`classEmbedding` [width]; empty
/// for a tower without one) first, then the patches, each plus its row of `positions` [tokens, width].
func tokenRows(_ embedded: Tensor, classEmbedding: Tensor, positions: Tensor, grid g: Int) -> Tensor {
    let (tokens, w) = (positions.shape[0], positions.shape[1])
    let n = embedded.shape[0] / (g * g)
    let first = tokens - g * g  // 1 with a class token, else 0
    var x = Tensor(uncheckedZeros: [n, tokens, w])
    x.scalars.withUnsafeMutableBufferPointer { xp in
        embedded.scalars.withUnsafeBufferPointer { ep in
            classEmbedding.scalars.withUnsafeBufferPointer { cp in
                positions.scalars.withUnsafeBufferPointer { pp in
                    for img in 0..<n {
                        let dst = xp.baseAddress! + img * tokens * w
                        if first == 1 { for i in 0..<w { dst[i] = cp[i] + pp[i] } }
                        let src = ep.baseAddress! + img * g * g * w, patchStart = first * w
                        for i in 0..<(g * g * w) { dst[patchStart + i] = src[i] + pp[patchStart + i] }
                    }
                }
            }
        }
    }
    return x
}
