import CLIPLayers
import CLIPWeights

extension CLIPConfiguration {
    /// A FastViT image tower as timm builds it for open_clip's MobileCLIP models (`fastvit_mci0` … `fastvit_mci4`): a
    /// stem of three MobileOne blocks (stride 4 in all), stages of RepMixer blocks (a reparameterisable depthwise
    /// convolution) or attention blocks, each stage after the first entered through a stride-2 large-kernel depthwise
    /// convolution (with squeeze-excitation where `squeezeExcite` says) and a 1×1 MobileOne block, attention stages
    /// through a conditional positional encoding (RepCPE); then a depthwise 3×3 that widens the channels, with
    /// squeeze-excitation, the mean over the feature map and timm's classifier as the projection.
    ///
    /// The checkpoints hold the training-time branches (a convolution and a BatchNorm per branch, identity BatchNorms);
    /// they are folded into single convolutions at load, as timm's `reparameterize_model` does for inference. Every
    /// activation is exact GELU; attention heads are 32 wide (timm's `head_dim`).
    public struct FastViTConfiguration: Sendable, Equatable {
        /// Blocks per stage (mci1: [4, 12, 20, 4]).
        public var depths: [Int]
        /// Channels per stage (mci1: [64, 128, 256, 512]).
        public var widths: [Int]
        /// Hidden width of each stage's MLP (timm's int(width · mlp_ratio)).
        public var mlpHidden: [Int]
        /// Whether each stage's blocks mix tokens by attention (true) or by RepMixer's depthwise convolution.
        public var attention: [Bool]
        /// Whether each stage starts with RepCPE, a 7×7 depthwise convolution added to its input.
        public var positionalEmbedding: [Bool]
        /// Whether each stage's downsampling has squeeze-excitation (always false for the first, which has none).
        public var squeezeExcite: [Bool]
        /// Side of RepMixer's depthwise convolution (3).
        public var repMixerKernel: Int
        /// Whether the stem's 3×3 blocks have a 1×1 branch beside the 3×3 one (not mci3 and mci4).
        public var stemScaleBranch: Bool
        /// The attention blocks' normalisation before attention.
        public var attentionNorm: Norm
        /// Channels after the final convolution (twice the last stage's).
        public var finalWidth: Int
        /// The input side: any side works (the tower is convolutional and its attention global); this is the one it
        /// was trained at.
        public var resolution: Int
        /// The timm model whose settings these are; nil when no config named one.
        public var timmModel: String?

        /// How an attention block normalises its input.
        public enum Norm: Sendable, Equatable {
            /// BatchNorm2d (mci0–mci2), folded into the q, k, v projection at load.
            case batchNorm
            /// timm's LayerNorm2d over the channels, ε 1e-5 (mci3, mci4).
            case layerNorm
        }

        /// A tower of the given sizes; the other settings default to mci0–mci2's.
        public init(depths: [Int], widths: [Int], mlpHidden: [Int], attention: [Bool], positionalEmbedding: [Bool],
                    squeezeExcite: [Bool], repMixerKernel: Int = 3, stemScaleBranch: Bool = true, attentionNorm: Norm = .batchNorm,
                    finalWidth: Int, resolution: Int, timmModel: String? = nil) {
            (self.depths, self.widths, self.mlpHidden, self.attention) = (depths, widths, mlpHidden, attention)
            (self.positionalEmbedding, self.squeezeExcite, self.repMixerKernel) = (positionalEmbedding, squeezeExcite, repMixerKernel)
            (self.stemScaleBranch, self.attentionNorm, self.finalWidth) = (stemScaleBranch, attentionNorm, finalWidth)
            (self.resolution, self.timmModel) = (resolution, timmModel)
        }

        /// What timm builds for each model this tower computes, MobileCLIP's MCi encoders, beyond what the weights show
        /// (checked against them by open_clip's loader): the stage count, the MLP ratio (hidden = int(width · ratio)),
        /// which stages attend (those also have RepCPE), which downsamplings squeeze-excite, the attention blocks'
        /// norm, and whether the stem has 1×1 branches. Widths and depths are the weights' (mci0 and mci1 differ only
        /// in depth). What the weights cannot show is the same for all five and built in: GELU after the large-kernel
        /// convolutions (`lkc_use_act`; timm's other FastViTs have none), 32-wide heads, BatchNorm ε 1e-5.
        package static let timmModels: [String: (mlpRatio: Double, attention: [Bool], squeezeExcite: [Bool], norm: Norm,
                                                 stemScaleBranch: Bool)] = [
            "fastvit_mci0": (3, [false, false, false, true], [false, false, true, true], .batchNorm, true),
            "fastvit_mci1": (3, [false, false, false, true], [false, false, true, true], .batchNorm, true),
            "fastvit_mci2": (3, [false, false, false, true], [false, false, true, true], .batchNorm, true),
            "fastvit_mci3": (4, [false, false, false, true, true], [false, false, false, false, false], .layerNorm, false),
            "fastvit_mci4": (4, [false, false, false, true, true], [false, false, false, false, false], .layerNorm, false),
        ]

        /// Width of every attention head (timm's FastViT `Attention(head_dim=32)`).
        public static let headWidth = 32

        /// The largest input side accepted, in the config and in `encodeImage` (MobileCLIP's tags use 256): at 1,024
        /// mci4's stem output holds 512²·128 floats (128 MB) per image.
        public static let maximumResolution = 1_024

        /// The smallest input side that leaves every stage at least one pixel: the stride-4 stem and a halving per
        /// later stage.
        public var minimumResolution: Int { 4 << max(depths.count - 1, 0) }

