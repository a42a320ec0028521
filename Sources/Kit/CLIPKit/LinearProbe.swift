#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLIPTensor

/// Multinomial logistic regression on frozen features, as the CLIP paper's linear-probe evaluation (L2-regularised,
/// full-batch; the paper uses L-BFGS, this uses Adam on the same convex objective until the loss stops falling).
public struct LinearProbe: Sendable {
    /// [classes, features] weights and [classes] biases.
    public private(set) var weights: [Float]
    public private(set) var biases: [Float]
    public let classes: Int
    public let features: Int

    /// Fits features [N, F] (row-major) to `labels` in 0..<classes with L2 penalty `lambda` on the weights.
    public init(features x: [Float], labels: [Int], classes: Int, lambda: Float = 1e-4, iterations: Int = 1000) {
        let f = labels.isEmpty ? 0 : x.count / labels.count, n = labels.count
        (self.classes, self.features) = (classes, f)
        var w = [Float](repeating: 0, count: classes * f), b = [Float](repeating: 0, count: classes)
        var mw = w, vw = w, mb = b, vb = b
        let (lr, b1, b2): (Float, Float, Float) = (0.05, 0.9, 0.999)
        for t in 1...max(iterations, 1) {
            var gw = [Float](repeating: 0, count: classes * f), gb = [Float](repeating: 0, count: classes)
            for i in 0..<n {
                var logits = (0..<classes).map { c in
                    var s = b[c]
                    for j in 0..<f { s += w[c * f + j] * x[i * f + j] }
                    return s
                }
                let m = logits.max() ?? 0
                var sum: Float = 0
                for c in 0..<classes { logits[c] = expf(logits[c] - m); sum += logits[c] }
                for c in 0..<classes {
                    let g = (logits[c] / sum - (c == labels[i] ? 1 : 0)) / Float(n)
                    gb[c] += g
                    for j in 0..<f { gw[c * f + j] += g * x[i * f + j] }
                }
            }
            for k in 0..<(classes * f) { gw[k] += lambda * w[k] }
            let c1 = 1 - powf(b1, Float(t)), c2 = 1 - powf(b2, Float(t))
            for k in 0..<(classes * f) {
                mw[k] = b1 * mw[k] + (1 - b1) * gw[k]; vw[k] = b2 * vw[k] + (1 - b2) * gw[k] * gw[k]
                w[k] -= lr * (mw[k] / c1) / ((vw[k] / c2).squareRoot() + 1e-8)
            }
            for c in 0..<classes {
                mb[c] = b1 * mb[c] + (1 - b1) * gb[c]; vb[c] = b2 * vb[c] + (1 - b2) * gb[c] * gb[c]
                b[c] -= lr * (mb[c] / c1) / ((vb[c] / c2).squareRoot() + 1e-8)
            }
        }
        (weights, biases) = (w, b)
    }

    /// Class scores [N, classes] of features [N, F].
    public func scores(_ x: [Float]) -> [Float] {
        let n = features == 0 ? 0 : x.count / features
        var out = [Float](repeating: 0, count: n * classes)
        for i in 0..<n {
            for c in 0..<classes {
                var s = biases[c]
                for j in 0..<features { s += weights[c * features + j] * x[i * features + j] }
                out[i * classes + c] = s
            }
        }
        return out
    }
}
