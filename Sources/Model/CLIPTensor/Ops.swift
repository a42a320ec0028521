import CCLIPKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Element-wise and normalisation operations over validated tensors; the row-level helpers are package API so layer
// code can apply them to rows of a larger buffer without copying.

/// LayerNorm of `rows` rows of `width` elements from `x` into `out` (which may equal `x`), rows split over cores.
package func layerNormRows(_ x: UnsafePointer<Float>, rows: Int, width: Int, weight: UnsafePointer<Float>,
                          bias: UnsafePointer<Float>, eps: Float, out: UnsafeMutablePointer<Float>) {
    let bounds = chunkBounds(total: rows, parts: rows * width >= 1 << 16 ? availableCores : 1, granule: 1)
    parallelFor(bounds.count - 1) { t in
        let (r0, r1) = (bounds[t], bounds[t + 1])
        guard r1 > r0 else { return }
        clip_layer_norm(x + r0 * width, r1 - r0, width, weight, bias, eps, out + r0 * width)
    }
}

/// QuickGELU, CLIP's activation: x · σ(1.702 · x), in place over `count` elements, split over cores.
package func quickGELUInPlace(_ x: UnsafeMutablePointer<Float>, count: Int) {
    let bounds = chunkBounds(total: count, parts: count >= 1 << 16 ? availableCores : 1, granule: 64)
    parallelFor(bounds.count - 1) { t in
        let (a, b) = (bounds[t], bounds[t + 1])
        if b > a { clip_quick_gelu(x + a, b - a) }
    }
}

/// SwiGLU over `rows` rows of `gated` [rows, 2·hidden] (gate then value) into `out` [rows, hidden]:
/// silu(g)·x, split over cores.
package func swiGLURows(_ gated: UnsafePointer<Float>, rows: Int, hidden: Int, out: UnsafeMutablePointer<Float>) {
    let bounds = chunkBounds(total: rows, parts: rows * hidden >= 1 << 16 ? availableCores : 1, granule: 1)
    parallelFor(bounds.count - 1) { t in
        let (r0, r1) = (bounds[t], bounds[t + 1])
        if r1 > r0 { clip_swiglu(gated + r0 * 2 * hidden, r1 - r0, hidden, out + r0 * hidden) }
    }
}

/// GeGLU over `rows` rows of `gated` [rows, 2·hidden] (gate then value) into `out` [rows, hidden]:
/// gelu(g)·x with the exact GELU, split over cores.
package func geGLURows(_ gated: UnsafePointer<Float>, rows: Int, hidden: Int, out: UnsafeMutablePointer<Float>) {
    let bounds = chunkBounds(total: rows, parts: rows * hidden >= 1 << 16 ? availableCores : 1, granule: 1)
    parallelFor(bounds.count - 1) { t in
        for r in bounds[t]..<bounds[t + 1] {
            let (g, o) = (gated + r * 2 * hidden, out + r * hidden)
            o.update(from: g, count: hidden)
            clip_gelu(o, hidden)
            for i in 0..<hidden { o[i] *= g[hidden + i] }
        }
    }
}

/// Rotates `count` values (an even number) in place as pairs, timm's interleaved rotary layout: (a, b) →
/// (a·cos − b·sin, b·cos + a·sin) with the angles' `sin` and `cos` given per value.
@inlinable
package func rotateInterleaved(_ x: UnsafeMutablePointer<Float>, count: Int, sin: UnsafePointer<Float>,
                               cos: UnsafePointer<Float>) {
    clip_rotary_interleaved(x, count, sin, cos)
}

/// Softmax over `count` elements in place, max-subtracted for stability.
@inlinable
package func softmaxInPlace(_ x: UnsafeMutablePointer<Float>, count: Int) {
    clip_softmax(x, count)
}

