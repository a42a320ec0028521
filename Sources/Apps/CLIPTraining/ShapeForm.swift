#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLIPTensor

/// One drawing of a shape kind: the proportions a person drawing it chooses (a star's points and depth, a cross's
/// arms, a square's corners, which heart), so that the name is learnt for the kind and not for one outline.
/// Unit radius, centred at the origin, y pointing down.
struct ShapeForm {
    let shape: Int
    /// Star: points (5 or 6) and inner radius; cross: arm half-width and where the crossbar sits (0 a plus sign,
    /// below 0 a Latin cross); square: corner radius; triangle: apex offset and half-base.
    let points: Int, depth: Double, arm: Double, crossbar: Double, corner: Double, apex: Double, base: Double
    /// Heart: 0 the implicit curve, 1 two circles over a triangle.
    let heart: Int
    /// How far from the centre the form reaches, in radii.
    let extent: Double
    /// A star's inscribed radius: nearer the centre is inside without trigonometry.
    private let inscribed: Double

    init(shape: Int, points: Int = 5, depth: Double = 0.42, arm: Double = 0.3, crossbar: Double = 0, corner: Double = 0,
         apex: Double = 0, base: Double = 0.92, heart: Int = 0) {
        (self.shape, self.points, self.depth, self.arm, self.crossbar) = (shape, points, depth, arm, crossbar)
        (self.corner, self.apex, self.base, self.heart) = (corner, apex, base, heart)
        let half = Double.pi / Double(points)
        let (bx, by) = (depth * cos(half), depth * sin(half))
        inscribed = by / ((bx - 1) * (bx - 1) + by * by).squareRoot()
        switch shape {
        case 1: extent = (0.8 - corner) * 2.squareRoot() + corner
        case 2: extent = max((apex * apex + 1).squareRoot(), (base * base + 0.5625).squareRoot())
        case 4: extent = 1.05
        case 5: extent = max((arm * arm + 0.8464).squareRoot(), ((0.92 + crossbar) * (0.92 + crossbar) + (abs(crossbar) + arm) * (abs(crossbar) + arm)).squareRoot())
        default: extent = 1
        }
    }

    init(shape: Int, random rng: inout SplitMix64) {
        switch shape {
        case 1: self.init(shape: 1, corner: rng.next() % 3 == 0 ? 0.25 * rng.nextOpenUnit() : 0)
        case 2:
            let apex = rng.next() % 2 == 0 ? 0 : 0.5 * Double(rng.nextSigned())
            self.init(shape: 2, apex: apex, base: 0.75 + 0.25 * rng.nextOpenUnit())
        case 3: self.init(shape: 3, points: rng.next() % 8 == 0 ? 6 : 5, depth: 0.34 + 0.22 * rng.nextOpenUnit())
        case 4: self.init(shape: 4, heart: Int(rng.next() % 2))
        case 5:
            let arm = 0.17 + 0.2 * rng.nextOpenUnit()
            self.init(shape: 5, arm: arm, crossbar: rng.next() % 5 == 0 ? -0.35 : 0)
        default: self.init(shape: shape)
        }
    }

    /// Whether the form covers (u, v).
    func inside(_ u: Double, _ v: Double) -> Bool {
        switch shape {
        case 0: return u * u + v * v <= 1
        case 1:
            let (x, y) = (abs(u), abs(v))
            guard x <= 0.8, y <= 0.8 else { return false }
            let inner = 0.8 - corner
            if x <= inner || y <= inner { return true }
            return (x - inner) * (x - inner) + (y - inner) * (y - inner) <= corner * corner
        case 2: return triangle(u, v)
        case 3: return star(u, v)
        case 4:
            if heart == 0 {
                let x = u * 1.2, y = -v * 1.2 + 0.15
                let a = x * x + y * y - 1
                return a * a * a - x * x * y * y * y <= 0
            }
            let lobe = 0.5
            if (u - 0.45) * (u - 0.45) + (v + 0.3) * (v + 0.3) <= lobe * lobe { return true }
            if (u + 0.45) * (u + 0.45) + (v + 0.3) * (v + 0.3) <= lobe * lobe { return true }
            // The point at (0, 0.95), the sides meeting the lobes.
            return v >= -0.05 && v <= 0.95 && abs(u) <= 0.88 * (0.95 - v)
        default:
            // The crossbar's arms are as long as the upper one: a plus sign, or with the bar raised a Latin cross.
            let reach = 0.92 + crossbar
            return (abs(u) <= arm && abs(v) <= 0.92) || (abs(u) <= reach && abs(v - crossbar) <= arm)
        }
    }

    private func triangle(_ u: Double, _ v: Double) -> Bool {
        let (a, b, c) = ((apex, -1.0), (base, 0.75), (-base, 0.75))
        func side(_ p: (Double, Double), _ q: (Double, Double)) -> Double { (q.0 - p.0) * (v - p.1) - (q.1 - p.1) * (u - p.0) }
        let (d0, d1, d2) = (side(a, b), side(b, c), side(c, a))
        return (d0 >= 0 && d1 >= 0 && d2 >= 0) || (d0 <= 0 && d1 <= 0 && d2 <= 0)
    }

    /// A regular star with its first point up: fold the angle into the half-sector between a point and the next
    /// notch, and test against the edge joining them.
    private func star(_ u: Double, _ v: Double) -> Bool {
        let r2 = u * u + v * v
        if r2 <= inscribed * inscribed { return true }
        guard r2 <= 1 else { return false }
        let r = r2.squareRoot()
        let sector = 2 * Double.pi / Double(points)
        var phi = (atan2(v, u) + Double.pi / 2).truncatingRemainder(dividingBy: sector)
        if phi < 0 { phi += sector }
        if phi > sector / 2 { phi = sector - phi }
        let (px, py) = (r * cos(phi), r * sin(phi))
        let (bx, by) = (depth * cos(sector / 2), depth * sin(sector / 2))
        // The origin's side of the edge from (1, 0) to (bx, by) is the positive one.
        return (bx - 1) * py - by * (px - 1) >= 0
    }
}
