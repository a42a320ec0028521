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
