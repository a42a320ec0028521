#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLIPTensor

/// The colours of the varied shapes: each name is a region of hue, saturation and value a person would still call
/// by it, so a model learns the name and not one sRGB triple; and the distance that keeps two colours apart.
enum ShapeColours {
    /// An RGB colour, channels 0…255.
    typealias RGB = SIMD3<Double>

    /// Per colour of `SyntheticShapes.colours`: hue range in degrees (may start below 0), saturation and value ranges.
    /// Orange and yellow stay bright: darkened they turn brown and olive, which nobody calls orange or yellow.
    static let regions: [(hue: ClosedRange<Double>, saturation: ClosedRange<Double>, value: ClosedRange<Double>)] = [
        (-10...8, 0.72...1, 0.55...1),       // red
        (95...145, 0.5...1, 0.38...0.9),     // green
        (205...240, 0.6...1, 0.45...1),      // blue
        (48...62, 0.72...1, 0.85...1),       // yellow
        (22...37, 0.78...1, 0.86...1),       // orange
        (266...292, 0.45...0.95, 0.38...0.85),  // purple
        (0...360, 0...0.3, 0...0.16),        // black
        (0...360, 0...0.07, 0.92...1),       // white
    ]

    /// A shade of colour `index`: a third of the time its canonical sRGB value, otherwise anywhere in its region.
    static func sample(_ index: Int, random rng: inout SplitMix64) -> RGB {
        if rng.next() % 3 == 0 {
            let c = SyntheticShapes.colours[index].rgb
            return RGB(Double(c.0), Double(c.1), Double(c.2))
        }
        let r = regions[index]
        return hsv(hue: uniform(r.hue, &rng), saturation: uniform(r.saturation, &rng), value: uniform(r.value, &rng))
    }

    /// A colour with no name to keep: any hue, pale, dark, grey or saturated, at least `minimum` ΔE from every colour
    /// of `avoiding` (L*a*b*); after 24 refusals the black or white farther from them.
    static func unnamed(avoiding: [SIMD3<Double>], minimum: Double = 40, random rng: inout SplitMix64) -> RGB {
        for _ in 0..<24 {
            let kind = rng.next() % 4
            let c: RGB
            switch kind {
            case 0: c = hsv(hue: 360 * rng.nextOpenUnit(), saturation: 0.05 + 0.35 * rng.nextOpenUnit(), value: 0.75 + 0.25 * rng.nextOpenUnit())
            case 1: c = hsv(hue: 360 * rng.nextOpenUnit(), saturation: 0.2 + 0.8 * rng.nextOpenUnit(), value: 0.1 + 0.4 * rng.nextOpenUnit())
            case 2: let g = 255 * rng.nextOpenUnit(); c = RGB(g, g, g)
            default: c = hsv(hue: 360 * rng.nextOpenUnit(), saturation: rng.nextOpenUnit(), value: 0.3 + 0.7 * rng.nextOpenUnit())
            }
            if isFar(c, labs: avoiding, minimum: minimum) { return c }
        }
        func nearest(_ c: RGB) -> Double { let l = lab(c); return avoiding.map { difference($0, l) }.min() ?? 100 }
        return nearest(RGB(0, 0, 0)) > nearest(RGB(255, 255, 255)) ? RGB(0, 0, 0) : RGB(255, 255, 255)
    }

    static func isFar(_ c: RGB, from others: [RGB], minimum: Double) -> Bool {
        others.allSatisfy { distance($0, c) >= minimum }
    }

    /// Whether `c` is at least `minimum` ΔE from every colour given by its L*a*b* values.
    static func isFar(_ c: RGB, labs: [SIMD3<Double>], minimum: Double) -> Bool {
        let l = lab(c)
        return labs.allSatisfy { difference($0, l) >= minimum }
    }

    static func labs(_ colours: [RGB]) -> [SIMD3<Double>] { colours.map(lab) }

    static func difference(_ a: SIMD3<Double>, _ b: SIMD3<Double>) -> Double { let d = a - b; return (d * d).sum().squareRoot() }

    /// CIE 1976 ΔE between two sRGB colours: Euclidean distance in L*a*b* (D65).
    static func distance(_ a: RGB, _ b: RGB) -> Double { difference(lab(a), lab(b)) }

    static func lab(_ c: RGB) -> SIMD3<Double> {
        func linear(_ v: Double) -> Double { let s = v / 255; return s <= 0.04045 ? s / 12.92 : pow((s + 0.055) / 1.055, 2.4) }
        let (r, g, b) = (linear(c.x), linear(c.y), linear(c.z))
        let x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
        let y = 0.2126 * r + 0.7152 * g + 0.0722 * b
        let z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883
        func f(_ t: Double) -> Double { t > 216.0 / 24389 ? cbrt(t) : (24389.0 / 27 * t + 16) / 116 }
        let (fx, fy, fz) = (f(x), f(y), f(z))
        return SIMD3(116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz))
    }

    /// Hue in degrees (any, wrapped), saturation and value in 0…1 → RGB 0…255.
    static func hsv(hue: Double, saturation s: Double, value v: Double) -> RGB {
        var h = hue.truncatingRemainder(dividingBy: 360)
        if h < 0 { h += 360 }
        let c = v * s, x = c * (1 - abs((h / 60).truncatingRemainder(dividingBy: 2) - 1)), m = v - c
        let (r, g, b): (Double, Double, Double)
        switch h {
        case ..<60: (r, g, b) = (c, x, 0)
        case ..<120: (r, g, b) = (x, c, 0)
        case ..<180: (r, g, b) = (0, c, x)
        case ..<240: (r, g, b) = (0, x, c)
        case ..<300: (r, g, b) = (x, 0, c)
        default: (r, g, b) = (c, 0, x)
        }
        return RGB(r + m, g + m, b + m) * 255
    }

    static func uniform(_ range: ClosedRange<Double>, _ rng: inout SplitMix64) -> Double {
        range.lowerBound + (range.upperBound - range.lowerBound) * rng.nextOpenUnit()
    }
}
