import CLIPLayers
import CLIPTensor

/// timm's ViTamin image tower with open_clip's head (`visual.trunk.*`, `visual.head.proj`). The convolutional part
/// works channels-last ([N, H, W, C]), so its 1×1 convolutions are GEMMs over the pixels and the last convolution's
/// output is already the token rows [N, H·W, width] the transformer reads.
public struct ViTamin: Sendable {
    /// The sizes and settings this tower was built with.
    public let configuration: CLIPConfiguration.ViTaminConfiguration
    let stem: (Conv2d, LayerNorm, Conv2d)  // 3×3 stride 2; LayerNorm2d then GELU; 3×3
    let stages: [[MbConv]]
    let poolNorm: LayerNorm  // LayerNorm2d over the last stage's channels
    let poolConv: Conv2d  // 3×3 stride 2 → width
    let positionalEmbedding: Tensor?  // [grid², width]
    let blocks: [Block]
    let fcNorm: LayerNorm
    let head: Linear  // [width] → [embed]

    init(_ r: ParameterReader, _ c: CLIPConfiguration.ViTaminConfiguration, embedDim: Int) throws(ModelLoadError) {
        configuration = c
        let t = "visual.trunk", b = "visual.trunk.patch_embed.backbone", eps = CLIPConfiguration.ViTaminConfiguration.layerNormEps
        stem = (try Conv2d(r, "\(b).stem.conv1", in: 3, out: c.stemWidth, kernel: 3, stride: 2, padding: 1),
                try LayerNorm(r, "\(b).stem.norm1", width: c.stemWidth, eps: eps),
                try Conv2d(r, "\(b).stem.conv2", in: c.stemWidth, out: c.stemWidth, kernel: 3, stride: 1, padding: 1))
        var stages: [[MbConv]] = []
        for s in 0..<2 {
            var blocks: [MbConv] = []
            for i in 0..<c.stageDepths[s] {
                let input = i > 0 ? c.stageWidths[s] : s > 0 ? c.stageWidths[s - 1] : c.stemWidth
                blocks.append(try MbConv(r, "\(b).stages.\(s).\(i)", in: input, out: c.stageWidths[s], expanded: c.expandedWidths[s],
                                         stride: i == 0 ? 2 : 1))
            }
            stages.append(blocks)
        }
        self.stages = stages
        poolNorm = try LayerNorm(r, "\(b).pool.norm", width: c.stageWidths[1], eps: eps)
        poolConv = try Conv2d(r, "\(b).pool.proj", in: c.stageWidths[1], out: c.width, kernel: 3, stride: 2, padding: 1)
        if let g = c.positionGrid {
            positionalEmbedding = Tensor(uncheckedShape: [g * g, c.width], scalars: try r.tensor("\(t).pos_embed", shape: [1, g * g, c.width]).scalars)
        } else {
            positionalEmbedding = nil
        }
        var blocks: [Block] = []
        for i in 0..<c.layers { blocks.append(try Block(r, "\(t).blocks.\(i)", c)) }
        self.blocks = blocks
        fcNorm = try LayerNorm(r, "\(t).fc_norm", width: c.width, eps: eps)
        head = try Linear(r, "visual.head.proj", in: c.width, out: embedDim, bias: c.projectionBias)
    }

    private init(configuration: CLIPConfiguration.ViTaminConfiguration, stem: (Conv2d, LayerNorm, Conv2d), stages: [[MbConv]],
                 poolNorm: LayerNorm, poolConv: Conv2d, positionalEmbedding: Tensor?, blocks: [Block], fcNorm: LayerNorm, head: Linear) {
        (self.configuration, self.stem, self.stages, self.poolNorm, self.poolConv) = (configuration, stem, stages, poolNorm, poolConv)
        (self.positionalEmbedding, self.blocks, self.fcNorm, self.head) = (positionalEmbedding, blocks, fcNorm, head)
    }

