import CLIPTensor

/// An inference-mode BatchNorm as the per-channel affine map it computes, in double precision for folding into the
/// layer beside it: y = scale·x + shift, scale = γ/√(running_var + ε), shift = β − running_mean·scale.
package struct BatchNormAffine: Sendable {
    /// γ/√(var + ε), one per channel.
    package let scale: [Double]
    /// β − mean·scale, one per channel.
    package let shift: [Double]

    /// The four tensors a BatchNorm `<prefix>` stores.
    package static func names(_ prefix: String) -> [String] {
        ["weight", "bias", "running_mean", "running_var"].map { "\(prefix).\($0)" }
    }

    /// Reads `<prefix>.weight`, `.bias`, `.running_mean` and `.running_var` ([channels] each); a variance at or below
    /// −ε (which would make the scale imaginary or infinite) is refused, naming the tensor.
    package init(_ r: ParameterReader, _ prefix: String, channels c: Int, eps: Double = 1e-5) throws(ModelLoadError) {
        let n = Self.names(prefix)
        let gamma = try r.tensor(n[0], shape: [c]), beta = try r.tensor(n[1], shape: [c])
        let mean = try r.tensor(n[2], shape: [c]), variance = try r.tensor(n[3], shape: [c])
        var scale = [Double](repeating: 0, count: c), shift = [Double](repeating: 0, count: c)
        for ch in 0..<c {
            let v = Double(variance.scalars[ch]) + eps
            guard v > 0 else {
                throw .architecture("\(n[3]) holds \(variance.scalars[ch]) at element \(ch); a BatchNorm's running variance must exceed −ε", origin: r.origin)
            }
            scale[ch] = Double(gamma.scalars[ch]) / v.squareRoot()
            shift[ch] = Double(beta.scalars[ch]) - Double(mean.scalars[ch]) * scale[ch]
            guard Float(scale[ch]).isFinite, Float(shift[ch]).isFinite else {
                throw .architecture("\(prefix) at channel \(ch) scales by \(scale[ch]) and shifts by \(shift[ch]), beyond the float range (running_var \(variance.scalars[ch]), weight \(gamma.scalars[ch]))", origin: r.origin)
            }
        }
        (self.scale, self.shift) = (scale, shift)
    }
}
