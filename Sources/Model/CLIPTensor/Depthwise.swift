import CCLIPKernels

/// Depthwise convolution, stride 1, zero padding `padding` on every side, of channels-last images: `x` [N, H, W, C],
/// `weight` [k, k, C] (flattened), `bias` [C] → [N, H + 2p − k + 1, W + 2p − k + 1, C]. Each image is copied once
/// into a zero-padded buffer so the kernel's window needs no bounds checks; bands of output rows are split over the
/// cores.
package func depthwiseConvolution(_ x: Tensor, weight: Tensor, bias: Tensor, kernel k: Int,
                                  padding: Int) throws(TensorError) -> Tensor {
    guard x.rank == 4, k > 0, padding >= 0 else { throw .shapeMismatch(operation: "depthwiseConvolution", x.shape, [k, k]) }
    let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (hp, wp) = (h + 2 * padding, w + 2 * padding)
    guard weight.count == k * k * c, bias.count == c, hp >= k, wp >= k else {
        throw .shapeMismatch(operation: "depthwiseConvolution", x.shape, [k, k, c])
    }
    let (ho, wo) = (hp - k + 1, wp - k + 1)
    if n * ho * wo * c == 0 { return Tensor(uncheckedZeros: [n, ho, wo, c]) }
    let padded = UnsafeMutablePointer<Float>.allocate(capacity: hp * wp * c)
    defer { padded.deallocate() }
    padded.initialize(repeating: 0, count: hp * wp * c)
    // Bands of a few rows: enough per core to amortise the call, small enough to balance 2 cores on a 7×7 map.
    let bands = chunkBounds(total: ho, parts: ho * wo * c * k * k >= 1 << 18 ? availableCores : 1, granule: 1)
    return Tensor(uncheckedShape: [n, ho, wo, c]) { op in
        x.scalars.withUnsafeBufferPointer { xp in
            weight.scalars.withUnsafeBufferPointer { wt in
                bias.scalars.withUnsafeBufferPointer { b in
                    for img in 0..<n {
                        let src = xp.baseAddress! + img * h * w * c
                        for y in 0..<h {
                            (padded + ((y + padding) * wp + padding) * c).update(from: src + y * w * c, count: w * c)
                        }
                        let out = op.baseAddress! + img * ho * wo * c
                        parallelFor(bands.count - 1) { t in
                            guard bands[t + 1] > bands[t] else { return }
                            clip_depthwise_conv2d(padded, wp, c, wt.baseAddress!, b.baseAddress!, k, bands[t], bands[t + 1],
                                                  wo, out)
                        }
                    }
                }
            }
        }
    }
}

/// A grouped convolution with one input channel per group, of channels-last images: `x` [N, H, W, C], `weight`
/// [k, k, C·m] (flattened; output channel o reads input channel o / m), `bias` [C·m], stride `stride` and zero padding
/// `padding` on every side → [N, (H + 2p − k)/s + 1, (W + 2p − k)/s + 1, C·m]. FastViT's stride-2 stages and its
/// channel-doubling convolutions; stride 1 with `m` 1 is `depthwiseConvolution`'s, which this defers to.
package func depthwiseConvolution(_ x: Tensor, weight: Tensor, bias: Tensor, kernel k: Int, stride s: Int, padding p: Int,
                                  multiplier m: Int) throws(TensorError) -> Tensor {
    guard x.rank == 4, k > 0, s > 0, p >= 0, m > 0 else {
        throw .shapeMismatch(operation: "depthwiseConvolution", x.shape, [k, k, s, m])
    }
    if s == 1 && m == 1 && 2 * p == k - 1 { return try depthwiseConvolution(x, weight: weight, bias: bias, kernel: k, padding: p) }
    let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let o = c * m
    guard weight.count == k * k * o, bias.count == o, h + 2 * p >= k, w + 2 * p >= k else {
        throw .shapeMismatch(operation: "depthwiseConvolution", x.shape, [k, k, o])
    }
    let (ho, wo) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1)
    if n * ho * wo * o == 0 { return Tensor(uncheckedZeros: [n, ho, wo, o]) }
    let rows = chunkBounds(total: n * ho, parts: n * ho * wo * o * k * k >= 1 << 18 ? availableCores : 1, granule: 1)
    return Tensor(uncheckedShape: [n, ho, wo, o]) { op in
        x.scalars.withUnsafeBufferPointer { xp in
            weight.scalars.withUnsafeBufferPointer { wt in
                bias.scalars.withUnsafeBufferPointer { b in
                    let (src, wBase, bBase, dst) = (xp.baseAddress!, wt.baseAddress!, b.baseAddress!, op.baseAddress!)
                    parallelFor(rows.count - 1) { t in
                        for row in rows[t]..<rows[t + 1] {
                            let (img, oy) = (row / ho, row % ho)
                            for ox in 0..<wo {
                                let out = dst + (row * wo + ox) * o
                                out.update(from: bBase, count: o)
                                for dy in 0..<k {
                                    let iy = oy * s + dy - p
                                    guard iy >= 0 && iy < h else { continue }
                                    for dx in 0..<k {
                                        let ix = ox * s + dx - p
                                        guard ix >= 0 && ix < w else { continue }
                                        let pixel = src + ((img * h + iy) * w + ix) * c, tap = wBase + (dy * k + dx) * o
                                        if m == 1 {
                                            for ch in 0..<o { out[ch] += pixel[ch] * tap[ch] }
                                        } else {
                                            for ch in 0..<o { out[ch] += pixel[ch / m] * tap[ch] }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
