#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLIPTensor

/// Training-time augmentation of preprocessed images, as open_clip's train transform does for real data:
/// a random crop of 90–100 % of the area with an aspect ratio in [3/4, 4/3], resized back to the full side
/// (bilinear). Drawn from (seed, data position), so a resumed run sees the same crops.
package enum Augmentation: String, Sendable, Codable, CaseIterable {
    /// The image as preprocessed (resize and centre crop).
    case none
    /// Random resized crop, scale 0.9–1, ratio 3/4–4/3.
    case crop

    /// Augments `pixels` [3, side, side] in place.
    func apply(_ pixels: inout [Float], side: Int, seed: UInt64, position: Int) {
        guard self == .crop, side > 1 else { return }
        var rng = SplitMix64(state: (seed &* 0x9E37_79B9_7F4A_7C15) ^ 0xA06 ^ (UInt64(position) &* 0xC2B2_AE3D_27D4_EB4F))
        let area = Double(side * side) * (0.9 + 0.1 * rng.nextOpenUnit())
        let ratio = exp(log(3.0 / 4) + (log(4.0 / 3) - log(3.0 / 4)) * rng.nextOpenUnit())
        let cw = min(Double(side), (area * ratio).squareRoot()), ch = min(Double(side), (area / ratio).squareRoot())
        let x0 = (Double(side) - cw) * rng.nextOpenUnit(), y0 = (Double(side) - ch) * rng.nextOpenUnit()
        let source = pixels, plane = side * side
        source.withUnsafeBufferPointer { sp in
            pixels.withUnsafeMutableBufferPointer { dp in
                for c in 0..<3 {
                    let p = sp.baseAddress! + c * plane, d = dp.baseAddress! + c * plane
                    for y in 0..<side {
                        let sy = min(max(y0 + (Double(y) + 0.5) * ch / Double(side) - 0.5, 0), Double(side - 1))
                        let y1 = Int(sy), y2 = min(y1 + 1, side - 1), fy = Float(sy - Double(y1))
                        for x in 0..<side {
                            let sx = min(max(x0 + (Double(x) + 0.5) * cw / Double(side) - 0.5, 0), Double(side - 1))
                            let x1 = Int(sx), x2 = min(x1 + 1, side - 1), fx = Float(sx - Double(x1))
                            let top = p[y1 * side + x1] * (1 - fx) + p[y1 * side + x2] * fx
                            let bottom = p[y2 * side + x1] * (1 - fx) + p[y2 * side + x2] * fx
                            d[y * side + x] = top * (1 - fy) + bottom * fy
                        }
                    }
                }
            }
        }
    }
}
