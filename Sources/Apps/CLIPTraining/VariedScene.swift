#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLIPImage
import CLIPTensor

/// A scene of the varied style: the shapes a caption is about, drawn the many ways people draw them, on backgrounds
/// of any colour and texture, among shapes of other colours, through a camera's and a codec's defects.
///
/// A model trained on white, black and gray backgrounds learns that the non-white thing is the object and names the
/// background's colour (issue 36); here the background takes every colour except one near the object's, and the
/// captions that name it ("a red star on a blue background") and a second shape ("a red star and a small blue
/// circle") teach which colour belongs to what.
struct VariedScene: ShapeScene {
    typealias RGB = ShapeColours.RGB

    struct Item {
        var shape: Int
        var rgb: RGB
        var form: ShapeForm
        var x: Double, y: Double, radius: Double, rotation: Double, aspect: Double
        var fill: Fill
        /// Lighting across the shape: the colour is scaled by 1 + amount · (position along `direction`, −1…1), or
        /// with `upOnly` by 1 + amount · (that position + 1) / 2.
        var light: (direction: Double, amount: Double, upOnly: Bool)
        var antialiased: Bool
        /// A hard shadow under the shape, as presentation software draws.
        var shadow: Bool = false
        /// A hand-drawn wobble of the outline: its amount in radii and phase.
        var wobble: (amount: Double, phase: Double) = (0, 0)
    }

    enum Fill {
        case solid
        /// An outline whose stroke is this share of the radius.
        case outline(Double)
        /// Filled, with a border of this share of the radius in another colour.
        case bordered(Double, RGB)
    }

    enum Pattern {
        case solid, linear(angle: Double), radial(x: Double, y: Double), stripes(angle: Double, period: Double)
        case checks(angle: Double, period: Double), dots(period: Double, radius: Double), noise(cells: Int), clutter
    }

    var colour: Int, shape: Int
    var main: [Item]
    var partner: (colour: Int, item: Item)?
    var distractors: [Item], occluders: [Item]
    var pattern: Pattern, backgroundColours: (RGB, RGB)
    /// The background as a caption names it ("blue", "striped"), or nil when it has no short name.
    var backgroundName: String?
    var region: String?
    /// Thin grid lines over the background at this period (a chart's), or 0.
    var grid: Double
    var blur: Double, noise: Double, jpegQuality: Int
    var detailSeed: UInt64

    /// Whether groups are also captioned shape by shape with the zero-shot prompt (the `varied2` style).
    var eachShapeNamed: Bool
    /// Whether groups are also captioned with the zero-shot prompt, alone or followed by the count (`varied4`).
    var groupsAsOne: Bool

    var count: Int { main.count }
    var large: Bool { (main.first?.radius ?? 0) >= 0.2 }

