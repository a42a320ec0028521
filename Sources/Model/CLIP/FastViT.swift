import CLIPLayers
import CLIPTensor

/// timm's FastViT image tower with open_clip's use of it (`visual.trunk.*`): MobileCLIP's MCi encoders. It works
/// channels-last ([N, H, W, C]) throughout, so the 1×1 convolutions and MLPs are GEMMs over the pixels, attention reads
/// the pixels as tokens in place, and only the depthwise convolutions are kernels of their own. Every MobileOne,
/// RepMixer, large-kernel and RepCPE block is folded into one convolution at load (timm's `reparameterize`), so the
/// forward pass is the inference graph MobileCLIP ships.
public struct FastViT: Sendable {
    /// The stage sizes and settings this tower was built with.
    public let configuration: CLIPConfiguration.FastViTConfiguration
    let stem: (Conv2d, DepthwiseConv2d, Conv2d)  // 3×3 stride 2; depthwise 3×3 stride 2; 1×1 (each then GELU)
    let stages: [Stage]
    let finalConv: DepthwiseConv2d  // 3×3, channels × finalWidth / last width
    let finalExcite: SqueezeExcite
    let head: Linear  // [finalWidth] → [embed], with bias

    /// One stage: its downsampling (all but the first), RepCPE (attention stages), then its blocks.
    struct Stage: Sendable {
        let downsample: Downsample?
        let positionalEmbedding: DepthwiseConv2d?  // identity folded in: replaces its input
        let blocks: [Block]
    }

    /// A stage's entry: a stride-2 large-kernel depthwise convolution (squeeze-excitation optional, then GELU) and a
    /// 1×1 convolution (then GELU).
    struct Downsample: Sendable {
        let depthwise: DepthwiseConv2d
        let excite: SqueezeExcite?
        let pointwise: Conv2d
    }

    init(_ r: ParameterReader, _ c: CLIPConfiguration.FastViTConfiguration, embedDim: Int) throws(ModelLoadError) {
        configuration = c
        let t = "visual.trunk", w0 = c.widths[0]
        func branches(_ p: String, kernel: Int) -> [(String, Int)] {
            [("\(p).conv_kxk.0", kernel)] + (c.stemScaleBranch ? [("\(p).conv_scale", 1)] : [])
        }
        stem = (try denseConvolution(r, MobileOneBranches(convolutions: branches("\(t).stem.0", kernel: 3)), in: 3, out: w0,
                                     kernel: 3, stride: 2),
                try MobileOneBranches(convolutions: branches("\(t).stem.1", kernel: 3)).depthwise(r, in: w0, out: w0, kernel: 3,
                                                                                                  stride: 2),
                try denseConvolution(r, MobileOneBranches(convolutions: [("\(t).stem.2.conv_kxk.0", 1)], identity: "\(t).stem.2.identity"),
                                     in: w0, out: w0, kernel: 1, stride: 1))
        var stages: [Stage] = []
        for i in c.depths.indices {
            let s = "\(t).stages.\(i)", width = c.widths[i]
            var downsample: Downsample?
            if i > 0 {
                let p = "\(s).downsample.proj", previous = c.widths[i - 1]
                let large = MobileOneBranches(convolutions: [("\(p).0.large_conv", 7), ("\(p).0.small_conv", 3)])
                downsample = Downsample(
                    depthwise: try large.depthwise(r, in: previous, out: width, kernel: 7, stride: 2),
                    excite: c.squeezeExcite[i] ? try SqueezeExcite(r, "\(p).0.se", channels: width,
                                                                   reduced: timmMakeDivisible(Double(width) * 0.25, divisor: 8, roundLimit: 0)) : nil,
                    pointwise: try denseConvolution(r, MobileOneBranches(convolutions: [("\(p).1.conv_kxk.0", 1)], identity: "\(p).1.identity"),
                                                    in: width, out: width, kernel: 1, stride: 1))
            }
            var positions: DepthwiseConv2d?
            if c.positionalEmbedding[i] {
                positions = try plusIdentity(r, "\(s).pos_emb.pos_enc", channels: width, kernel: 7)
            }
            var blocks: [Block] = []
            for b in 0..<c.depths[i] {
                blocks.append(try Block(r, "\(s).blocks.\(b)", width: width, hidden: c.mlpHidden[i], attention: c.attention[i], c))
            }
            stages.append(Stage(downsample: downsample, positionalEmbedding: positions, blocks: blocks))
        }
        self.stages = stages
        let last = c.widths[c.widths.count - 1]
        finalConv = try MobileOneBranches(convolutions: [("\(t).final_conv.conv_kxk.0", 3), ("\(t).final_conv.conv_scale", 1)])
            .depthwise(r, in: last, out: c.finalWidth, kernel: 3, stride: 1)
        finalExcite = try SqueezeExcite(r, "\(t).final_conv.se", channels: c.finalWidth,
                                        reduced: timmMakeDivisible(Double(c.finalWidth) / 16, divisor: 1, roundLimit: 0))
        head = try Linear(r, "\(t).head.fc", in: c.finalWidth, out: embedDim)
    }

