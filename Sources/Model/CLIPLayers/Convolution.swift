import CLIPTensor

/// A 2-D convolution over channels-last images ([N, H, W, C]) with a bias, lowered to one GEMM whose right-hand side
/// is the weight, packed once: 1×1 stride-1 convolutions multiply the pixels directly, others go through a
/// channels-last im2col. `weight` is PyTorch's [out, in, kh, kw] (with any BatchNorm already folded in).
package struct Conv2d: Sendable {
    /// The weight as the GEMM's right-hand side `[kh·kw·in, out]`, patch order (y, x, channel).
    package let packedWeight: PackedMatrix   // [kh·kw·in, out], patch order (y, x, channel)
    /// One bias per output channel: `[out]`.
    package let bias: Tensor
    /// Side of the square kernel.
    package let kernel: Int
    /// Step between patches, in pixels, both directions.
    package let stride: Int
    /// Zero padding on every side, in pixels.
    package let padding: Int
    /// Input channels.
    package let inChannels: Int
    /// Output channels.
    package var outChannels: Int { packedWeight.n }

    /// Packs `weight` [out, in, k, k] (square kernels only) with `bias` [out].
    package init(weight: Tensor, bias: Tensor, stride: Int, padding: Int, precision: Precision = .fp32) throws(TensorError) {
        guard weight.rank == 4, weight.shape[2] == weight.shape[3], bias.shape == [weight.shape[0]] else {
            throw .shapeMismatch(operation: "Conv2d", weight.shape, bias.shape)
        }
        let (o, c, k) = (weight.shape[0], weight.shape[1], weight.shape[2])
        // Reorder [O, C, kh, kw] to [O, kh, kw, C] to match channels-last patches.
        var reordered = [Float](repeating: 0, count: weight.count)
        for oc in 0..<o {
            for ic in 0..<c {
                for y in 0..<k {
                    for x in 0..<k {
                        reordered[((oc * k + y) * k + x) * c + ic] = weight.scalars[((oc * c + ic) * k + y) * k + x]
                    }
                }
            }
        }
        packedWeight = try PackedMatrix(Tensor(uncheckedShape: [o, k * k * c], scalars: reordered), transposed: true,
                                        precision: precision)
        self.bias = bias
        self.kernel = k
        self.stride = stride
        self.padding = padding
        self.inChannels = c
    }

    /// A convolution whose weight [out, in, k, k] and bias [out] `values` derives from the checkpoint tensors
    /// `consumes` (BatchNorms folded in, branches summed), packed under the name `packed` so that a packed-weight cache
    /// serves it next time.
    package init(_ r: ParameterReader, packed name: String, in c: Int, out o: Int, kernel k: Int, stride: Int = 1,
                 padding: Int = 0, consumes: [String],
                 values: () throws(ModelLoadError) -> (weight: Tensor, bias: Tensor)) throws(ModelLoadError) {
        let (packed, bias) = try r.packed(name, k: k * k * c, n: o, bias: true, consumes: consumes) { () throws(ModelLoadError) in
            let (w, b) = try values()
            guard w.shape == [o, c, k, k], b.shape == [o] else {
                throw .architecture("\(name): folded to \(w.shape), expected [\(o), \(c), \(k), \(k)]", origin: r.origin)
            }
            do {
                let layer = try Conv2d(weight: w, bias: b, stride: stride, padding: padding, precision: .fp32)
                return (layer.packedWeight, layer.bias)
            } catch {
                throw .architecture("\(name): \(error)", origin: r.origin)
            }
        }
        guard let bias else { throw .architecture("\(name): no bias", origin: r.origin) }
        self.init(packedWeight: packed, bias: bias, kernel: k, stride: stride, padding: padding, inChannels: c)
    }

    /// Loads a bias-free convolution `<conv>.weight` and the inference-mode BatchNorm `<bn>` that follows it,
    /// folding the normalisation into the convolution: W' = W·γ/√(var+ε), b' = β − mean·γ/√(var+ε).
    package init(_ r: ParameterReader, conv: String, batchNorm bn: String, in c: Int, out o: Int, kernel k: Int,
                stride: Int = 1, padding: Int = 0, eps: Double = 1e-5) throws(ModelLoadError) {
        let names = ["\(conv).weight"] + BatchNormAffine.names(bn)
        try self.init(r, packed: names[0], in: c, out: o, kernel: k, stride: stride, padding: padding, consumes: names) { () throws(ModelLoadError) in
            let w = try r.tensor(names[0], shape: [o, c, k, k])
            let norm = try BatchNormAffine(r, bn, channels: o, eps: eps)
            var folded = w.scalars
            let per = c * k * k
            for ch in 0..<o {
                for i in 0..<per { folded[ch * per + i] = Float(Double(folded[ch * per + i]) * norm.scale[ch]) }
            }
            let bias = norm.shift.map { Float($0) }
            return (Tensor(uncheckedShape: w.shape, scalars: folded), Tensor(uncheckedShape: [o], scalars: bias))
        }
    }

    /// Loads a convolution with its own bias: `<prefix>.weight` [out, in, k, k] and `<prefix>.bias` [out].
    package init(_ r: ParameterReader, _ prefix: String, in c: Int, out o: Int, kernel k: Int, stride: Int,
                 padding: Int = 0) throws(ModelLoadError) {
        let names = ["\(prefix).weight", "\(prefix).bias"]
        try self.init(r, packed: names[0], in: c, out: o, kernel: k, stride: stride, padding: padding, consumes: names) { () throws(ModelLoadError) in
            (try r.tensor(names[0], shape: [o, c, k, k]), try r.tensor(names[1], shape: [o]))
        }
    }

    private init(packedWeight: PackedMatrix, bias: Tensor, kernel: Int, stride: Int, padding: Int, inChannels: Int) {
        (self.packedWeight, self.bias, self.kernel, self.stride, self.padding, self.inChannels) =
            (packedWeight, bias, kernel, stride, padding, inChannels)
    }

    /// `x` [N, H, W, in] → [N, H', W', out], optionally followed by ReLU.
    package func forward(_ x: Tensor, relu: Bool = false) throws(TensorError) -> Tensor {
        try apply(x, activation: relu ? .relu : .none, explicitIm2col: false)
    }

    /// `x` [N, H, W, in] → [N, H', W', out], followed by `activation` (applied by the GEMM to each output tile).
    package func forward(_ x: Tensor, activation: OutputActivation) throws(TensorError) -> Tensor {
        try apply(x, activation: activation, explicitIm2col: false)
    }

    /// The same convolution computing in `precision`.
    package func converted(to precision: Precision) throws(TensorError) -> Conv2d {
        Conv2d(packedWeight: try packedWeight.converted(to: precision), bias: bias, kernel: kernel, stride: stride,
               padding: padding, inChannels: inChannels)
    }

    /// The convolution; `explicitIm2col` forces the im2col-buffer path that the implicit one (fp32, kernels > 1) is
    /// tested against.
    package func apply(_ x: Tensor, relu: Bool, explicitIm2col: Bool) throws(TensorError) -> Tensor {
        try apply(x, activation: relu ? .relu : .none, explicitIm2col: explicitIm2col)
    }

    private func apply(_ x: Tensor, activation: OutputActivation, explicitIm2col: Bool) throws(TensorError) -> Tensor {
        guard x.rank == 4, x.shape[3] == inChannels, x.shape[1] + 2 * padding >= kernel, x.shape[2] + 2 * padding >= kernel else {
            throw .shapeMismatch(operation: "Conv2d", x.shape, [outChannels, inChannels, kernel, kernel])
        }
        let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let ho = (h + 2 * padding - kernel) / stride + 1, wo = (w + 2 * padding - kernel) / stride + 1
        let o = outChannels, kdim = kernel * kernel * c, pixels = ho * wo
        guard kdim > 0 else { throw .shapeMismatch(operation: "Conv2d", x.shape, [o, c, kernel, kernel]) }
        if n * pixels * o == 0 { return Tensor(uncheckedZeros: [n, ho, wo, o]) }
        // Every output element is written by the GEMM, which also adds the bias and applies ReLU per tile.
        return Tensor(uncheckedShape: [n, ho, wo, o]) { op in
            x.scalars.withUnsafeBufferPointer { xp in
                bias.scalars.withUnsafeBufferPointer { bp in
                    let xBase = xp.baseAddress!, oBase = op.baseAddress!, b = bp.baseAddress!
                    if kernel == 1 && stride == 1 && padding == 0 {
                        // Every pixel of the batch is a row: one GEMM, split over the cores.
                        packedWeight.multiply(xBase, rows: n * pixels, lda: c, into: oBase, ldc: o, bias: b,
                                              activation: activation)
                        return
                    }
                    // Whole images per core when there are enough of them; otherwise each GEMM uses every core.
                    // Each core reuses one im2col buffer for its images (a fresh multi-megabyte buffer per image
                    // would page-fault anew every time); im2col writes every element, zeros outside the image.
                    let acrossImages = n >= availableCores
                    let bounds = chunkBounds(total: n, parts: acrossImages ? availableCores : 1, granule: 1)
                    if !explicitIm2col && c % 16 == 0 {
                        // fp32: the GEMM packs the receptive fields straight from the image (no im2col buffer), 16
                        // channels at a time; the 3-channel stem keeps its im2col, which packs with full vectors.
                        var done = true
                        let results = UnsafeMutableBufferPointer<Bool>.allocate(capacity: n)
                        defer { results.deallocate() }
                        parallelFor(bounds.count - 1) { t in
                            for img in bounds[t]..<bounds[t + 1] {
                                results[img] = packedWeight.convolve(
                                    image: xBase + img * h * w * c, height: h, width: w, channels: c, kernel: kernel,
                                    stride: stride, padding: padding, outHeight: ho, outWidth: wo,
                                    into: oBase + img * pixels * o, bias: b, activation: activation,
                                    parallel: !acrossImages)
                            }
                        }
                        for img in 0..<n where !results[img] { done = false }
                        if done { return }
                    }
                    parallelFor(bounds.count - 1) { t in
                        guard bounds[t + 1] > bounds[t] else { return }
                        let col = UnsafeMutablePointer<Float>.allocate(capacity: pixels * kdim)
                        defer { col.deallocate() }
                        for img in bounds[t]..<bounds[t + 1] {
                            im2colChannelsLast(xBase + img * h * w * c, height: h, width: w, channels: c, kernel: kernel,
                                               stride: stride, padding: padding, ho: ho, wo: wo, out: col)
                            packedWeight.multiply(col, rows: pixels, lda: kdim, into: oBase + img * pixels * o, ldc: o,
                                                  bias: b, activation: activation, parallel: !acrossImages)
                        }
                    }
                }
            }
        }
    }
}

/// Unfolds the kernel × kernel receptive fields of one [H, W, C] image into rows [Ho·Wo, kernel·kernel·C],
/// zero outside the image.
func im2colChannelsLast(_ x: UnsafePointer<Float>, height h: Int, width w: Int, channels c: Int, kernel k: Int,
                        stride: Int, padding: Int, ho: Int, wo: Int, out: UnsafeMutablePointer<Float>) {
    let kdim = k * k * c
    for oy in 0..<ho {
        for ox in 0..<wo {
            let row = out + (oy * wo + ox) * kdim
            for dy in 0..<k {
                let iy = oy * stride + dy - padding
                for dx in 0..<k {
                    let ix = ox * stride + dx - padding
                    let dst = row + (dy * k + dx) * c
                    if iy < 0 || iy >= h || ix < 0 || ix >= w {
                        dst.update(repeating: 0, count: c)
                    } else {
                        dst.update(from: x + (iy * w + ix) * c, count: c)
                    }
                }
            }
        }
    }
}