        /// Throws unless the sizes describe a tower timm builds and a config has named its timm model.
        func validate(origin: String) throws(ModelLoadError) {
            guard let timmModel, Self.timmModels[timmModel] != nil else {
                throw .architecture("the weights have a FastViT image tower (visual.trunk.stem.0.conv_kxk.*: MobileCLIP), whose activations after the large-kernel convolutions are not in the weights; load it with its open_clip config (vision_cfg.timm_model_name fastvit_mci0 … fastvit_mci4)", origin: origin)
            }
            let stages = depths.count
            guard (1...8).contains(stages), [widths.count, mlpHidden.count, attention.count, positionalEmbedding.count,
                                             squeezeExcite.count].allSatisfy({ $0 == stages }) else {
                throw .architecture("a FastViT tower has 1 to 8 stages with one setting each, got depths \(depths) and widths \(widths)", origin: origin)
            }
            var sizes = [("repMixerKernel", repMixerKernel, 31), ("finalWidth", finalWidth, 8_192), ("resolution", resolution, Self.maximumResolution)]
            // Widths bounded so that a 1,024-pixel image's activations stay bounded: the stem's output, (side/2)² ·
            // widths[0], is 512 MB per image at 512 channels (mci4 has 128), each later stage's at most a quarter of
            // that at 4,096 (mci4: 2,048).
            sizes.append(("widths[0]", widths.first ?? 0, 512))
            for i in 0..<stages {
                sizes += [("depths[\(i)]", depths[i], 1_024), ("widths[\(i)]", widths[i], 4_096), ("mlpHidden[\(i)]", mlpHidden[i], 32_768)]
            }
            try CLIPConfiguration.checkBounded(sizes, tower: "a FastViT", origin: origin)
            guard repMixerKernel % 2 == 1 else {
                throw .architecture("RepMixer's window is \(repMixerKernel) wide; timm pads odd windows only", origin: origin)
            }
            for i in 1..<max(stages, 1) where widths[i] % widths[i - 1] != 0 {
                throw .architecture("stage \(i) is \(widths[i]) channels wide, not a multiple of the \(widths[i - 1]) its depthwise downsampling reads", origin: origin)
            }
            guard finalWidth % widths[stages - 1] == 0 else {
                throw .architecture("the final convolution's \(finalWidth) channels are not a multiple of the last stage's \(widths[stages - 1])", origin: origin)
            }
            for i in 0..<stages where attention[i] && widths[i] % Self.headWidth != 0 {
                throw .architecture("attention stage \(i) is \(widths[i]) channels wide, which timm's \(Self.headWidth)-wide heads do not divide", origin: origin)
            }
            guard resolution >= minimumResolution else {
                throw .architecture("FastViT input side \(resolution) is below \(minimumResolution) (a stride-4 stem and \(stages - 1) halvings)", origin: origin)
            }
        }

        /// The tower as the checkpoint's `visual.trunk.*` tensors describe it (input side 256 and no timm model until a
        /// config names one), or nil when the checkpoint has no FastViT tower.
        static func infer(_ shape: (String, Int) throws(ModelLoadError) -> [Int], has: (String) -> Bool,
                          blocks: (String) throws(ModelLoadError) -> Int, origin: String) throws(ModelLoadError) -> FastViTConfiguration? {
            let t = "visual.trunk"
            guard has("\(t).stem.0.conv_kxk.0.conv.weight") else { return nil }
            let stem = try shape("\(t).stem.0.conv_kxk.0.conv.weight", 4)
            guard stem[1] == 3, stem[2] == 3, stem[3] == 3 else {
                throw .architecture("\(t).stem.0.conv_kxk.0.conv.weight has shape \(stem), expected [width, 3, 3, 3]", origin: origin)
            }
            let stages = try blocks("\(t).stages")
            guard (1...8).contains(stages) else {
                throw .architecture("\(t).stages has \(stages) stages; a FastViT tower here has 1 to 8", origin: origin)
            }
            var c = FastViTConfiguration(depths: [], widths: [], mlpHidden: [], attention: [], positionalEmbedding: [],
                                         squeezeExcite: [], finalWidth: 0, resolution: 256)
            for i in 0..<stages {
                let s = "\(t).stages.\(i)"
                c.depths.append(try blocks("\(s).blocks"))
                guard c.depths[i] > 0 else { throw .missingTensor("\(s).blocks.0.mlp.fc1.weight", origin: origin) }
                c.widths.append(i == 0 ? stem[0] : try shape("\(s).downsample.proj.0.large_conv.conv.weight", 4)[0])
                c.mlpHidden.append(try shape("\(s).blocks.0.mlp.fc1.weight", 4)[0])
                c.attention.append(has("\(s).blocks.0.token_mixer.qkv.weight"))
                c.positionalEmbedding.append(has("\(s).pos_emb.pos_enc.weight"))
                c.squeezeExcite.append(has("\(s).downsample.proj.0.se.fc1.weight"))
            }
            if let first = c.attention.firstIndex(of: false) {
                c.repMixerKernel = try shape("\(t).stages.\(first).blocks.0.token_mixer.mixer.conv_kxk.0.conv.weight", 4)[3]
            }
            if let first = c.attention.firstIndex(of: true) {
                c.attentionNorm = has("\(t).stages.\(first).blocks.0.norm.running_mean") ? .batchNorm : .layerNorm
            }
            c.stemScaleBranch = has("\(t).stem.0.conv_scale.conv.weight")
            c.finalWidth = try shape("\(t).final_conv.conv_kxk.0.conv.weight", 4)[0]
            return c
        }
    }
}