    /// The tower with its products in `precision` (LayerNorms, depthwise convolutions and attention stay fp32).
    func converted(to precision: Precision) throws(TensorError) -> ViTamin {
        var stages: [[MbConv]] = []
        for stage in self.stages {
            var converted: [MbConv] = []
            for block in stage { converted.append(try block.converted(to: precision)) }
            stages.append(converted)
        }
        var blocks: [Block] = []
        for block in self.blocks { blocks.append(try block.converted(to: precision)) }
        return ViTamin(configuration: configuration, stem: (try stem.0.converted(to: precision), stem.1, try stem.2.converted(to: precision)),
                       stages: stages, poolNorm: poolNorm, poolConv: try poolConv.converted(to: precision),
                       positionalEmbedding: positionalEmbedding, blocks: blocks, fcNorm: fcNorm, head: try head.converted(to: precision))
    }

    /// `pixels` [N, 3, H, W] → [N, embed]. With positions the side must be the one they were learned for (timm's
    /// ViT adds them without resampling); without, any side up to the bound (one token per 16×16 pixels, rounded up).
    func forward(_ pixels: Tensor) throws(CLIPError) -> Tensor {
        let sides = configuration.sides
        guard pixels.rank == 4, pixels.shape[1] == 3, sides.contains(pixels.shape[2]), sides.contains(pixels.shape[3]) else {
            throw .imageShape(pixels.shape, expected: "[N, 3, \(configuration.resolution), \(configuration.resolution)]"
                              + (sides.count > 1 ? " (each side \(sides.lowerBound)...\(sides.upperBound))" : ""))
        }
        do throws(TensorError) {
            var x = try stem.0.forward(channelsLast(pixels))
            try stem.1.normalize(&x)
            gelu(&x)
            x = try stem.2.forward(x)
            for stage in stages {
                for block in stage { x = try block.forward(x) }
            }
            try poolNorm.normalize(&x)
            x = try poolConv.forward(x)
            // [N, gh, gw, width] is the token rows [N, gh·gw, width] in memory.
            let (n, tokens, width) = (x.shape[0], x.shape[1] * x.shape[2], x.shape[3])
            if let positions = positionalEmbedding {
                guard x.shape[1] == x.shape[2], positions.count == tokens * width else {
                    throw TensorError.shapeMismatch(operation: "ViTamin positions", positions.shape, [tokens, width])
                }
                // No class token: the patches plus their positions, as a ViT's tokens are made.
                x = tokenRows(Tensor(uncheckedShape: [n * tokens, width], scalars: x.scalars), classEmbedding: Tensor(uncheckedZeros: [0]),
                              positions: positions, grid: x.shape[1])
            } else {
                x = Tensor(uncheckedShape: [n, tokens, width], scalars: x.scalars)
            }
            var ws = Workspace(batch: n, tokens: tokens, width: width, hidden: configuration.mlpHidden)
            for block in blocks { try block.forward(&x, workspace: &ws) }
            // timm's global_pool 'avg' then fc_norm, then open_clip's projection.
            var pooled = meanOfRows(x, images: n, rows: tokens, width: width)
            try fcNorm.normalize(&pooled)
            return try head(pooled)
        } catch {
            throw .internalShape(error)
        }
    }
}

extension ViTamin {
    /// timm's MbConvLNBlock: shortcut + 1×1(GELU(depthwise 3×3(GELU(1×1(LayerNorm2d(x)))))), the depthwise at the block's
    /// stride. The shortcut of a stride-2 block (each stage's first) is a 3×3 average pool (stride 2, padding not
    /// counted) then a 1×1 convolution when the width changes; of the others (as wide as their input), x.
    struct MbConv: Sendable {
        let shortcut: Shortcut
        let norm: LayerNorm
        let expand: Linear  // 1×1, in → expanded
        let depthwise: DepthwiseConv2d  // 3×3 at the block's stride
        let project: Linear  // 1×1, expanded → out

        enum Shortcut: Sendable {
            case identity
            case pool(expand: Linear?)
        }