    private init(configuration: CLIPConfiguration.FastViTConfiguration, stem: (Conv2d, DepthwiseConv2d, Conv2d), stages: [Stage],
                 finalConv: DepthwiseConv2d, finalExcite: SqueezeExcite, head: Linear) {
        (self.configuration, self.stem, self.stages) = (configuration, stem, stages)
        (self.finalConv, self.finalExcite, self.head) = (finalConv, finalExcite, head)
    }

    /// `pixels` [N, 3, H, W] → [N, embed]. Any side of at least `minimumResolution` is accepted, as in timm (the
    /// feature map is averaged whatever its size).
    func forward(_ pixels: Tensor) throws(CLIPError) -> Tensor {
        let (minimum, maximum) = (configuration.minimumResolution, CLIPConfiguration.FastViTConfiguration.maximumResolution)
        guard pixels.rank == 4, pixels.shape[1] == 3, min(pixels.shape[2], pixels.shape[3]) >= minimum,
              max(pixels.shape[2], pixels.shape[3]) <= maximum else {
            throw .imageShape(pixels.shape, expected: "[N, 3, \(configuration.resolution), \(configuration.resolution)] (each side \(minimum)...\(maximum))")
        }
        do throws(TensorError) {
            var x = try stem.0.forward(channelsLast(pixels), activation: .gelu)
            x = try stem.1(x)
            gelu(&x)
            x = try stem.2.forward(x, activation: .gelu)
            for stage in stages {
                if let d = stage.downsample {
                    x = try d.depthwise(x)
                    try d.excite?.forward(&x)
                    gelu(&x)
                    x = try d.pointwise.forward(x, activation: .gelu)
                }
                if let positions = stage.positionalEmbedding { x = try positions(x) }
                // One attention scratch for the stage's blocks (its feature map keeps one size).
                var workspace: MultiheadSelfAttention.Workspace?
                for block in stage.blocks { try block.forward(&x, workspace: &workspace) }
            }
            x = try finalConv(x)
            try finalExcite.forward(&x)
            gelu(&x)
            // timm's global average pool, then its classifier as the projection.
            let pooled = meanOfRows(x, images: x.shape[0], rows: x.shape[1] * x.shape[2], width: x.shape[3])
            return try head(pooled)
        } catch {
            throw .internalShape(error)
        }
    }

