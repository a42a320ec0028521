import CLIPLayers
import CLIPTensor

/// timm's ConvNeXt image tower with open_clip's head (`visual.trunk.*`, `visual.head.*`). It works channels-last
/// ([N, H, W, C]) throughout, so every LayerNorm is over a row, the MLPs are plain GEMMs over the pixels, the stem and
/// the 2×2 downsampling convolutions are GEMMs over non-overlapping patches, and only the depthwise convolution is a
/// kernel of its own.
public struct ConvNeXt: Sendable {
    /// The stage sizes and head this tower was built with.
    public let configuration: CLIPConfiguration.ConvNeXtConfiguration
    let stem: Conv2d
    let stemNorm: LayerNorm
    let stages: [Stage]
    let headNorm: LayerNorm
    let head: [Linear]  // one Linear, or the MLP's two (GELU between)

    /// One stage: the downsampling (LayerNorm, then a 2×2 convolution of stride 2) for all but the first, then its
    /// blocks.
    struct Stage: Sendable {
        let downsample: (norm: LayerNorm, conv: Conv2d)?
        let blocks: [Block]
    }

    init(_ r: ParameterReader, _ c: CLIPConfiguration.ConvNeXtConfiguration, embedDim: Int) throws(ModelLoadError) {
        configuration = c
        let t = "visual.trunk", eps = c.layerNormEps
        stem = try Conv2d(r, "\(t).stem.0", in: 3, out: c.widths[0], kernel: c.patchSize, stride: c.patchSize)
        stemNorm = try LayerNorm(r, "\(t).stem.1", width: c.widths[0], eps: eps)
        var stages: [Stage] = []
        for (i, width) in c.widths.enumerated() {
            let p = "\(t).stages.\(i)"
            var downsample: (LayerNorm, Conv2d)?
            if i > 0 {
                downsample = (try LayerNorm(r, "\(p).downsample.0", width: c.widths[i - 1], eps: eps),
                              try Conv2d(r, "\(p).downsample.1", in: c.widths[i - 1], out: width, kernel: 2, stride: 2))
            }
            var blocks: [Block] = []
            for b in 0..<c.depths[i] { blocks.append(try Block(r, "\(p).blocks.\(b)", width: width, c)) }
            stages.append(Stage(downsample: downsample, blocks: blocks))
        }
        self.stages = stages
        let width = c.widths[3]
        headNorm = try LayerNorm(r, "\(t).head.norm", width: width, eps: eps)
        switch c.head {
        case .linear(let bias):
            head = [try Linear(r, "visual.head.proj", in: width, out: embedDim, bias: bias)]
        case .mlp(let hidden, let outputBias):
            head = [try Linear(r, "visual.head.mlp.fc1", in: width, out: hidden),
                    try Linear(r, "visual.head.mlp.fc2", in: hidden, out: embedDim, bias: outputBias)]
        }
    }

    private init(configuration: CLIPConfiguration.ConvNeXtConfiguration, stem: Conv2d, stemNorm: LayerNorm, stages: [Stage],
                 headNorm: LayerNorm, head: [Linear]) {
        (self.configuration, self.stem, self.stemNorm, self.stages, self.headNorm, self.head) =
            (configuration, stem, stemNorm, stages, headNorm, head)
    }