        init(_ r: ParameterReader, _ p: String, in c: Int, out o: Int, expanded e: Int, stride: Int) throws(ModelLoadError) {
            if stride == 2 {
                shortcut = .pool(expand: c == o ? nil : try Linear(r, "\(p).shortcut.expand", in: c, out: o, weightShape: [o, c, 1, 1]))
            } else {
                guard c == o else {
                    throw .architecture("\(p): a stride-1 MbConv block of timm's ViTamin keeps its width (\(c) in, \(o) out)", origin: r.origin)
                }
                shortcut = .identity
            }
            norm = try LayerNorm(r, "\(p).pre_norm", width: c, eps: CLIPConfiguration.ViTaminConfiguration.layerNormEps)
            expand = try Linear(r, "\(p).conv1_1x1", in: c, out: e, weightShape: [e, c, 1, 1])
            let w = try r.tensor("\(p).conv2_kxk.weight", shape: [e, 1, 3, 3]), b = try r.tensor("\(p).conv2_kxk.bias", shape: [e])
            do { depthwise = try DepthwiseConv2d(weight: w, bias: b, stride: stride) } catch {
                throw .architecture("\(p).conv2_kxk.weight: \(error)", origin: r.origin)
            }
            project = try Linear(r, "\(p).conv3_1x1", in: e, out: o, weightShape: [o, e, 1, 1])
        }

        private init(shortcut: Shortcut, norm: LayerNorm, expand: Linear, depthwise: DepthwiseConv2d, project: Linear) {
            (self.shortcut, self.norm, self.expand, self.depthwise, self.project) = (shortcut, norm, expand, depthwise, project)
        }

        func converted(to precision: Precision) throws(TensorError) -> MbConv {
            let shortcut: Shortcut
            switch self.shortcut {
            case .identity: shortcut = .identity
            case .pool(let l): shortcut = .pool(expand: try l?.converted(to: precision))
            }
            return MbConv(shortcut: shortcut, norm: norm, expand: try expand.converted(to: precision), depthwise: depthwise,
                          project: try project.converted(to: precision))
        }

        /// `x` [N, H, W, in] → [N, H', W', out] (H' = ⌈H / 2⌉ at stride 2).
        func forward(_ x: Tensor) throws(TensorError) -> Tensor {
            var out: Tensor
            switch shortcut {
            case .identity: out = x
            case .pool(let expand):
                let pooled = averagePool3x3Stride2(x)
                out = try expand?(pooled) ?? pooled
            }
            let normed = try norm(x)
            var hidden = Tensor(uninitialized: Array(x.shape.dropLast()) + [expand.outFeatures])
            try expand.forward(normed, into: &hidden, activation: .gelu)
            var mixed = try depthwise(hidden)
            gelu(&mixed)
            guard mixed.count / max(project.inFeatures, 1) == out.count / max(project.outFeatures, 1) else {
                throw .shapeMismatch(operation: "MbConv shortcut", out.shape, mixed.shape)
            }
            try project.forward(mixed, into: &out, accumulate: true)
            return out
        }
    }

    /// A ViT block with ViTamin's MLP: x + attn(norm1(x)), then + GeGLU(mlpNorm(norm2(x))), timm's `GeGluMlp`
    /// normalising its input again (`mlp.norm`).
    struct Block: Sendable {
        let norm1: LayerNorm
        let attention: MultiheadSelfAttention
        let norm2: LayerNorm
        let mlpNorm: LayerNorm
        let mlp: GatedMLP

        init(_ r: ParameterReader, _ p: String, _ c: CLIPConfiguration.ViTaminConfiguration) throws(ModelLoadError) {
            let (w, eps) = (c.width, CLIPConfiguration.ViTaminConfiguration.layerNormEps)
            norm1 = try LayerNorm(r, "\(p).norm1", width: w, eps: eps)
            attention = MultiheadSelfAttention(inProj: try Linear(r, "\(p).attn.qkv", in: w, out: 3 * w),
                                               outProj: try Linear(r, "\(p).attn.proj", in: w, out: w), heads: c.heads)
            norm2 = try LayerNorm(r, "\(p).norm2", width: w, eps: eps)
            mlpNorm = try LayerNorm(r, "\(p).mlp.norm", width: w, eps: eps)
            mlp = try GatedMLP(r, "\(p).mlp", names: .geGLU, width: w, hidden: c.mlpHidden, gate: .gelu, hiddenNorm: false, eps: eps)
        }