    /// The tower with its products in `precision` (the depthwise convolutions stay fp32).
    func converted(to precision: Precision) throws(TensorError) -> FastViT {
        var stages: [Stage] = []
        for stage in self.stages {
            var blocks: [Block] = []
            for block in stage.blocks { blocks.append(try block.converted(to: precision)) }
            let downsample = try stage.downsample.map { (d) throws(TensorError) in
                Downsample(depthwise: d.depthwise, excite: try d.excite?.converted(to: precision),
                           pointwise: try d.pointwise.converted(to: precision))
            }
            stages.append(Stage(downsample: downsample, positionalEmbedding: stage.positionalEmbedding, blocks: blocks))
        }
        return FastViT(configuration: configuration,
                       stem: (try stem.0.converted(to: precision), stem.1, try stem.2.converted(to: precision)), stages: stages,
                       finalConv: finalConv, finalExcite: try finalExcite.converted(to: precision),
                       head: try head.converted(to: precision))
    }
}

extension FastViT {
    /// A FastViT block: a token mixer, then x + γ·ConvMlp(x), ConvMlp being a 7×7 depthwise convolution (BatchNorm
    /// folded in), fc1, GELU and fc2 over the channels (γ folded into fc2).
    struct Block: Sendable {
        let mixer: Mixer
        let mlpConv: DepthwiseConv2d
        let mlp: PointwiseMLP

        enum Mixer: Sendable {
            /// RepMixer folded into one depthwise convolution (x + γ·(mixer(x) − norm(x)) is linear in x).
            case repMixer(DepthwiseConv2d)
            /// x + γ·proj(attention(norm(x))): a BatchNorm is folded into the q, k, v projection (nil here), a
            /// LayerNorm over the channels is applied first; γ is folded into the output projection.
            case attention(norm: LayerNorm?, MultiheadSelfAttention)
        }

        init(_ r: ParameterReader, _ p: String, width: Int, hidden: Int, attention: Bool,
             _ c: CLIPConfiguration.FastViTConfiguration) throws(ModelLoadError) {
            let gammaShape = [width, 1, 1]
            if attention {
                let heads = width / CLIPConfiguration.FastViTConfiguration.headWidth
                let qkv: Linear, norm: LayerNorm?
                switch c.attentionNorm {
                case .batchNorm:
                    norm = nil
                    qkv = try batchNormThenLinear(r, batchNorm: "\(p).norm", linear: "\(p).token_mixer.qkv", in: width, out: 3 * width)
                case .layerNorm:
                    norm = try LayerNorm(r, "\(p).norm", width: width, eps: 1e-5)
                    qkv = try Linear(r, "\(p).token_mixer.qkv", in: width, out: 3 * width, bias: false)
                }
                let proj = try Linear(r, "\(p).token_mixer.proj", scaledBy: "\(p).layer_scale_1.gamma", scaleShape: gammaShape,
                                      in: width, out: width)
                mixer = .attention(norm: norm, MultiheadSelfAttention(inProj: qkv, outProj: proj, heads: heads))
            } else {
                mixer = .repMixer(try repMixer(r, "\(p).token_mixer", channels: width, kernel: c.repMixerKernel))
            }
            mlpConv = try MobileOneBranches(convolutions: [("\(p).mlp.conv", 7)]).depthwise(r, in: width, out: width, kernel: 7, stride: 1)
            let scale = attention ? "\(p).layer_scale_2.gamma" : "\(p).layer_scale.gamma"
            mlp = PointwiseMLP(fc1: try Linear(r, "\(p).mlp.fc1", in: width, out: hidden, weightShape: [hidden, width, 1, 1]),
                               fc2: try Linear(r, "\(p).mlp.fc2", scaledBy: scale, scaleShape: gammaShape, in: hidden,
                                               out: width, weightShape: [width, hidden, 1, 1]))
        }

        private init(mixer: Mixer, mlpConv: DepthwiseConv2d, mlp: PointwiseMLP) {
            (self.mixer, self.mlpConv, self.mlp) = (mixer, mlpConv, mlp)
        }

        func converted(to precision: Precision) throws(TensorError) -> Block {
            let mixer: Mixer
            switch self.mixer {
            case .repMixer: mixer = self.mixer
            case .attention(let norm, let attention): mixer = .attention(norm: norm, try attention.converted(to: precision))
            }
            return Block(mixer: mixer, mlpConv: mlpConv, mlp: try mlp.converted(to: precision))
        }