    /// With `busy`, textured backgrounds and outlined shapes of any width are more common (the `varied3` style).
    /// Trained on `varied`, where three in a hundred images are an outline on a texture, the default model named the
    /// shape of 88 % of the filled shapes the Pillow validation renderer draws but of 56–72 % of its outlined ones,
    /// most misses on stripes, checks and dots, and the thinner the line the worse.
    init(random rng: inout SplitMix64, colour: Int, shape: Int, eachShapeNamed: Bool = false, busy: Bool = false,
         groupsAsOne: Bool = false) {
        (self.colour, self.shape, self.eachShapeNamed, self.groupsAsOne) = (colour, shape, eachShapeNamed, groupsAsOne)
        // A share of clean drawings (a plain background, nothing else, no defects) keeps the shapes' outlines the
        // clearest thing in many images: among textures, clutter and blur alone a small model learns colour and
        // background long before shape.
        let clean = rng.next() % 100 < Self.cleanPercent
        let rgb = ShapeColours.sample(colour, random: &rng)
        let roll = rng.next() % 100
        let count = roll < 65 ? 1 : (roll < 85 ? 2 : 3)
        let radius = count == 1 ? 0.1 + 0.32 * rng.nextOpenUnit() : 0.1 + 0.12 * rng.nextOpenUnit()
        let fill = Self.fill(for: rgb, busy: busy, random: &rng)
        let form = ShapeForm(shape: shape, random: &rng)
        // Yellow, orange and white are only lit up: darkened they turn olive, brown and gray.
        let light = (direction: 2 * Double.pi * rng.nextOpenUnit(), amount: rng.next() % 3 == 0 ? 0.22 * rng.nextOpenUnit() : 0,
                     upOnly: [3, 4, 7].contains(colour))
        let antialiased = rng.next() % 7 != 0
        let shadow = rng.next() % 10 == 0 && !clean
        let wobble = rng.next() % 7 == 0 && !clean ? 0.02 + 0.04 * rng.nextOpenUnit() : 0
        // How far the form reaches at any rotation and stretch, in radii.
        let reach = form.extent * Self.maxAspect
        var placed: [(x: Double, y: Double, r: Double)] = []
        region = nil
        if count == 1 && radius <= 0.22 && rng.next() % 3 == 0 {
            let r = Scene.regions[Int(rng.next() % UInt64(Scene.regions.count))]
            region = r.name
            let jitter = 0.04
            placed = [(Self.clamp(r.x + jitter * Double(rng.nextSigned()), radius * reach), Self.clamp(r.y + jitter * Double(rng.nextSigned()), radius * reach),
                       radius * reach)]
        } else {
            // Up to a tenth of the main shape's reach may leave the picture, as in a cropped photo.
            Self.place(count, reach: radius * reach, margin: 0.9, into: &placed, random: &rng)
        }
        main = placed.map { p in
            Item(shape: shape, rgb: rgb, form: form, x: p.x, y: p.y, radius: radius, rotation: Self.rotation(shape, random: &rng),
                 aspect: Self.aspect(shape, random: &rng), fill: fill, light: light, antialiased: antialiased, shadow: shadow,
                 wobble: (wobble, 2 * Double.pi * rng.nextOpenUnit()))
        }
        // A second shape of another colour and kind, at most half the main one's size, that the caption names.
        partner = nil
        if main.count == 1, rng.next() % 4 == 0 {
            let c = Self.otherColour(than: [colour], random: &rng), s = Int(rng.next() % 6)
            let r = max(0.06, radius * (0.3 + 0.2 * rng.nextOpenUnit()))
            var spots = placed
            Self.place(1, reach: r * 1.25 * Self.maxAspect, margin: 1, into: &spots, random: &rng)
            if spots.count == 2 {
                partner = (c, Self.item(s, ShapeColours.sample(c, random: &rng), spots[1].x, spots[1].y, r, random: &rng))
            }
        }
        var named = [(colour, rgb, light.upOnly)]
        if let partner { named.append((partner.colour, partner.item.rgb, false)) }
        (pattern, backgroundColours, backgroundName) = Self.background(avoiding: named, plain: clean, busy: busy, random: &rng)
        // Small shapes of other colours the caption does not name; a few drawn over the main shape's edge.
        distractors = []
        occluders = []
        if rng.next() % 100 < 35 && !clean {
            for _ in 0..<(1 + Int(rng.next() % 5)) {
                let c = Self.otherColour(than: named.map(\.0), random: &rng)
                let shade = ShapeColours.sample(c, random: &rng)
                guard ShapeColours.isFar(shade, from: [backgroundColours.0, backgroundColours.1], minimum: 25) else { continue }
                let over = rng.next() % 5 == 0
                let r = 0.035 + ((over ? 0.3 : 0.45) * radius - 0.035) * rng.nextOpenUnit()
                let x = Self.clamp(rng.nextOpenUnit(), r), y = Self.clamp(rng.nextOpenUnit(), r)
                // Over the main shape only at its rim: a small part of it hidden, never a whole point or arm.
                let clear = main.allSatisfy { m in
                    hypot(m.x - x, m.y - y) > (over ? 0.95 * m.radius * m.form.extent : m.radius * reach + r * 1.1)
                } && (partner.map { hypot($0.item.x - x, $0.item.y - y) > ($0.item.radius + r) * 1.3 } ?? true)
                guard clear else { continue }
                let item = Self.item(Int(rng.next() % 6), shade, x, y, r, random: &rng)
                if over { occluders.append(item) } else { distractors.append(item) }
            }
        }
        grid = rng.next() % 12 == 0 && !clean ? 0.08 + 0.17 * rng.nextOpenUnit() : 0
        blur = rng.next() % 4 == 0 && !clean ? 0.3 + 0.7 * rng.nextOpenUnit() : 0
        noise = rng.next() % 4 == 0 && !clean ? 2 + 8 * rng.nextOpenUnit() : 0
        jpegQuality = rng.next() % 5 == 0 && !clean ? 25 + Int(rng.next() % 66) : 0
        detailSeed = rng.next()
    }

