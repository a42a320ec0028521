import CCLIPKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Element-wise and normalisation kernels. Each takes validated tensors and returns a new one; the pointer-level
// helpers are public so fused layer code can apply them to rows of a larger buffer without copying.

/// LayerNorm over the last dimension of `x` [.., width]: (x − mean) / sqrt(var + eps) · weight + bias.
/// `weight` and `bias` are [width].
public func layerNorm(_ x: Tensor, weight: Tensor, bias: Tensor, eps: Float) throws(TensorError) -> Tensor {
    guard let width = x.shape.last, weight.shape == [width], bias.shape == [width] else {
        throw .shapeMismatch(operation: "layerNorm", x.shape, weight.shape)
    }
    var out = Tensor(uncheckedZeros: x.shape)
    let rows = width == 0 ? 0 : x.count / width
    x.scalars.withUnsafeBufferPointer { xp in
        weight.scalars.withUnsafeBufferPointer { wp in
            bias.scalars.withUnsafeBufferPointer { bp in
                out.scalars.withUnsafeMutableBufferPointer { op in
                    layerNormRows(xp.baseAddress!, rows: rows, width: width, weight: wp.baseAddress!,
                                  bias: bp.baseAddress!, eps: eps, out: op.baseAddress!)
                }
            }
        }
    }
    return out
}

/// LayerNorm of `rows` rows of `width` elements from `x` into `out` (which may equal `x`), rows split over cores.
public func layerNormRows(_ x: UnsafePointer<Float>, rows: Int, width: Int, weight: UnsafePointer<Float>,
                          bias: UnsafePointer<Float>, eps: Float, out: UnsafeMutablePointer<Float>) {
    let bounds = chunkBounds(total: rows, parts: rows * width >= 1 << 16 ? availableCores : 1, granule: 1)
    parallelFor(bounds.count - 1) { t in
        let (r0, r1) = (bounds[t], bounds[t + 1])
        guard r1 > r0 else { return }
        clip_layer_norm(x + r0 * width, r1 - r0, width, weight, bias, eps, out + r0 * width)
    }
}

/// QuickGELU, CLIP's activation: x · σ(1.702 · x), in place over `count` elements, split over cores.
public func quickGELUInPlace(_ x: UnsafeMutablePointer<Float>, count: Int) {
    let bounds = chunkBounds(total: count, parts: count >= 1 << 16 ? availableCores : 1, granule: 64)
    parallelFor(bounds.count - 1) { t in
        let (a, b) = (bounds[t], bounds[t + 1])
        if b > a { clip_quick_gelu(x + a, b - a) }
    }
}

/// Softmax over `count` elements in place, max-subtracted for stability.
@inlinable
public func softmaxInPlace(_ x: UnsafeMutablePointer<Float>, count: Int) {
    clip_softmax(x, count)
}

/// Adds `bias` [width] to every row of a [rows, width] buffer, optionally followed by ReLU.
@inlinable
public func addBiasRows(_ x: UnsafeMutablePointer<Float>, rows: Int, width: Int, bias: UnsafePointer<Float>) {
    for r in 0..<rows {
        let row = x + r * width
        for i in 0..<width { row[i] += bias[i] }
    }
}

/// Softmax over the last dimension of `x` [.., n].
public func softmax(_ x: Tensor) -> Tensor {
    var out = x
    guard let n = x.shape.last, n > 0 else { return out }
    out.scalars.withUnsafeMutableBufferPointer { p in
        for r in 0..<(x.count / n) { softmaxInPlace(p.baseAddress! + r * n, count: n) }
    }
    return out
}

/// Element-wise sum of two tensors of equal shape.
public func add(_ a: Tensor, _ b: Tensor) throws(TensorError) -> Tensor {
    guard a.shape == b.shape else { throw .shapeMismatch(operation: "add", a.shape, b.shape) }
    var out = a
    out.scalars.withUnsafeMutableBufferPointer { o in
        b.scalars.withUnsafeBufferPointer { bp in
            for i in 0..<o.count { o[i] += bp[i] }
        }
    }
    return out
}

/// Divides each row of `x` [rows, width] by its L2 norm (rows of zeros stay zero).
public func l2Normalized(_ x: Tensor) -> Tensor {
    var out = x
    guard let w = x.shape.last, w > 0 else { return out }
    out.scalars.withUnsafeMutableBufferPointer { p in
        for r in 0..<(x.count / w) {
            var s = 0.0
            for i in 0..<w { let v = Double(p[r * w + i]); s += v * v }
            guard s > 0 else { continue }
            let inv = Float(1 / s.squareRoot())
            for i in 0..<w { p[r * w + i] *= inv }
        }
    }
    return out
}

/// Average pooling over [N, C, H, W] with a square window equal to its stride and no padding; trailing
/// rows/columns that do not fill a window are dropped (PyTorch's floor mode).
public func avgPool2d(_ x: Tensor, kernel k: Int) throws(TensorError) -> Tensor {
    guard x.rank == 4, k >= 1 else { throw .shapeMismatch(operation: "avgPool2d", x.shape, [k]) }
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (ho, wo) = (h / k, w / k)
    var out = Tensor(uncheckedZeros: [n, c, ho, wo])
    let inv = 1 / Float(k * k)
    x.scalars.withUnsafeBufferPointer { xp in
        out.scalars.withUnsafeMutableBufferPointer { op in
            for plane in 0..<(n * c) {
                let src = xp.baseAddress! + plane * h * w
                let dst = op.baseAddress! + plane * ho * wo
                for oy in 0..<ho {
                    for ox in 0..<wo {
                        var s: Float = 0
                        for dy in 0..<k { for dx in 0..<k { s += src[(oy * k + dy) * w + ox * k + dx] } }
                        dst[oy * wo + ox] = s * inv
                    }
                }
            }
        }
    }
    return out
}