        /// `x` [N, H, W, C] → the same shape, in place; an attention block makes `workspace` the first time.
        func forward(_ x: inout Tensor, workspace: inout MultiheadSelfAttention.Workspace?) throws(TensorError) {
            switch mixer {
            case .repMixer(let conv):
                x = try conv(x)
            case .attention(let norm, let attention):
                // The pixels are the tokens: [N, H, W, C] is [N, H·W, C] in memory.
                let shape = x.shape
                var tokens = Tensor(uncheckedShape: [shape[0], shape[1] * shape[2], shape[3]], scalars: x.scalars)
                var input = tokens
                if let norm { try norm.normalize(&input) }
                var ws = workspace ?? MultiheadSelfAttention.Workspace(batch: shape[0], tokens: shape[1] * shape[2], width: shape[3])
                try attention.forward(input, causal: false, into: &tokens, accumulate: true, workspace: &ws)
                workspace = ws
                x = Tensor(uncheckedShape: shape, scalars: tokens.scalars)
            }
            try mlp.forward(try mlpConv(x), addingTo: &x)
        }
    }
}

/// The training-time branches of one reparameterisable convolution (timm's MobileOneBlock, ReparamLargeKernelConv,
/// ConvNormAct): convolutions each followed by a BatchNorm (`<prefix>.conv.weight`, `<prefix>.bn.*`) and an optional
/// identity BatchNorm, summed into one convolution as timm's `reparameterize` does: smaller kernels centred in the
/// larger window, the identity as a centre tap of 1 on each channel's own input.
struct MobileOneBranches {
    /// Each branch's prefix and kernel side.
    var convolutions: [(prefix: String, kernel: Int)]
    /// The identity branch's BatchNorm prefix, if any.
    var identity: String? = nil

    /// Every checkpoint tensor the branches hold.
    var names: [String] {
        convolutions.flatMap { ["\($0.prefix).conv.weight"] + BatchNormAffine.names("\($0.prefix).bn") }
            + (identity.map(BatchNormAffine.names) ?? [])
    }

    /// The summed weight [out, in / groups, k, k] and bias [out], in double precision, `groups` being `in` for a
    /// depthwise convolution and 1 for a dense one.
    func fold(_ r: ParameterReader, in c: Int, out o: Int, kernel k: Int, depthwise: Bool) throws(ModelLoadError) -> (weight: [Double], bias: [Double]) {
        let perGroup = depthwise ? 1 : c
        // Every branch is read (its shape checked against the file) before the sum is allocated.
        var branches: [(prefix: String, kernel: Int, weight: Tensor, norm: BatchNormAffine)] = []
        for (prefix, kb) in convolutions {
            guard kb <= k, kb % 2 == k % 2 else {
                throw .architecture("\(prefix): a \(kb)×\(kb) branch does not centre in a \(k)×\(k) window", origin: r.origin)
            }
            branches.append((prefix, kb, try r.tensor("\(prefix).conv.weight", shape: [o, perGroup, kb, kb]),
                             try BatchNormAffine(r, "\(prefix).bn", channels: o)))
        }
        let identityNorm = try identity.map { (name) throws(ModelLoadError) in try BatchNormAffine(r, name, channels: o) }
        var weight = [Double](repeating: 0, count: o * perGroup * k * k), bias = [Double](repeating: 0, count: o)
        for (_, kb, w, bn) in branches {
            let pad = (k - kb) / 2
            for oc in 0..<o {
                for ic in 0..<perGroup {
                    for y in 0..<kb {
                        for x in 0..<kb {
                            weight[((oc * perGroup + ic) * k + y + pad) * k + x + pad] +=
                                Double(w.scalars[((oc * perGroup + ic) * kb + y) * kb + x]) * bn.scale[oc]
                        }
                    }
                }
                bias[oc] += bn.shift[oc]
            }
        }
        if let identity, let bn = identityNorm {
            guard c == o else {
                throw .architecture("\(identity): an identity branch needs as many outputs as inputs (\(o) vs \(c))", origin: r.origin)
            }
            for ch in 0..<o {
                weight[((ch * perGroup + (depthwise ? 0 : ch)) * k + k / 2) * k + k / 2] += bn.scale[ch]
                bias[ch] += bn.shift[ch]
            }
        }
        return (weight, bias)
    }