    // MARK: Drawing choices

    /// The share of clean drawings, in percent.
    static let cleanPercent: UInt64 = 40

    /// The largest stretch `aspect` gives.
    static let maxAspect = exp(0.22)

    /// A centre for a shape reaching `reach` (image sides) with `margin` of its reach inside the picture.
    static func clamp(_ v: Double, _ reach: Double, margin: Double = 1) -> Double {
        let low = reach * margin + 0.01
        return low >= 0.5 ? 0.5 : min(max(v, low), 1 - low)
    }

    /// Adds `count` centres for shapes reaching `reach`, apart from those already there (fewer when crowded).
    static func place(_ count: Int, reach: Double, margin: Double, into placed: inout [(x: Double, y: Double, r: Double)],
                      random rng: inout SplitMix64) {
        let target = placed.count + count
        var attempts = 0
        while placed.count < target && attempts < 200 {
            attempts += 1
            let p = (x: clamp(rng.nextOpenUnit(), reach, margin: margin), y: clamp(rng.nextOpenUnit(), reach, margin: margin), r: reach)
            if placed.allSatisfy({ hypot($0.x - p.x, $0.y - p.y) > 1.05 * ($0.r + reach) }) { placed.append(p) }
        }
    }

    static func rotation(_ shape: Int, random rng: inout SplitMix64) -> Double {
        let any = 2 * Double.pi * rng.nextOpenUnit(), tilt = Double(rng.nextSigned())
        switch shape {
        case 4: return 0.45 * tilt                            // hearts stay upright
        case 3: return rng.next() % 10 < 7 ? 0.35 * tilt : any
        case 2, 5: return rng.next() % 10 < 6 ? 0.35 * tilt : any
        default: return any
        }
    }

    static func aspect(_ shape: Int, random rng: inout SplitMix64) -> Double {
        shape == 0 ? 0.92 + 0.16 * rng.nextOpenUnit() : exp(0.22 * Double(rng.nextSigned()))
    }

    static func fill(for rgb: RGB, busy: Bool = false, random rng: inout SplitMix64) -> Fill {
        let roll = rng.next() % 100
        if busy {
            // Lines from a twentieth of the radius (widened to a pixel when drawn) to nearly half of it, log-uniform:
            // as many hairlines as thick strokes.
            if roll < 30 { return .outline(0.05 * pow(9, rng.nextOpenUnit())) }
            if roll < 42 { return bordered(rgb, random: &rng) }
            return .solid
        }
        if roll < 18 { return .outline(0.12 + 0.28 * rng.nextOpenUnit()) }
        if roll < 30 { return bordered(rgb, random: &rng) }
        return .solid
    }

    private static func bordered(_ rgb: RGB, random rng: inout SplitMix64) -> Fill {
        // A darker line of the same colour, as lit edges are drawn, or a black or white one.
        let line = rng.next() % 5 < 3 ? rgb * 0.6 : (rng.next() % 2 == 0 ? RGB(20, 20, 20) : RGB(245, 245, 245))
        // From hairlines (widened to at least a pixel when drawn) to a tenth of the radius.
        return .bordered(0.02 + 0.1 * rng.nextOpenUnit(), line)
    }

    static func item(_ shape: Int, _ rgb: RGB, _ x: Double, _ y: Double, _ r: Double, random rng: inout SplitMix64) -> Item {
        Item(shape: shape, rgb: rgb, form: ShapeForm(shape: shape, random: &rng), x: x, y: y, radius: r,
             rotation: rotation(shape, random: &rng), aspect: aspect(shape, random: &rng),
             fill: rng.next() % 5 == 0 ? .outline(0.15 + 0.2 * rng.nextOpenUnit()) : .solid, light: (0, 0, false), antialiased: true)
    }