        private init(norm1: LayerNorm, attention: MultiheadSelfAttention, norm2: LayerNorm, mlpNorm: LayerNorm, mlp: GatedMLP) {
            (self.norm1, self.attention, self.norm2, self.mlpNorm, self.mlp) = (norm1, attention, norm2, mlpNorm, mlp)
        }

        func converted(to precision: Precision) throws(TensorError) -> Block {
            Block(norm1: norm1, attention: try attention.converted(to: precision), norm2: norm2, mlpNorm: mlpNorm,
                  mlp: try mlp.converted(to: precision))
        }

        /// The block in place on `x` [batch, tokens, width].
        func forward(_ x: inout Tensor, workspace ws: inout Workspace) throws(TensorError) {
            try norm1.forward(x, into: &ws.normed)
            try attention.forward(ws.normed, causal: false, into: &x, accumulate: true, workspace: &ws.attention)
            try norm2.forward(x, into: &ws.normed)
            try mlpNorm.normalize(&ws.normed)
            try mlp.forward(ws.normed, into: &x, accumulate: true, gated: &ws.gated, hidden: &ws.hidden)
        }
    }

    /// Buffers one forward pass reuses in every block; every element is written before it is read.
    struct Workspace {
        var normed: Tensor  // [batch, tokens, width]
        var attention: MultiheadSelfAttention.Workspace
        var gated: Tensor  // [batch·tokens, 2·hidden]
        var hidden: Tensor  // [batch·tokens, hidden]

        init(batch: Int, tokens: Int, width: Int, hidden: Int) {
            normed = Tensor(uninitialized: [batch, tokens, width])
            attention = MultiheadSelfAttention.Workspace(batch: batch, tokens: tokens, width: width)
            gated = Tensor(uninitialized: [batch * tokens, 2 * hidden])
            self.hidden = Tensor(uninitialized: [batch * tokens, hidden])
        }
    }
}

/// PyTorch's AvgPool2d(3, stride 2, padding 1, count_include_pad=False) over channels-last `x` [N, H, W, C] →
/// [N, ⌈H/2⌉, ⌈W/2⌉, C]: each output the mean of the inputs its window covers inside the image. Written here
/// rather than as a kernel: it runs once per stage on the shortcut, a few percent of a depthwise convolution's work.
func averagePool3x3Stride2(_ x: Tensor) -> Tensor {
    let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (ho, wo) = ((h + 1) / 2, (w + 1) / 2)
    return Tensor(uncheckedShape: [n, ho, wo, c]) { (out: UnsafeMutableBufferPointer<Float>) in
        x.scalars.withUnsafeBufferPointer { xp in
            for img in 0..<n {
                for oy in 0..<ho {
                    let (y0, y1) = (max(2 * oy - 1, 0), min(2 * oy + 1, h - 1))
                    for ox in 0..<wo {
                        let (x0, x1) = (max(2 * ox - 1, 0), min(2 * ox + 1, w - 1))
                        let o = out.baseAddress! + ((img * ho + oy) * wo + ox) * c
                        o.initialize(repeating: 0, count: c)
                        for y in y0...y1 {
                            for xx in x0...x1 {
                                let src = xp.baseAddress! + ((img * h + y) * w + xx) * c
                                for ch in 0..<c { o[ch] += src[ch] }
                            }
                        }
                        let scale = 1 / Float((y1 - y0 + 1) * (x1 - x0 + 1))
                        for ch in 0..<c { o[ch] *= scale }
                    }
                }
            }
        }
    }
}