    /// The branches as one depthwise convolution (output channel o reading input o / (out / in)).
    func depthwise(_ r: ParameterReader, in c: Int, out o: Int, kernel k: Int, stride: Int) throws(ModelLoadError) -> DepthwiseConv2d {
        let (w, b) = try fold(r, in: c, out: o, kernel: k, depthwise: true)
        return try depthwiseLayer(r, convolutions.first?.prefix ?? "", weight: w, bias: b, in: c, out: o, kernel: k, stride: stride)
    }
}

/// A depthwise layer from folded double-precision values [out, 1, k, k] and [out].
private func depthwiseLayer(_ r: ParameterReader, _ name: String, weight: [Double], bias: [Double], in c: Int, out o: Int,
                            kernel k: Int, stride: Int) throws(ModelLoadError) -> DepthwiseConv2d {
    guard c > 0, o % c == 0 else {
        throw .architecture("\(name): \(o) output channels are not a multiple of the \(c) inputs", origin: r.origin)
    }
    let (w, b) = (try folded(weight, name, r), try folded(bias, name, r))
    do {
        return try DepthwiseConv2d(weight: Tensor(uncheckedShape: [o, 1, k, k], scalars: w),
                                   bias: Tensor(uncheckedShape: [o], scalars: b), stride: stride, multiplier: o / c)
    } catch {
        throw .architecture("\(name): \(error)", origin: r.origin)
    }
}

/// The branches as one dense convolution (padding timm's (stride − 1 + k − 1) / 2), packed under the first branch's
/// weight name.
private func denseConvolution(_ r: ParameterReader, _ branches: MobileOneBranches, in c: Int, out o: Int, kernel k: Int,
                              stride: Int) throws(ModelLoadError) -> Conv2d {
    let name = "\(branches.convolutions.first?.prefix ?? "").conv.weight"
    return try Conv2d(r, packed: name, in: c, out: o, kernel: k, stride: stride, padding: (stride - 1 + k - 1) / 2,
                      consumes: branches.names) { () throws(ModelLoadError) in
        let (w, b) = try branches.fold(r, in: c, out: o, kernel: k, depthwise: false)
        return (Tensor(uncheckedShape: [o, c, k, k], scalars: try folded(w, name, r)),
                Tensor(uncheckedShape: [o], scalars: try folded(b, name, r)))
    }
}

/// RepMixer `<prefix>` (x + γ·(mixer(x) − norm(x)), mixer a MobileOne depthwise k×k with a 1×1 branch and an identity,
/// norm an identity BatchNorm) as one depthwise convolution: identity + γ·(W_mixer − W_norm), bias γ·(b_mixer − b_norm).
private func repMixer(_ r: ParameterReader, _ prefix: String, channels c: Int, kernel k: Int) throws(ModelLoadError) -> DepthwiseConv2d {
    let mixer = try MobileOneBranches(convolutions: [("\(prefix).mixer.conv_kxk.0", k), ("\(prefix).mixer.conv_scale", 1)],
                                      identity: "\(prefix).mixer.identity").fold(r, in: c, out: c, kernel: k, depthwise: true)
    let norm = try MobileOneBranches(convolutions: [], identity: "\(prefix).norm.identity").fold(r, in: c, out: c, kernel: k,
                                                                                                 depthwise: true)
    let gamma = try r.tensor("\(prefix).layer_scale.gamma", shape: [c, 1, 1])
    var weight = [Double](repeating: 0, count: c * k * k), bias = [Double](repeating: 0, count: c)
    for ch in 0..<c {
        let g = Double(gamma.scalars[ch])
        for i in 0..<(k * k) { weight[ch * k * k + i] = g * (mixer.weight[ch * k * k + i] - norm.weight[ch * k * k + i]) }
        weight[ch * k * k + (k / 2) * k + k / 2] += 1
        bias[ch] = g * (mixer.bias[ch] - norm.bias[ch])
    }
    return try depthwiseLayer(r, "\(prefix).mixer.conv_kxk.0.conv.weight", weight: weight, bias: bias, in: c, out: c, kernel: k, stride: 1)
}