    static func otherColour(than taken: [Int], random rng: inout SplitMix64) -> Int {
        var c = 0
        repeat { c = Int(rng.next() % UInt64(SyntheticShapes.colours.count)) } while taken.contains(c)
        return c
    }

    /// A background kept at least ΔE 40 from the named shapes' colours (`avoiding`: colour index, shade, lit up only)
    /// at their lightest and darkest shading, two-colour patterns at least ΔE 20 between their colours and with their
    /// mixes (gradients, noise, clutter) as clear of the shapes as the colours; with its caption word when it has one.
    static func background(avoiding named: [(Int, RGB, Bool)], plain: Bool, busy: Bool = false,
                           random rng: inout SplitMix64) -> (Pattern, (RGB, RGB), String?) {
        let keep = ShapeColours.labs(named.flatMap { (_, c, upOnly) in
            let lit = (c * 1.22).clamped(lowerBound: RGB(0, 0, 0), upperBound: RGB(255, 255, 255))
            return upOnly ? [c, lit] : [c, c * 0.78, lit]
        })
        func unnamed() -> RGB { ShapeColours.unnamed(avoiding: keep, random: &rng) }
        func solid(_ c: RGB, _ name: String?) -> (Pattern, (RGB, RGB), String?) { (.solid, (c, c), name) }
        func pair() -> (RGB, RGB)? {
            for _ in 0..<12 {
                let (a, b) = (unnamed(), unnamed())
                guard ShapeColours.distance(a, b) >= 20 else { continue }
                if [0.25, 0.5, 0.75].allSatisfy({ ShapeColours.isFar(a * (1 - $0) + b * $0, labs: keep, minimum: 40) }) { return (a, b) }
            }
            return nil
        }
        var roll = plain ? rng.next() % 54 : rng.next() % 100
        // Half the solid backgrounds of drawings that are not clean become a texture: 55 % of those drawings, where
        // they were 28 %.
        if busy && !plain && roll < 54 && rng.next() % 2 == 0 { roll = 72 + rng.next() % 28 }
        switch roll {
        case ..<20:
            // A named colour other than the shapes', named in the caption.
            for _ in 0..<8 {
                let c = otherColour(than: named.map(\.0), random: &rng), shade = ShapeColours.sample(c, random: &rng)
                if ShapeColours.isFar(shade, labs: keep, minimum: 40) { return solid(shade, SyntheticShapes.colours[c].name) }
            }
            return solid(unnamed(), nil)
        case ..<40:
            // White, black or gray, as most drawings have.
            let options: [(RGB, String)] = [(RGB(255, 255, 255), "white"), (RGB(0, 0, 0), "black"), (RGB(128, 128, 128), "gray")]
            let usable = options.filter { ShapeColours.isFar($0.0, labs: keep, minimum: 40) }
            guard !usable.isEmpty else { return solid(unnamed(), nil) }
            let (c, name) = usable[Int(rng.next() % UInt64(usable.count))]
            return solid(c, name)
        case ..<54: return solid(unnamed(), nil)
        default:
            guard let colours = pair() else { return solid(unnamed(), nil) }
            switch roll {
            case ..<66: return (.linear(angle: 2 * Double.pi * rng.nextOpenUnit()), colours, "gradient")
            case ..<72: return (.radial(x: rng.nextOpenUnit(), y: rng.nextOpenUnit()), colours, "gradient")
            case ..<79: return (.stripes(angle: Double.pi * rng.nextOpenUnit(), period: 0.05 + 0.2 * rng.nextOpenUnit()), colours, "striped")
            case ..<85: return (.checks(angle: Double(rng.nextSigned()) * 0.5, period: 0.06 + 0.18 * rng.nextOpenUnit()), colours, "checkered")
            case ..<90: return (.dots(period: 0.06 + 0.12 * rng.nextOpenUnit(), radius: 0.15 + 0.25 * rng.nextOpenUnit()), colours, "dotted")
            case ..<96: return (.noise(cells: 3 + Int(rng.next() % 14)), colours, "noisy")
            default: return (.clutter, colours, "cluttered")
            }
        }
    }

    // MARK: Captions