/// 2-D convolution of `x` [N, C, H, W] with `weight` [O, C, kh, kw] and optional `bias` [O], zero padding
/// `padding` on each side, then optional ReLU → [N, O, Ho, Wo]. Lowered to one GEMM per image (im2col, or
/// the input itself for 1×1 stride-1 convolutions).
public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int = 1, padding: Int = 0,
                   relu: Bool = false) throws(TensorError) -> Tensor {
    guard x.rank == 4, weight.rank == 4, x.shape[1] == weight.shape[1], stride >= 1, padding >= 0 else {
        throw .shapeMismatch(operation: "conv2d", x.shape, weight.shape)
    }
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (o, kh, kw) = (weight.shape[0], weight.shape[2], weight.shape[3])
    if let bias, bias.shape != [o] { throw .shapeMismatch(operation: "conv2d bias", bias.shape, [o]) }
    guard h + 2 * padding >= kh, w + 2 * padding >= kw else {
        throw .shapeMismatch(operation: "conv2d", x.shape, weight.shape)
    }
    let ho = (h + 2 * padding - kh) / stride + 1
    let wo = (w + 2 * padding - kw) / stride + 1
    let kdim = c * kh * kw, pixels = ho * wo
    let direct = kh == 1 && kw == 1 && stride == 1 && padding == 0
    var out = Tensor(uncheckedZeros: [n, o, ho, wo])
    // Whole images per core when there are enough of them; otherwise each GEMM uses every core.
    let acrossImages = n >= availableCores
    x.scalars.withUnsafeBufferPointer { xp in
        weight.scalars.withUnsafeBufferPointer { wp in
            out.scalars.withUnsafeMutableBufferPointer { op in
                let xBase = xp.baseAddress!, wBase = wp.baseAddress!, oBase = op.baseAddress!
                let image: (Int) -> Void = { img in
                    let src = xBase + img * c * h * w
                    let dst = oBase + img * o * pixels
                    if direct {
                        sgemm(transA: false, transB: false, m: o, n: pixels, k: kdim, a: wBase, lda: kdim,
                              b: src, ldb: pixels, c: dst, ldc: pixels, parallel: !acrossImages)
                    } else {
                        var col = [Float](repeating: 0, count: kdim * pixels)
                        col.withUnsafeMutableBufferPointer { cp in
                            im2col(src, channels: c, height: h, width: w, kh: kh, kw: kw, stride: stride,
                                   padding: padding, ho: ho, wo: wo, out: cp.baseAddress!)
                            sgemm(transA: false, transB: false, m: o, n: pixels, k: kdim, a: wBase, lda: kdim,
                                  b: cp.baseAddress!, ldb: pixels, c: dst, ldc: pixels, parallel: !acrossImages)
                        }
                    }
                    bias?.scalars.withUnsafeBufferPointer { bp in
                        for ch in 0..<o {
                            let row = dst + ch * pixels
                            let bv = bp[ch]
                            if relu {
                                for i in 0..<pixels { row[i] = max(row[i] + bv, 0) }
                            } else {
                                for i in 0..<pixels { row[i] += bv }
                            }
                        }
                    }
                    if bias == nil && relu {
                        for i in 0..<(o * pixels) { dst[i] = max(dst[i], 0) }
                    }
                }
                if acrossImages { parallelFor(n, image) } else { for img in 0..<n { image(img) } }
            }
        }
    }
    return out
}

/// Unfolds the (kh × kw) receptive fields of one [C, H, W] image into a [C·kh·kw, Ho·Wo] matrix.
@inlinable
func im2col(_ x: UnsafePointer<Float>, channels c: Int, height h: Int, width w: Int, kh: Int, kw: Int,
            stride: Int, padding: Int, ho: Int, wo: Int, out: UnsafeMutablePointer<Float>) {
    var row = 0
    for ch in 0..<c {
        let plane = x + ch * h * w
        for dy in 0..<kh {
            for dx in 0..<kw {
                let dst = out + row * ho * wo
                for oy in 0..<ho {
                    let iy = oy * stride + dy - padding
                    let line = dst + oy * wo
                    if iy < 0 || iy >= h {
                        for ox in 0..<wo { line[ox] = 0 }
                        continue
                    }
                    for ox in 0..<wo {
                        let ix = ox * stride + dx - padding
                        line[ox] = ix >= 0 && ix < w ? plane[iy * w + ix] : 0
                    }
                }
                row += 1
            }
        }
    }
}

/// GELU with the exact error function, x · Φ(x), in place over `count` elements.
@inlinable
public func geluInPlace(_ x: UnsafeMutablePointer<Float>, count: Int) {
    for i in 0..<count {
        let v = x[i]
        x[i] = 0.5 * v * (1 + erff(v * 0.70710678118654752))
    }
}
