import CLIPLayers
import CLIPWeights

extension CLIPConfiguration {
    /// A ConvNeXt image tower as timm builds it for open_clip's `convnext_*` models: a patchify stem (a p×p
    /// convolution of stride p and a LayerNorm), four stages of ConvNeXt blocks (depthwise k×k convolution,
    /// LayerNorm, MLP with GELU, layer scale, residual), each stage after the first entered through a LayerNorm and a
    /// 2×2 convolution of stride 2; then the mean over the feature map, a LayerNorm, and open_clip's projection head.
    public struct ConvNeXtConfiguration: Sendable, Equatable {
        /// Blocks per stage (convnext_base: [3, 3, 27, 3]).
        public var depths: [Int]
        /// Channels per stage (convnext_base: [128, 256, 512, 1024]).
        public var widths: [Int]
        /// Side of the depthwise convolution's window (7).
        public var kernel: Int
        /// Side and stride of the stem's convolution (4).
        public var patchSize: Int
        /// The MLP's hidden width over its input width (4).
        public var mlpRatio: Int
        /// Whether each block scales its residual branch by a learned vector (`gamma`: timm's layer scale).
        public var layerScale: Bool
        /// The input side: any side works (the tower is convolutional); this is the one it was trained at.
        public var resolution: Int
        /// ε of every LayerNorm (timm: 1e-6; convnext_xxlarge 1e-5).
        public var layerNormEps: Float
        /// open_clip's head after the pooled, normalised features.
        public var head: Head

        /// open_clip's `timm_proj`: one Linear, or an MLP (Linear with bias, GELU, Linear).
        public enum Head: Sendable, Equatable {
            /// `visual.head.proj` [embed, width].
            case linear(bias: Bool)
            /// `visual.head.mlp.fc1` [hidden, width] with bias, GELU, `visual.head.mlp.fc2` [embed, hidden].
            case mlp(hidden: Int, outputBias: Bool)
        }

        /// A tower of the given sizes with timm's defaults: 7×7 windows, a stem of 4, MLP ratio 4, layer scale,
        /// ε 1e-6, a Linear head without bias.
        public init(depths: [Int], widths: [Int], resolution: Int, kernel: Int = 7, patchSize: Int = 4, mlpRatio: Int = 4,
                    layerScale: Bool = true, layerNormEps: Float = 1e-6, head: Head = .linear(bias: false)) {
            (self.depths, self.widths, self.resolution, self.kernel, self.patchSize) = (depths, widths, resolution, kernel, patchSize)
            (self.mlpRatio, self.layerScale, self.layerNormEps, self.head) = (mlpRatio, layerScale, layerNormEps, head)
        }

        /// The largest input side accepted (open_clip's ConvNeXt tags use 224 to 320): at 1,024 the first stage of
        /// convnext_xxlarge holds 256²·384 floats (100 MB) per image and buffer.
        public static let maximumResolution = 1_024

        /// The smallest input side that leaves every stage at least one pixel: the stem and three halvings.
        public var minimumResolution: Int { patchSize * 8 }