    var captionOptions: [String] {
        let c = SyntheticShapes.colours[colour].name, s = SyntheticShapes.shapes[shape]
        let noun = count == 1 ? s : (s == "cross" ? "crosses" : s + "s")
        let number = ["a", "two", "three"][count - 1]
        let size = large ? "large" : "small"
        let style: String
        if case .outline = main[0].fill { style = "outlined" } else { style = "filled" }
        let shapeWord = count == 1 ? "shape" : "shapes"
        var options = [
            "\(number) \(c) \(noun)", "\(number) \(size) \(c) \(noun)", "a photo of \(count == 1 ? "a" : number) \(c) \(noun)",
            "a drawing of \(number) \(c) \(noun)", "\(number) \(size) \(style) \(c) \(noun)", "\(number) \(c) \(s) \(shapeWord)",
        ]
        if let backgroundName {
            options += ["\(number) \(c) \(noun) on a \(backgroundName) background",
                        "\(number) \(size) \(c) \(s) \(shapeWord) on a \(backgroundName) background"]
        }
        if let region { options += ["a \(c) \(s) in the \(region)", "a \(size) \(c) \(s) at the \(region)"] }
        if let partner {
            let (pc, ps) = (SyntheticShapes.colours[partner.colour].name, SyntheticShapes.shapes[partner.item.shape])
            options = Array(options.prefix(3)) + [
                "a \(c) \(s) and a small \(pc) \(ps)", "a small \(pc) \(ps) next to a \(c) \(s)",
                "a \(size) \(c) \(s) and a small \(pc) \(ps)", "a \(c) \(s) with a \(pc) \(ps) beside it",
            ]
        }
        if !distractors.isEmpty || !occluders.isEmpty { options += ["\(number) \(c) \(noun) among small shapes"] }
        if eachShapeNamed && count > 1 {
            options += ["\(number) shapes, each a \(c) \(s)", "\(number) \(size) shapes, each a \(c) \(s)"]
        }
        // Exactly the zero-shot prompt, so that its text, ended where the prompt ends, is trained on groups too and not
        // only on single shapes; the caption that goes on keeps the count.
        if groupsAsOne && count > 1 {
            options += ["a \(c) \(s)", "a \(c) \(s) and \(count == 2 ? "another" : "two more")"]
        }
        return options
    }

    // MARK: Rendering

    func render(size n: Int, random rng: inout SplitMix64) -> [UInt8] {
        var image = [Double](repeating: 0, count: n * n * 3)
        var detail = SplitMix64(state: detailSeed)
        paintBackground(&image, n, random: &detail)
        for item in distractors + main + (partner.map { [$0.item] } ?? []) + occluders { paint(item, into: &image, n) }
        if blur > 0 { Self.gaussianBlur(&image, n, sigma: blur * Double(n) / 64) }
        if noise > 0 {
            var normal = NormalGenerator(seed: detail.next())
            for i in image.indices { image[i] += noise * Double(normal.next()) }
        }
        var bytes = image.map { UInt8(max(0, min(255, $0.rounded()))) }
        if jpegQuality > 0, let jpeg = try? JPEGEncoder.encode(rgb: bytes, width: n, height: n, quality: jpegQuality),
           let decoded = try? decodeImage(jpeg, name: "synthetic"), decoded.mode == .rgb, decoded.pixels.count == bytes.count {
            bytes = decoded.pixels
        }
        _ = rng.next()  // the caption's draw follows the image's, as in the plain style
        return bytes
    }

