import CLIPLayers
import CLIPTensor

/// CLIP's modified ResNet image tower: a three-convolution stem with average pooling, four stages of
/// anti-aliased Bottleneck blocks, and an attention-pooling head. BatchNorm is folded into the convolutions.
public struct ModifiedResNet: Sendable {
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

    /// `pixels` [N, 3, H, W] → [N, embed]. Any input whose final feature map has outputGrid² cells is
    /// accepted, as in the reference.
    func callAsFunction(_ pixels: Tensor) throws(CLIPError) -> Tensor {
        // The stem's first convolution (3×3, stride 2, pad 1) needs at least one output pixel; each later
        // pooling halves with floor. Reject inputs that would shrink to nothing before running them.
        var side = min(pixels.shape[2], pixels.shape[3])
        side = (side - 1) / 2 + 1
        for _ in 0..<4 { side /= 2 }
        guard side >= 1 else {
            throw .imageShape(pixels.shape, expected: "[N, 3, \(configuration.outputGrid * 32), \(configuration.outputGrid * 32)]")
        }
        let features: Tensor
        do {
            features = try trunk(pixels)
        } catch {
            throw .internalShape(error)
        }
        let g = configuration.outputGrid
        guard features.shape[1] * features.shape[2] == g * g else {
            throw .imageShape(pixels.shape, expected: "[N, 3, \(g * 32), \(g * 32)] (the final feature map is \(features.shape[1])×\(features.shape[2]); the attention pool needs \(g)×\(g))")
        }
        let pooled: Tensor
        do throws(TensorError) {
            pooled = try attentionPool(features)
        } catch {
            throw .internalShape(error)
        }
        return pooled
    }

    /// Stem and the four stages: [N, 3, H, W] → channels-last [N, H/32, W/32, 32·width].
    private func trunk(_ pixels: Tensor) throws(TensorError) -> Tensor {
        var x = channelsLast(pixels)
        for conv in stem { x = try conv(x, relu: true) }
        x = try avgPoolChannelsLast(x, kernel: 2)
        for stage in stages { for block in stage { x = try block(x) } }
        return x
    }

    /// [N, C, H, W] → [N, H, W, C]: the tower works channels-last so 1×1 convolutions are plain GEMMs.
    private func channelsLast(_ x: Tensor) -> Tensor {
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        var out = [Float](repeating: 0, count: x.count)
        for img in 0..<n {
            for ch in 0..<c {
                for p in 0..<(h * w) { out[(img * h * w + p) * c + ch] = x.scalars[(img * c + ch) * h * w + p] }
            }
        }
        return Tensor(uncheckedShape: [n, h, w, c], scalars: out)
    }
}