        /// Throws unless the sizes describe a tower timm builds.
        func validate(origin: String) throws(ModelLoadError) {
            guard depths.count == 4, widths.count == 4 else {
                throw .architecture("a ConvNeXt tower has 4 stages, got depths \(depths) and widths \(widths)", origin: origin)
            }
            var sizes = [("kernel", kernel), ("patchSize", patchSize), ("mlpRatio", mlpRatio), ("resolution", resolution)]
            sizes += depths.enumerated().map { ("depths[\($0.offset)]", $0.element) }
            sizes += widths.enumerated().map { ("widths[\($0.offset)]", $0.element) }
            if case .mlp(let hidden, _) = head { sizes.append(("head hidden width", hidden)) }
            for (name, value) in sizes where value <= 0 {
                throw .architecture("configuration vision.\(name) is \(value); it must be positive", origin: origin)
            }
            // Bounds far above timm's sizes (7, 4, 4, 3072 channels) and below what would make a hostile checkpoint's
            // padded feature maps or products overflow memory.
            for (name, value, limit) in [("kernel", kernel, 31), ("patchSize", patchSize, 64), ("mlpRatio", mlpRatio, 16)]
                + widths.enumerated().map({ ("widths[\($0.offset)]", $0.element, 16_384) }) + depths.enumerated().map({ ("depths[\($0.offset)]", $0.element, 1_024) })
            where value > limit {
                throw .architecture("configuration vision.\(name) is \(value); a ConvNeXt tower here takes at most \(limit)", origin: origin)
            }
            guard kernel % 2 == 1 else {
                throw .architecture("the depthwise convolution's window is \(kernel) wide; timm's ConvNeXt pads odd windows only", origin: origin)
            }
            guard resolution <= Self.maximumResolution else {
                throw .architecture("ConvNeXt input side \(resolution) is above \(Self.maximumResolution): its first stage alone would hold gigabytes per image", origin: origin)
            }
            guard resolution >= minimumResolution else {
                throw .architecture("ConvNeXt input side \(resolution) is below \(minimumResolution) (a \(patchSize)-pixel stem and three halvings)", origin: origin)
            }
            guard layerNormEps > 0, layerNormEps.isFinite else {
                throw .architecture("configuration vision.layerNormEps is \(layerNormEps); it must be positive", origin: origin)
            }
        }

        /// The tower as the checkpoint's `visual.trunk.*` and `visual.head.*` tensors describe it (input side 224, ε
        /// 1e-6 until a config says otherwise), or nil when the checkpoint has no ConvNeXt tower.
        static func infer(_ shape: (String, Int) throws(ModelLoadError) -> [Int], has: (String) -> Bool,
                          blocks: (String) throws(ModelLoadError) -> Int, origin: String) throws(ModelLoadError) -> ConvNeXtConfiguration? {
            let t = "visual.trunk"
            guard has("\(t).stem.0.weight") else { return nil }
            let stem = try shape("\(t).stem.0.weight", 4)
            guard stem[1] == 3, stem[2] == stem[3] else {
                throw .architecture("\(t).stem.0.weight has shape \(stem), expected [width, 3, patch, patch]", origin: origin)
            }
            let stages = try blocks("\(t).stages")
            guard stages == 4 else { throw .architecture("\(t).stages has \(stages) stages; timm's ConvNeXt has 4", origin: origin) }
            var depths: [Int] = [], widths: [Int] = []
            for i in 0..<4 {
                depths.append(try blocks("\(t).stages.\(i).blocks"))
                guard depths[i] > 0 else { throw .missingTensor("\(t).stages.\(i).blocks.0.conv_dw.weight", origin: origin) }
                widths.append(try shape("\(t).stages.\(i).blocks.0.conv_dw.weight", 4)[0])
            }
            let kernel = try shape("\(t).stages.0.blocks.0.conv_dw.weight", 4)[3]
            let hidden = try shape("\(t).stages.0.blocks.0.mlp.fc1.weight", 2)[0]
            guard hidden % widths[0] == 0 else {
                throw .architecture("\(t).stages.0.blocks.0.mlp.fc1.weight has \(hidden) rows, not a multiple of the stage's \(widths[0]) channels", origin: origin)
            }
            let head: Head
            if has("visual.head.mlp.fc1.weight") {
                head = .mlp(hidden: try shape("visual.head.mlp.fc1.weight", 2)[0], outputBias: has("visual.head.mlp.fc2.bias"))
            } else {
                _ = try shape("visual.head.proj.weight", 2)
                head = .linear(bias: has("visual.head.proj.bias"))
            }
            // Without a config only the shapes tell the sizes apart: timm's convnext_xxlarge (these widths) is the one
            // built with ε 1e-5. A config's timm_model_name decides when there is one.
            let eps: Float = widths == [384, 768, 1536, 3072] ? 1e-5 : 1e-6
            return ConvNeXtConfiguration(depths: depths, widths: widths, resolution: 224, kernel: kernel, patchSize: stem[3],
                                         mlpRatio: hidden / widths[0], layerScale: has("\(t).stages.0.blocks.0.gamma"),
                                         layerNormEps: eps, head: head)
        }
    }
}