    private func paintBackground(_ image: inout [Double], _ n: Int, random rng: inout SplitMix64) {
        let (a, b) = backgroundColours
        var lattice: [RGB] = []
        var cells = 0
        if case .noise(let k) = pattern {
            cells = k
            lattice = (0..<((k + 1) * (k + 1))).map { _ in let t = rng.nextOpenUnit(); return a * t + b * (1 - t) }
        }
        var marks: [(x: Double, y: Double, dx: Double, dy: Double, w: Double, t: Double)] = []
        if case .clutter = pattern {
            marks = (0..<(12 + Int(rng.next() % 20))).map { _ in
                (rng.nextOpenUnit(), rng.nextOpenUnit(), 0.3 * Double(rng.nextSigned()), 0.3 * Double(rng.nextSigned()),
                 0.004 + 0.02 * rng.nextOpenUnit(), rng.nextOpenUnit())
            }
        }
        var (ca, sa) = (1.0, 0.0)
        switch pattern {
        case .linear(let angle), .stripes(let angle, _), .checks(let angle, _): (ca, sa) = (cos(angle), sin(angle))
        default: break
        }
        // Grid lines a pixel wide, darker on a light background and lighter on a dark one.
        let gridColour = ShapeColours.lab((a + b) / 2).x > 50 ? (a + b) / 4 : (a + b) / 4 + RGB(128, 128, 128)
        for py in 0..<n {
            for px in 0..<n {
                let (x, y) = ((Double(px) + 0.5) / Double(n), (Double(py) + 0.5) / Double(n))
                var c = a
                switch pattern {
                case .solid: c = a
                case .linear:
                    let t = min(1, max(0, 0.5 + (x - 0.5) * ca + (y - 0.5) * sa))
                    c = a * (1 - t) + b * t
                case .radial(let cx, let cy):
                    let t = min(1, hypot(x - cx, y - cy) / 0.9)
                    c = a * (1 - t) + b * t
                case .stripes(_, let period):
                    let u = x * ca + y * sa
                    c = (u / period).rounded(.down).truncatingRemainder(dividingBy: 2) == 0 ? a : b
                case .checks(_, let period):
                    let u = x * ca + y * sa, v = -x * sa + y * ca
                    c = (Int((u / period).rounded(.down)) + Int((v / period).rounded(.down))) & 1 == 0 ? a : b
                case .dots(let period, let radius):
                    let (u, v) = (x / period, y / period)
                    c = hypot(u - u.rounded(.down) - 0.5, v - v.rounded(.down) - 0.5) < radius ? b : a
                case .noise:
                    let (gx, gy) = (x * Double(cells), y * Double(cells))
                    let (i, j) = (min(cells - 1, Int(gx)), min(cells - 1, Int(gy)))
                    let (fx, fy) = (gx - Double(i), gy - Double(j))
                    let row = cells + 1
                    let top = lattice[j * row + i] * (1 - fx) + lattice[j * row + i + 1] * fx
                    let bottom = lattice[(j + 1) * row + i] * (1 - fx) + lattice[(j + 1) * row + i + 1] * fx
                    c = top * (1 - fy) + bottom * fy
                case .clutter:
                    for m in marks {
                        // Distance to the segment from (x, y) along (dx, dy).
                        let len2 = m.dx * m.dx + m.dy * m.dy
                        let t = max(0, min(1, ((x - m.x) * m.dx + (y - m.y) * m.dy) / len2))
                        if hypot(x - m.x - t * m.dx, y - m.y - t * m.dy) < m.w { c = a * (1 - m.t) + b * m.t }
                    }
                }
                if grid > 0, Int(x / grid) != Int((x + 1 / Double(n)) / grid) || Int(y / grid) != Int((y + 1 / Double(n)) / grid) {
                    c = gridColour
                }
                let i = 3 * (py * n + px)
                (image[i], image[i + 1], image[i + 2]) = (c.x, c.y, c.z)
            }
        }
    }

    private func paint(_ item: Item, into image: inout [Double], _ n: Int) {
        if item.shadow {
            // Down and to the right, a third of the way to black, as presentation software's default shadow.
            let offset = 0.12 * item.radius
            paint(item, into: &image, n, at: (item.x + offset, item.y + offset), tint: (RGB(0, 0, 0), 0.35))
        }
        paint(item, into: &image, n, at: (item.x, item.y), tint: nil)
    }

