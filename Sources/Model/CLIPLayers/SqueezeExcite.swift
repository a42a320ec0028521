#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLIPTensor

/// timm's `SEModule` over channels-last images: each image's channels scaled by
/// sigmoid(fc2(ReLU(fc1(mean over its pixels)))), fc1 and fc2 being 1×1 convolutions with bias (`<prefix>.fc1`,
/// `<prefix>.fc2`, [reduced, C, 1, 1] and [C, reduced, 1, 1]).
package struct SqueezeExcite: Sendable {
    /// [N, C] → [N, reduced], with bias.
    let fc1: Linear
    /// [N, reduced] → [N, C], with bias.
    let fc2: Linear

    /// Reads `<prefix>.fc1` and `<prefix>.fc2` for `channels` channels squeezed to `reduced`.
    package init(_ r: ParameterReader, _ prefix: String, channels c: Int, reduced: Int) throws(ModelLoadError) {
        fc1 = try Linear(r, "\(prefix).fc1", in: c, out: reduced, weightShape: [reduced, c, 1, 1])
        fc2 = try Linear(r, "\(prefix).fc2", in: reduced, out: c, weightShape: [c, reduced, 1, 1])
    }

    private init(fc1: Linear, fc2: Linear) { (self.fc1, self.fc2) = (fc1, fc2) }

    /// `x` [N, H, W, C] scaled in place, channel by channel.
    package func forward(_ x: inout Tensor) throws(TensorError) {
        guard x.rank == 4, x.shape[3] == fc1.inFeatures else {
            throw .shapeMismatch(operation: "SqueezeExcite", x.shape, [fc1.inFeatures])
        }
        let (n, pixels, c) = (x.shape[0], x.shape[1] * x.shape[2], x.shape[3])
        let squeezed = meanOfRows(x, images: n, rows: pixels, width: c)
        var hidden = Tensor(uninitialized: [n, fc1.outFeatures])
        try fc1.forward(squeezed, into: &hidden, activation: .relu)
        let gate = try fc2(hidden)
        x.scalars.withUnsafeMutableBufferPointer { xp in
            for img in 0..<n {
                let scale = (0..<c).map { 1 / (1 + expf(-gate.scalars[img * c + $0])) }
                for p in 0..<pixels {
                    let row = xp.baseAddress! + (img * pixels + p) * c
                    for ch in 0..<c { row[ch] *= scale[ch] }
                }
            }
        }
    }

    /// The same layer computing its products in `precision`.
    package func converted(to precision: Precision) throws(TensorError) -> SqueezeExcite {
        SqueezeExcite(fc1: try fc1.converted(to: precision), fc2: try fc2.converted(to: precision))
    }
}
