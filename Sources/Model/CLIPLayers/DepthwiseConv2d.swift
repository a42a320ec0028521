import CLIPTensor

/// A depthwise 2-D convolution (one k×k filter per channel, stride 1, same padding) with a bias, over channels-last
/// images [N, H, W, C]: ConvNeXt's token mixer. `weight` is PyTorch's [C, 1, k, k], held as [k, k, C] so that the
/// channels are the vector lanes.
package struct DepthwiseConv2d: Sendable {
    /// The filters, [k, k, C] (flattened).
    package let weight: Tensor
    /// One bias per channel: `[C]`.
    package let bias: Tensor
    /// Side of the square window.
    package let kernel: Int
    /// Channels (each its own filter).
    package var channels: Int { bias.count }

    /// Reorders `weight` [C, 1, k, k] and keeps `bias` [C].
    package init(weight: Tensor, bias: Tensor) throws(TensorError) {
        guard weight.rank == 4, weight.shape[1] == 1, weight.shape[2] == weight.shape[3], bias.shape == [weight.shape[0]] else {
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
    }

    /// Reads `<prefix>.weight` [channels, 1, k, k] and `<prefix>.bias` [channels].
    package init(_ r: ParameterReader, _ prefix: String, channels c: Int, kernel k: Int) throws(ModelLoadError) {
        let w = try r.tensor("\(prefix).weight", shape: [c, 1, k, k])
        let b = try r.tensor("\(prefix).bias", shape: [c])
        do { try self.init(weight: w, bias: b) } catch { throw .architecture("\(prefix).weight: \(error)", origin: r.origin) }
    }

    /// `x` [N, H, W, C] → [N, H, W, C] (odd kernels keep the size: padding (k − 1)/2, as timm's).
    package func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        guard x.rank == 4, x.shape[3] == channels else {
            throw .shapeMismatch(operation: "DepthwiseConv2d", x.shape, [kernel, kernel, channels])
        }
        return try depthwiseConvolution(x, weight: weight, bias: bias, kernel: kernel, padding: (kernel - 1) / 2)
    }
}