    /// Draws `item` centred at `centre` (image sides), in its own colours or, with `tint`, in one colour at an opacity.
    private func paint(_ item: Item, into image: inout [Double], _ n: Int, at centre: (x: Double, y: Double), tint: (RGB, Double)?) {
        let (cx, cy, r) = (centre.x * Double(n), centre.y * Double(n), item.radius * Double(n))
        let reach = r * (item.form.extent + 2 * item.wobble.amount) * max(item.aspect, 1 / item.aspect)
        let y0 = max(0, Int(cy - reach) - 1), y1 = min(n - 1, Int(cy + reach) + 1)
        let x0 = max(0, Int(cx - reach) - 1), x1 = min(n - 1, Int(cx + reach) + 1)
        guard y0 <= y1, x0 <= x1 else { return }
        let samples = item.antialiased ? 4 : 1
        let (cosR, sinR) = (cos(item.rotation), sin(item.rotation))
        let (lx, ly) = (cos(item.light.direction), sin(item.light.direction))
        let (wobble, phase) = item.wobble
        // Strokes are never thinner than a pixel, and keep one width all round: the inner edge of a circle or heart
        // is the form shrunk (an 8-neighbour test would notch their curves), of the pointed forms the points whose
        // 8 neighbours at the stroke's width are all inside (shrinking would thin a star's or cross's arms).
        var stroke = 0.0, line = RGB(0, 0, 0), outlined = false
        switch item.fill {
        case .solid: break
        case .outline(let w): (stroke, outlined) = (max(w, 1 / r), true)
        case .bordered(let w, let c): (stroke, line) = (max(w, 1 / r), c)
        }
        let scaledStroke = item.shape == 0 || item.shape == 4
        if scaledStroke { stroke = min(stroke, 0.6) }
        let ring = (0..<8).map { k in (stroke * cos(Double(k) * Double.pi / 4), stroke * sin(Double(k) * Double.pi / 4)) }
        for y in y0...y1 {
            for x in x0...x1 {
                var sum = RGB(0, 0, 0), hits = 0
                for sy in 0..<samples {
                    for sx in 0..<samples {
                        let px = (Double(x) + (Double(sx) + 0.5) / Double(samples) - cx) / r
                        let py = (Double(y) + (Double(sy) + 0.5) / Double(samples) - cy) / r
                        var (u, v) = ((cosR * px + sinR * py) / item.aspect, -sinR * px + cosR * py)
                        if wobble > 0 { (u, v) = (u + wobble * sin(5 * v + phase), v + wobble * sin(5 * u + 1.7 * phase)) }
                        guard item.form.inside(u, v) else { continue }
                        let onStroke = stroke > 0 && (scaledStroke ? !item.form.inside(u / (1 - stroke), v / (1 - stroke))
                                                                   : !ring.allSatisfy { item.form.inside(u + $0.0, v + $0.1) })
                        if outlined && !onStroke { continue }
                        hits += 1
                        if tint != nil { continue }
                        if onStroke && !outlined { sum += line; continue }
                        let t = max(-1, min(1, px * lx + py * ly))
                        sum += item.rgb * (1 + item.light.amount * (item.light.upOnly ? (t + 1) / 2 : t))
                    }
                }
                guard hits > 0 else { continue }
                let cover = Double(hits) / Double(samples * samples), i = 3 * (y * n + x)
                let (colour, a) = tint.map { ($0.0, cover * $0.1) } ?? (sum / Double(hits), cover)
                image[i] = a * min(255, colour.x) + (1 - a) * image[i]
                image[i + 1] = a * min(255, colour.y) + (1 - a) * image[i + 1]
                image[i + 2] = a * min(255, colour.z) + (1 - a) * image[i + 2]
            }
        }
    }

    /// A separable Gaussian blur of an [n, n, 3] image, edges clamped.
    static func gaussianBlur(_ image: inout [Double], _ n: Int, sigma: Double) {
        let radius = max(1, Int((3 * sigma).rounded(.up)))
        var kernel = (-radius...radius).map { exp(-Double($0 * $0) / (2 * sigma * sigma)) }
        let total = kernel.reduce(0, +)
        kernel = kernel.map { $0 / total }
        var scratch = image
        for pass in 0..<2 {
            for y in 0..<n {
                for x in 0..<n {
                    var acc = RGB(0, 0, 0)
                    for k in -radius...radius {
                        let (sx, sy) = pass == 0 ? (min(n - 1, max(0, x + k)), y) : (x, min(n - 1, max(0, y + k)))
                        let j = 3 * (sy * n + sx)
                        acc += RGB(image[j], image[j + 1], image[j + 2]) * kernel[k + radius]
                    }
                    let i = 3 * (y * n + x)
                    (scratch[i], scratch[i + 1], scratch[i + 2]) = (acc.x, acc.y, acc.z)
                }
            }
            swap(&image, &scratch)
        }
    }
}
