import CCLIPKernels

/// Depthwise convolution of channels-last images with zero padding `padding` on every side: `x` [N, H, W, C],
/// `weight` [k, k, C·m] (flattened; output channel o reads input channel o / m), `bias` [C·m], stride `stride` →
/// [N, (H + 2p − k)/s + 1, (W + 2p − k)/s + 1, C·m]. ConvNeXt's and FastViT's token mixers (stride 1, m 1), FastViT's
/// downsampling (stride 2, m 1 or more). Each image is copied once into a zero-padded buffer, its channels repeated m
/// times, so the kernel's window needs no bounds checks and every output channel is a vector lane; bands of output
/// rows are split over the cores.
package func depthwiseConvolution(_ x: Tensor, weight: Tensor, bias: Tensor, kernel k: Int, stride s: Int = 1,
                                  padding p: Int, multiplier m: Int = 1) throws(TensorError) -> Tensor {
    guard x.rank == 4, k > 0, s > 0, p >= 0, m > 0 else {
        throw .shapeMismatch(operation: "depthwiseConvolution", x.shape, [k, k, s, m])
    }
    let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let o = c * m
    guard weight.count == k * k * o, bias.count == o, h + 2 * p >= k, w + 2 * p >= k else {
        throw .shapeMismatch(operation: "depthwiseConvolution", x.shape, [k, k, o])
    }
    let (ho, wo) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1)
    if n * ho * wo * o == 0 { return Tensor(uncheckedZeros: [n, ho, wo, o]) }
    // The rows and columns the windows read (a stride can leave the image's last ones unread).
    let (hp, wp) = ((ho - 1) * s + k, (wo - 1) * s + k)
    let padded = UnsafeMutablePointer<Float>.allocate(capacity: hp * wp * o)
    defer { padded.deallocate() }
    padded.initialize(repeating: 0, count: hp * wp * o)
    let (rows, cols) = (min(h, hp - p), min(w, wp - p))
    // Bands of a few rows: enough per core to amortise the call, small enough to balance 2 cores on a 7×7 map.
    let bands = chunkBounds(total: ho, parts: ho * wo * o * k * k >= 1 << 18 ? availableCores : 1, granule: 1)
    return Tensor(uncheckedShape: [n, ho, wo, o]) { op in
        x.scalars.withUnsafeBufferPointer { xp in
            weight.scalars.withUnsafeBufferPointer { wt in
                bias.scalars.withUnsafeBufferPointer { b in
                    for img in 0..<n {
                        let src = xp.baseAddress! + img * h * w * c
                        for y in 0..<rows {
                            let dst = padded + ((y + p) * wp + p) * o
                            if m == 1 {
                                dst.update(from: src + y * w * c, count: cols * c)
                            } else {
                                for xx in 0..<cols {
                                    for ch in 0..<o { dst[xx * o + ch] = src[(y * w + xx) * c + ch / m] }
                                }
                            }
                        }
                        let out = op.baseAddress! + img * ho * wo * o
                        parallelFor(bands.count - 1) { t in
                            guard bands[t + 1] > bands[t] else { return }
                            clip_depthwise_conv2d_strided(padded, wp, o, wt.baseAddress!, b.baseAddress!, k, s, bands[t],
                                                          bands[t + 1], wo, out)
                        }
                    }
                }
            }
        }
    }
}
