import CCLIPKernels

// The element-wise parts of backward passes and the optimizer's update, split over the cores. Partial sums are
// added in chunk order, so results depend only on the inputs and the core count.

/// LayerNorm's backward over `rows` rows of `width`: writes dx, adds dγ and dβ into `dGamma`, `dBeta` ([width]).
package func layerNormBackwardRows(_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, rows: Int, width w: Int,
                                   gamma: UnsafePointer<Float>, eps: Float, dx: UnsafeMutablePointer<Float>,
                                   dGamma: UnsafeMutablePointer<Float>, dBeta: UnsafeMutablePointer<Float>) {
    let bounds = chunkBounds(total: rows, parts: rows * w >= 1 << 15 ? availableCores : 1, granule: 1)
    let chunks = bounds.count - 1
    var partial = [Float](repeating: 0, count: 2 * w * chunks)
    partial.withUnsafeMutableBufferPointer { pp in
        let pb = pp.baseAddress!
        parallelFor(chunks) { t in
            let (r0, r1) = (bounds[t], bounds[t + 1])
            guard r1 > r0 else { return }
            clip_layer_norm_backward(x + r0 * w, dy + r0 * w, r1 - r0, w, gamma, eps, dx + r0 * w,
                                     pb + 2 * w * t, pb + 2 * w * t + w)
        }
        for t in 0..<chunks {
            for i in 0..<w { dGamma[i] += pb[2 * w * t + i]; dBeta[i] += pb[2 * w * t + w + i] }
        }
    }
}

/// sum[j] += Σ_r x[r, j] for x [rows, width] (a bias gradient).
package func addRowSums(_ x: UnsafePointer<Float>, rows: Int, width: Int, into sum: UnsafeMutablePointer<Float>) {
    let bounds = chunkBounds(total: rows, parts: rows * width >= 1 << 16 ? availableCores : 1, granule: 1)
    let chunks = bounds.count - 1
    var partial = [Float](repeating: 0, count: width * chunks)
    partial.withUnsafeMutableBufferPointer { pp in
        let pb = pp.baseAddress!
        parallelFor(chunks) { t in
            clip_add_rows(x + bounds[t] * width, bounds[t + 1] - bounds[t], width, pb + t * width)
        }
        for t in 0..<chunks { for j in 0..<width { sum[j] += pb[t * width + j] } }
    }
}

/// dh *= f′(z) for `activation` (`h` = f(z) from the forward pass; QuickGELU's derivative is recovered from it).
package func activationBackward(_ activation: OutputActivation, _ z: UnsafePointer<Float>, _ h: UnsafePointer<Float>,
                                _ dh: UnsafeMutablePointer<Float>, count: Int) {
    let bounds = chunkBounds(total: count, parts: count >= 1 << 16 ? availableCores : 1, granule: 64)
    parallelFor(bounds.count - 1) { t in
        let (a, n) = (bounds[t], bounds[t + 1] - bounds[t])
        guard n > 0 else { return }
        switch activation {
        case .gelu: clip_gelu_backward(z + a, dh + a, n)
        case .geluTanh: clip_gelu_tanh_backward(z + a, dh + a, n)
        case .quickGELU: clip_quick_gelu_backward(z + a, h + a, dh + a, n)
        case .relu: for i in a..<(a + n) where z[i] <= 0 { dh[i] = 0 }
        case .none: break
        }
    }
}

/// One AdamW update of `count` parameters in place (see `clip_adamw`).
package func adamWUpdate(_ p: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>, _ m: UnsafeMutablePointer<Float>,
                         _ v: UnsafeMutablePointer<Float>, count: Int, betas: (Float, Float), decay: Float,
                         stepSize: Float, c2Root: Float, eps: Float) {
    let bounds = chunkBounds(total: count, parts: count >= 1 << 16 ? availableCores : 1, granule: 64)
    parallelFor(bounds.count - 1) { t in
        let (a, n) = (bounds[t], bounds[t + 1] - bounds[t])
        guard n > 0 else { return }
        clip_adamw(p + a, g + a, m + a, v + a, n, betas.0, betas.1, decay, stepSize, c2Root, eps)
    }
}

/// Σ x² in double.
package func sumOfSquares(_ x: UnsafePointer<Float>, count: Int) -> Double { clip_sum_squares(x, count) }
