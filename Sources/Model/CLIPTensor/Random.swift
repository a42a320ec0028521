#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// SplitMix64: a small, fast, deterministic generator, so random initialisation, synthetic data and tests
/// reproduce exactly from a seed on every machine.
package struct SplitMix64: Sendable {
    /// The generator's whole state; the same state gives the same sequence.
    package var state: UInt64

    /// A generator at `state`.
    package init(state: UInt64) { self.state = state }

    /// The next 64 random bits.
    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in (0, 1), never exactly 0 or 1 (so its logarithm is finite).
    package mutating func nextOpenUnit() -> Double { (Double(next() >> 11) + 0.5) / Double(1 << 53) }

    /// Uniform in [-1, 1) on a grid of 2⁻²³.
    package mutating func nextSigned() -> Float { Float(next() >> 40) / Float(1 << 24) * 2 - 1 }

    /// `count` values from `nextSigned()`.
    package mutating func signedArray(_ count: Int) -> [Float] { (0..<count).map { _ in nextSigned() } }
}

/// Standard normal deviates (Box–Muller over SplitMix64), deterministic for a seed.
package struct NormalGenerator: Sendable {
    var bits: SplitMix64
    var spare: Float?

    /// A generator for `seed`; the same seed gives the same deviates on every machine.
    package init(seed: UInt64) { bits = SplitMix64(state: seed &+ 0x9E37_79B9_7F4A_7C15) }

    /// The next standard normal deviate (mean 0, variance 1).
    package mutating func next() -> Float {
        if let s = spare { spare = nil; return s }
        let r = (-2 * log(bits.nextOpenUnit())).squareRoot(), t = 2 * Double.pi * bits.nextOpenUnit()
        spare = Float(r * sin(t))
        return Float(r * cos(t))
    }
}