    /// `pixels` [N, 3, H, W] → [N, embed]. Any side of at least `minimumResolution` is accepted, as in timm (the
    /// feature map is averaged whatever its size).
    func forward(_ pixels: Tensor) throws(CLIPError) -> Tensor {
        let (minimum, maximum) = (configuration.minimumResolution, CLIPConfiguration.ConvNeXtConfiguration.maximumResolution)
        // The config's bound holds for encodeImage too: a larger side would make the first stage gigabytes per image.
        guard pixels.rank == 4, pixels.shape[1] == 3, min(pixels.shape[2], pixels.shape[3]) >= minimum,
              max(pixels.shape[2], pixels.shape[3]) <= maximum else {
            throw .imageShape(pixels.shape, expected: "[N, 3, \(configuration.resolution), \(configuration.resolution)] (each side \(minimum)...\(maximum))")
        }
        do throws(TensorError) {
            var x = try stem.forward(channelsLast(pixels))
            try stemNorm.normalize(&x)
            for stage in stages {
                if let (norm, conv) = stage.downsample {
                    var normalised = Tensor(uninitialized: x.shape)
                    try norm.forward(x, into: &normalised)
                    x = try conv.forward(normalised)
                }
                for block in stage.blocks { try block.forward(&x) }
            }
            // timm's global average pool.
            var pooled = meanOfRows(x, images: x.shape[0], rows: x.shape[1] * x.shape[2], width: x.shape[3])
            try headNorm.normalize(&pooled)
            if head.count == 2 {
                var hidden = Tensor(uninitialized: [pooled.shape[0], head[0].outFeatures])
                try head[0].forward(pooled, into: &hidden, activation: .gelu)
                return try head[1](hidden)
            }
            return try head[0](pooled)
        } catch {
            throw .internalShape(error)
        }
    }

    func converted(to precision: Precision) throws(TensorError) -> ConvNeXt {
        var stages: [Stage] = []
        for stage in self.stages {
            var blocks: [Block] = []
            for block in stage.blocks { blocks.append(try block.converted(to: precision)) }
            var downsample: (LayerNorm, Conv2d)?
            if let (norm, conv) = stage.downsample { downsample = (norm, try conv.converted(to: precision)) }
            stages.append(Stage(downsample: downsample, blocks: blocks))
        }
        var head: [Linear] = []
        for layer in self.head { head.append(try layer.converted(to: precision)) }
        return ConvNeXt(configuration: configuration, stem: try stem.converted(to: precision), stemNorm: stemNorm,
                        stages: stages, headNorm: headNorm, head: head)
    }
}

extension ConvNeXt {
    /// A ConvNeXt block: x + γ·fc2(GELU(fc1(LayerNorm(dwconv(x))))), channels-last. γ (layer scale) is folded into
    /// fc2's rows and bias at load.
    struct Block: Sendable {
        let depthwise: DepthwiseConv2d
        let norm: LayerNorm
        let mlp: PointwiseMLP

        init(_ r: ParameterReader, _ p: String, width: Int, _ c: CLIPConfiguration.ConvNeXtConfiguration) throws(ModelLoadError) {
            let hidden = width * c.mlpRatio
            depthwise = try DepthwiseConv2d(r, "\(p).conv_dw", channels: width, kernel: c.kernel)
            norm = try LayerNorm(r, "\(p).norm", width: width, eps: c.layerNormEps)
            let fc1 = try Linear(r, "\(p).mlp.fc1", in: width, out: hidden)
            guard c.layerScale else {
                mlp = PointwiseMLP(fc1: fc1, fc2: try Linear(r, "\(p).mlp.fc2", in: hidden, out: width))
                return
            }
            mlp = PointwiseMLP(fc1: fc1, fc2: try Linear(r, "\(p).mlp.fc2", scaledBy: "\(p).gamma", scaleShape: [width],
                                                              in: hidden, out: width))
        }

        private init(depthwise: DepthwiseConv2d, norm: LayerNorm, mlp: PointwiseMLP) {
            (self.depthwise, self.norm, self.mlp) = (depthwise, norm, mlp)
        }

        func converted(to precision: Precision) throws(TensorError) -> Block {
            Block(depthwise: depthwise, norm: norm, mlp: try mlp.converted(to: precision))
        }

        /// `x` [N, H, W, C] → the same shape, in place.
        func forward(_ x: inout Tensor) throws(TensorError) {
            var mixed = try depthwise(x)
            try norm.normalize(&mixed)
            try mlp.forward(mixed, addingTo: &x)
        }
    }
}

/// [N, C, H, W] → [N, H, W, C].
func channelsLast(_ x: Tensor) -> Tensor {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    var out = [Float](repeating: 0, count: x.count)
    for img in 0..<n {
        for ch in 0..<c {
            for p in 0..<(h * w) { out[(img * h * w + p) * c + ch] = x.scalars[(img * c + ch) * h * w + p] }
        }
    }
    return Tensor(uncheckedShape: [n, h, w, c], scalars: out)
}
