#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLIPTensor

/// CLIP's symmetric contrastive loss, as open_clip's `ClipLoss`: with the features L2-normalised, logits =
/// exp(t)·image·textᵀ [N, N], labels 0..<N, and the loss the mean of the image→text and text→image
/// cross-entropies. Its value and gradients come together (the loss is the last node of the graph).
package struct ContrastiveLoss: Sendable {
    /// The mean symmetric cross-entropy.
    package let value: Float
    /// ∂loss/∂ image features [N, embed] (before normalisation).
    package let imageGradient: Tensor
    /// ∂loss/∂ text features [N, embed].
    package let textGradient: Tensor
    /// ∂loss/∂t for the stored `logit_scale` t.
    package let logitScaleGradient: Float
    /// The image→text logits [N, N] (for accuracy in progress reports).
    package let logits: [Float]

    /// The loss of N image features [N, embed] against their N captions' text features [N, embed] at
    /// `logitScale` t (the logits are scaled by exp(t)). Sums run in double.
    package init(image: Tensor, text: Tensor, logitScale t: Float) throws(TensorError) {
        guard image.rank == 2, image.shape == text.shape, image.shape[0] > 0 else {
            throw .shapeMismatch(operation: "ContrastiveLoss", image.shape, text.shape)
        }
        let (n, e) = (image.shape[0], image.shape[1])
        let (a, aNorms) = normalizedRows(image), (b, bNorms) = normalizedRows(text)
        let scale = exp(Double(t))
        var logits = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in 0..<n {
                var s = 0.0
                for k in 0..<e { s += a[i * e + k] * b[j * e + k] }
                logits[i * n + j] = scale * s
            }
        }
        // dL/dlogits = (rowSoftmax − I)/2N + (columnSoftmax − I)/2N.
        var loss = 0.0
        var dLogits = [Double](repeating: 0, count: n * n)
        for transposed in [false, true] {
            for i in 0..<n {
                let at = { (j: Int) in transposed ? j * n + i : i * n + j }
                var m = -Double.infinity
                for j in 0..<n { m = max(m, logits[at(j)]) }
                var sum = 0.0
                for j in 0..<n { sum += exp(logits[at(j)] - m) }
                loss += (m + log(sum) - logits[at(i)]) / Double(2 * n)
                for j in 0..<n { dLogits[at(j)] += (exp(logits[at(j)] - m) / sum - (i == j ? 1 : 0)) / Double(2 * n) }
            }
        }
        var dt = 0.0
        for i in 0..<(n * n) { dt += dLogits[i] * logits[i] }
        var dA = [Double](repeating: 0, count: n * e), dB = [Double](repeating: 0, count: n * e)
        for i in 0..<n {
            for j in 0..<n {
                let g = scale * dLogits[i * n + j]
                for k in 0..<e {
                    dA[i * e + k] += g * b[j * e + k]
                    dB[j * e + k] += g * a[i * e + k]
                }
            }
        }
        value = Float(loss)
        logitScaleGradient = Float(dt)
        imageGradient = normalizationBackward(a, aNorms, dA, shape: image.shape)
        textGradient = normalizationBackward(b, bNorms, dB, shape: text.shape)
        self.logits = logits.map(Float.init)
    }
}

/// Rows divided by max(‖row‖, 1e-12) (as `F.normalize`), and the divisors.
private func normalizedRows(_ x: Tensor) -> ([Double], [Double]) {
    let e = x.shape[1], n = x.shape[0]
    var out = x.scalars.map(Double.init), norms = [Double](repeating: 0, count: n)
    for i in 0..<n {
        var s = 0.0
        for k in 0..<e { s += out[i * e + k] * out[i * e + k] }
        norms[i] = max(s.squareRoot(), 1e-12)
        for k in 0..<e { out[i * e + k] /= norms[i] }
    }
    return (out, norms)
}

/// Through y = x/‖x‖: dx = (dy − y·(y·dy))/‖x‖.
private func normalizationBackward(_ y: [Double], _ norms: [Double], _ dy: [Double], shape: [Int]) -> Tensor {
    let (n, e) = (shape[0], shape[1])
    var dx = [Float](repeating: 0, count: n * e)
    for i in 0..<n {
        var dot = 0.0
        for k in 0..<e { dot += y[i * e + k] * dy[i * e + k] }
        for k in 0..<e { dx[i * e + k] = Float((dy[i * e + k] - y[i * e + k] * dot) / norms[i]) }
    }
    return Tensor(uncheckedShape: shape, scalars: dx)
}
