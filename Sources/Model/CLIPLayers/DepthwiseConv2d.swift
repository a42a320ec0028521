import CLIPTensor

/// A depthwise 2-D convolution with a bias over channels-last images [N, H, W, C]: one k×k filter per output channel,
/// each reading one input channel (with `multiplier` m, output channel o reads input channel o / m: PyTorch's
/// `groups = in_channels` with `out_channels = m · in_channels`), stride `stride`, timm's symmetric padding
/// ((stride − 1) + (k − 1)) / 2. ConvNeXt's and FastViT's token mixers, FastViT's downsampling. `weight` is PyTorch's
/// [C·m, 1, k, k], held as [k, k, C·m] so that the channels are the vector lanes.
package struct DepthwiseConv2d: Sendable {
    /// The filters, [k, k, C·m] (flattened).
    package let weight: Tensor
    /// One bias per output channel: `[C·m]`.
    package let bias: Tensor
    /// Side of the square window.
    package let kernel: Int
    /// Step between windows, in pixels, both directions.
    package let stride: Int
    /// Output channels per input channel.
    package let multiplier: Int
    /// Output channels (each its own filter).
    package var channels: Int { bias.count }
    /// Input channels.
    package var inChannels: Int { bias.count / multiplier }

    /// Reorders `weight` [C·m, 1, k, k] and keeps `bias` [C·m]; `multiplier` m must divide the output channels.
    package init(weight: Tensor, bias: Tensor, stride: Int = 1, multiplier: Int = 1) throws(TensorError) {
        guard weight.rank == 4, weight.shape[1] == 1, weight.shape[2] == weight.shape[3], bias.shape == [weight.shape[0]],
              stride > 0, multiplier > 0, weight.shape[0] % multiplier == 0 else {
            throw .shapeMismatch(operation: "DepthwiseConv2d", weight.shape, bias.shape)
        }
        let (c, k) = (weight.shape[0], weight.shape[2])
        var reordered = [Float](repeating: 0, count: weight.count)
        for ch in 0..<c {
            for i in 0..<(k * k) { reordered[i * c + ch] = weight.scalars[ch * k * k + i] }
        }
        self.weight = Tensor(uncheckedShape: [k, k, c], scalars: reordered)
        self.bias = bias
        kernel = k
        self.stride = stride
        self.multiplier = multiplier
    }

    /// Reads `<prefix>.weight` [channels, 1, k, k] and `<prefix>.bias` [channels].
    package init(_ r: ParameterReader, _ prefix: String, channels c: Int, kernel k: Int) throws(ModelLoadError) {
        let w = try r.tensor("\(prefix).weight", shape: [c, 1, k, k])
        let b = try r.tensor("\(prefix).bias", shape: [c])
        do { try self.init(weight: w, bias: b) } catch { throw .architecture("\(prefix).weight: \(error)", origin: r.origin) }
    }

    /// `x` [N, H, W, C] → [N, H', W', C·m]: the same size at stride 1 (odd kernels), halved (rounded up) at stride 2.
    package func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        guard x.rank == 4, x.shape[3] == inChannels else {
            throw .shapeMismatch(operation: "DepthwiseConv2d", x.shape, [kernel, kernel, channels])
        }
        return try depthwiseConvolution(x, weight: weight, bias: bias, kernel: kernel, stride: stride,
                                        padding: (stride - 1 + kernel - 1) / 2, multiplier: multiplier)
    }
}