/// Adds `bias` [width] to every row of a [rows, width] buffer, optionally followed by ReLU.
@inlinable
package func addBiasRows(_ x: UnsafeMutablePointer<Float>, rows: Int, width: Int, bias: UnsafePointer<Float>) {
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

/// GELU x · Φ(x) with the exact normal CDF, in place over `count` elements (`clip_gelu`).
package func geluInPlace(_ x: UnsafeMutablePointer<Float>, count: Int) {
    clip_gelu(x, count)
}

/// GELU's tanh approximation in place over `count` elements (`clip_gelu_tanh`).
package func geluTanhInPlace(_ x: UnsafeMutablePointer<Float>, count: Int) {
    clip_gelu_tanh(x, count)
}

/// One head of softmax(scale · Q·Kᵀ) · V, read in place from fused projection rows: row i of Q, K and V is at
/// `q`, `k`, `v` + i·`ld` ([tokens, headDim] each), row i of the result at `out` + i·`ldo` ([tokens, headDim]).
/// With `causal`, row i attends to rows 0...i only. Single-threaded (callers run heads in parallel); `kernel` picks
/// the instruction set (every `GEMMKernel` has one). Returns false, leaving `out` untouched, for invalid arguments,
/// a kernel this CPU lacks, or scratch memory that cannot be allocated.
package func attentionHead(tokens: Int, headDim: Int, scale: Float, causal: Bool, q: UnsafePointer<Float>,
                          k: UnsafePointer<Float>, v: UnsafePointer<Float>, ld: Int,
                          out: UnsafeMutablePointer<Float>, ldo: Int, kernel: GEMMKernel = .auto) -> Bool {
    clip_attention_head(kernel.code, tokens, headDim, scale, causal ? 1 : 0, q, k, v, ld, out, ldo) == 0
}

/// Cosine similarity of every row of `a` [N, E] with every row of `b` [M, E] → [N, M] (rows normalised first).
public func cosineSimilarity(_ a: Tensor, _ b: Tensor) throws(TensorError) -> Tensor {
    guard a.rank == 2, b.rank == 2, a.shape[1] == b.shape[1] else {
        throw .shapeMismatch(operation: "cosineSimilarity", a.shape, b.shape)
    }
    let x = l2Normalized(a), y = l2Normalized(b)
    let n = x.shape[0], m = y.shape[0], e = x.shape.last ?? 0
    var out = [Float](repeating: 0, count: n * m)
    for i in 0..<n {
        for j in 0..<m {
            var s: Float = 0
            for k in 0..<e { s += x.scalars[i * e + k] * y.scalars[j * e + k] }
            out[i * m + j] = s
        }
    }
    return Tensor(uncheckedShape: [n, m], scalars: out)
}

extension Tensor {
    /// The flat index of the first NaN or infinity, or nil when every value is finite (checked a block at a time
    /// with vector instructions: loading a checkpoint checks every weight).
    public var firstNonFiniteIndex: Int? {
        let i = scalars.withUnsafeBufferPointer { p in p.baseAddress.map { clip_first_non_finite($0, p.count) } ?? -1 }
        return i >= 0 ? i : nil
    }
}

/// Each image's mean over rows `first..<rows` of its [rows, width] block, `x` holding `images` such blocks →
/// [images, width]: a sum, then one multiplication by the reciprocal of the count. (A ViT's patch tokens after its
/// class token; a ConvNeXt's pixels.)
package func meanOfRows(_ x: Tensor, images n: Int, rows: Int, width w: Int, from first: Int = 0) -> Tensor {
    var mean = Tensor(uncheckedZeros: [n, w])
    guard rows > first, x.count >= n * rows * w else { return mean }
    x.scalars.withUnsafeBufferPointer { xp in
        mean.scalars.withUnsafeMutableBufferPointer { mp in
            for img in 0..<n {
                let out = mp.baseAddress! + img * w
                for t in first..<rows {
                    let row = xp.baseAddress! + (img * rows + t) * w
                    for j in 0..<w { out[j] += row[j] }
                }
                let scale = 1 / Float(rows - first)
                for j in 0..<w { out[j] *= scale }
            }
        }
    }
    return mean
}