/// RepCPE `<prefix>` (x + depthwise k×k convolution with bias) as one depthwise convolution.
private func plusIdentity(_ r: ParameterReader, _ prefix: String, channels c: Int, kernel k: Int) throws(ModelLoadError) -> DepthwiseConv2d {
    let w = try r.tensor("\(prefix).weight", shape: [c, 1, k, k]), b = try r.tensor("\(prefix).bias", shape: [c])
    var weight = w.scalars.map { Double($0) }
    for ch in 0..<c { weight[ch * k * k + (k / 2) * k + k / 2] += 1 }
    return try depthwiseLayer(r, "\(prefix).weight", weight: weight, bias: b.scalars.map { Double($0) }, in: c, out: c, kernel: k,
                              stride: 1)
}

/// `<linear>` [out, in] without bias applied after the BatchNorm `<batchNorm>` over its input: W·diag(scale) with bias
/// W·shift.
private func batchNormThenLinear(_ r: ParameterReader, batchNorm: String, linear: String, in n: Int, out o: Int) throws(ModelLoadError) -> Linear {
    let names = ["\(linear).weight"] + BatchNormAffine.names(batchNorm)
    return try Linear(r, packed: names[0], in: n, out: o, consumes: names) { () throws(ModelLoadError) in
        let w = try r.tensor(names[0], shape: [o, n])
        let bn = try BatchNormAffine(r, batchNorm, channels: n)
        var weight = [Double](repeating: 0, count: o * n), bias = [Double](repeating: 0, count: o)
        for row in 0..<o {
            for j in 0..<n {
                let v = Double(w.scalars[row * n + j])
                weight[row * n + j] = v * bn.scale[j]
                bias[row] += v * bn.shift[j]
            }
        }
        return (Tensor(uncheckedShape: [o, n], scalars: try folded(weight, names[0], r)),
                Tensor(uncheckedShape: [o], scalars: try folded(bias, names[0], r)))
    }
}

/// Folded double-precision values as floats, refusing any that leave the float range (a BatchNorm scale of 1e37 is
/// finite in the file, infinite once folded), naming the layer.
private func folded(_ values: [Double], _ name: String, _ r: ParameterReader) throws(ModelLoadError) -> [Float] {
    let floats = values.map { Float($0) }
    guard floats.allSatisfy(\.isFinite) else {
        throw .architecture("\(name) with its branches and BatchNorms folded in leaves the float range; the weights are not a trained model's", origin: r.origin)
    }
    return floats
}

/// timm's `make_divisible(value, divisor, round_limit=…)`: `value` rounded to a multiple of `divisor` (at least
/// one), then one `divisor` more if that fell below `roundLimit · value` (FastViT's squeeze-excitation widths use 0,
/// ViTamin's MbConv expansion timm's default 0.9).
package func timmMakeDivisible(_ value: Double, divisor: Int, roundLimit: Double = 0.9) -> Int {
    let rounded = max(divisor, Int(value + Double(divisor) / 2) / divisor * divisor)
    return Double(rounded) < roundLimit * value ? rounded + divisor : rounded
}

/// Exact GELU over every element, in place.
func gelu(_ x: inout Tensor) {
    let count = x.count
    guard count > 0 else { return }
    x.scalars.withUnsafeMutableBufferPointer { geluInPlace($0.baseAddress!, count: count) }
}
