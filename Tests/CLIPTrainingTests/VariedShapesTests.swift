import CLIPImage
import CLIPTensor
import Foundation
import Testing
@testable import CLIPTraining

@Test("varied images are a pure function of (seed, index), apart from the plain style's and from other splits",
      arguments: [SyntheticShapes.Split.train, .heldOut])
func variedImagesAreDeterministic(split: SyntheticShapes.Split) {
    let a = SyntheticShapes(size: 32, seed: 3, split: split, style: .varied)
    let b = SyntheticShapes(size: 32, seed: 3, split: split, style: .varied)
    for i in [0, 1, 17, 1_000_003] {
        #expect(a.sample(i).rgb == b.sample(i).rgb && a.sample(i).caption == b.sample(i).caption)
        #expect(a.sample(i).rgb != SyntheticShapes(size: 32, seed: 3, split: split).sample(i).rgb)
    }
    let other = SyntheticShapes(size: 32, seed: 3, split: split == .train ? .heldOut : .train, style: .varied)
    #expect((0..<8).filter { a.sample($0).rgb == other.sample($0).rgb }.isEmpty)
}

@Test("the varied style trains on all 48 colour–shape pairs, the plain style's held-out ones included")
func variedTrainingCoversEveryPair() {
    let g = SyntheticShapes(size: 8, split: .train, style: .varied)
    var seen = Set<Int>()
    for i in 0..<2000 { let (scene, _) = g.scene(i); seen.insert(scene.colour * 6 + scene.shape) }
    #expect(seen.count == 48)
}

@Test("a background is never near the colour of a shape the caption names, nor named by that colour",
      arguments: [false, true])
func backgroundsKeepClearOfNamedColours(busy: Bool) throws {
    var rng = SplitMix64(state: 7)
    var named = 0
    for k in 0..<6000 {
        let scene = VariedScene(random: &rng, colour: k % 8, shape: k % 6, busy: busy)
        var kept = scene.main.map(\.rgb)
        if let partner = scene.partner { kept.append(partner.item.rgb) }
        for c in [scene.backgroundColours.0, scene.backgroundColours.1] {
            let nearest = kept.map { ShapeColours.distance($0, c) }.min() ?? 0
            #expect(nearest >= 40, "scene \(k): background \(c) is ΔE \(nearest) from \(kept)")
        }
        if let name = scene.backgroundName, SyntheticShapes.colours.contains(where: { $0.name == name }) {
            named += 1
            #expect(name != SyntheticShapes.colours[scene.colour].name && name != scene.partner.map { SyntheticShapes.colours[$0.colour].name })
        }
    }
    #expect(named > 600, "named colour backgrounds: \(named) of 6000")
}

@Test("varied captions name the shapes' colour and kind, the second shape's when there is one, and include the zero-shot prompt")
func variedCaptionsSayWhichIsWhich() {
    var rng = SplitMix64(state: 11)
    var partners = 0, distractors = 0
    for k in 0..<3000 {
        let scene = VariedScene(random: &rng, colour: k % 8, shape: (k / 8) % 6)
        let (c, s) = (SyntheticShapes.colours[scene.colour].name, SyntheticShapes.shapes[scene.shape])
        let options = scene.captionOptions
        for o in options { #expect(o.contains(c) && o.contains(s), "\(o)") }
        if scene.count == 1 { #expect(options.contains("a \(c) \(s)"), "\(options)") }
        if let partner = scene.partner {
            partners += 1
            let named = "\(SyntheticShapes.colours[partner.colour].name) \(SyntheticShapes.shapes[partner.item.shape])"
            #expect(partner.colour != scene.colour && options.filter { $0.contains(named) }.count == 4, "\(options)")
        }
        if !scene.distractors.isEmpty || !scene.occluders.isEmpty { distractors += 1 }
        for d in scene.distractors + scene.occluders { #expect(d.rgb != scene.main[0].rgb && d.radius < scene.main[0].radius) }
    }
    #expect(partners > 250 && distractors > 400, "\(partners) partners, \(distractors) with distractors of 3000")
}

@Test("a solid shape's own colour is in its image")
func variedShapesAreDrawnInTheirColour() {
    let g = SyntheticShapes(size: 64, style: .varied)
    var checked = 0
    for i in 0..<700 {
        var (drawn, rng) = g.scene(i)
        guard let scene = drawn as? VariedScene, case .solid = scene.main[0].fill, scene.blur == 0, scene.noise == 0,
              scene.jpegQuality == 0, scene.main[0].light.amount == 0 else { continue }
        let rgb = scene.render(size: 64, random: &rng), c = scene.main[0].rgb
        let found = stride(from: 0, to: rgb.count, by: 3).contains {
            abs(Double(rgb[$0]) - c.x) <= 1 && abs(Double(rgb[$0 + 1]) - c.y) <= 1 && abs(Double(rgb[$0 + 2]) - c.z) <= 1
        }
        #expect(found, "image \(i): no pixel of \(c) (\(scene.captionOptions[0]))")
        checked += 1
    }
    #expect(checked > 100)
}

/// The area of each form measured on a grid against its closed form: a wrong vertex, fold or sign shows as percent.
@Test("shape forms cover the area their proportions give, and reach exactly their extent", arguments: [
    (2, 0.8, 0), (3, 0.34, 0), (3, 0.56, 0), (5, 0.17, 0), (5, 0.37, 0), (5, 0.25, -0.35),
] as [(Int, Double, Double)])
func shapeFormAreas(shape: Int, parameter: Double, crossbar: Double) {
    let form: ShapeForm, expected: Double
    switch shape {
    case 2: form = ShapeForm(shape: 2, apex: 0.3, base: parameter); expected = parameter * 1.75
    case 3: form = ShapeForm(shape: 3, points: 5, depth: parameter); expected = 5 * parameter * sin(Double.pi / 5)
    default:
        form = ShapeForm(shape: 5, arm: parameter, crossbar: crossbar)
        expected = 2 * parameter * 1.84 + 2 * parameter * 2 * (0.92 + crossbar) - 4 * parameter * parameter
    }
    let n = 1200
    var hits = 0, farthest = 0.0
    for y in 0..<n {
        for x in 0..<n {
            let (u, v) = (-1.3 + 2.6 * (Double(x) + 0.5) / Double(n), -1.3 + 2.6 * (Double(y) + 0.5) / Double(n))
            if form.inside(u, v) { hits += 1; farthest = max(farthest, hypot(u, v)) }
        }
    }
    let area = 2.6 * 2.6 * Double(hits) / Double(n * n)
    #expect(abs(area - expected) / expected < 0.005, "area \(area), expected \(expected)")
    #expect(farthest <= form.extent && farthest > form.extent - 0.01, "reaches \(farthest), extent \(form.extent)")
}

@Test("every shape form holds its centre and nothing beyond 1.3 radii, whatever its proportions", arguments: 0..<6)
func shapeFormsAreBounded(shape: Int) {
    var rng = SplitMix64(state: UInt64(shape))
    for _ in 0..<50 {
        let form = ShapeForm(shape: shape, random: &rng)
        #expect(form.inside(0, 0.05))
        for k in 0..<36 {
            let a = Double(k) * Double.pi / 18
            #expect(!form.inside(1.3 * cos(a), 1.3 * sin(a)), "\(form)")
        }
    }
}

@Test("shades of two colour names never meet: the names stay learnable")
func colourRegionsAreApart() {
    var rng = SplitMix64(state: 5)
    let shades = (0..<8).map { c in (0..<400).map { _ in ShapeColours.sample(c, random: &rng) } }
    for a in 0..<8 {
        for b in (a + 1)..<8 {
            let nearest = shades[a].flatMap { x in shades[b].map { ShapeColours.distance(x, $0) } }.min() ?? 0
            #expect(nearest > 8, "\(SyntheticShapes.colours[a].name) and \(SyntheticShapes.colours[b].name) come within ΔE \(nearest)")
        }
    }
    #expect(ShapeColours.hsv(hue: -360, saturation: 1, value: 1) == ShapeColours.RGB(255, 0, 0))
    #expect(ShapeColours.hsv(hue: 240, saturation: 1, value: 1) == ShapeColours.RGB(0, 0, 255))
    // Lab of sRGB white and a reference red (ΔE to within 0.1 of published values).
    #expect(abs(ShapeColours.lab(ShapeColours.RGB(255, 255, 255)).x - 100) < 0.1)
    #expect(abs(ShapeColours.distance(ShapeColours.RGB(255, 0, 0), ShapeColours.RGB(0, 0, 0)) - 117.3) < 0.5)
}

@Test("JPEG written by the system libjpeg reads back close to its pixels, and bad buffers are refused")
func jpegRoundTrip() throws {
    let (w, h) = (37, 21)
    var rgb: [UInt8] = []
    for i in 0..<(w * h) { rgb += [UInt8(i % w * 6), UInt8(i / w * 12), 128] }
    let data = try JPEGEncoder.encode(rgb: rgb, width: w, height: h, quality: 95)
    let image = try decodeImage(data, name: "round trip")
    #expect(image.width == w && image.height == h && image.mode == .rgb)
    let worst = zip(image.pixels, rgb).map { abs(Int($0) - Int($1)) }.max() ?? 255
    #expect(worst <= 12, "largest difference \(worst)")
    #expect(throws: ImageError.self) { try JPEGEncoder.encode(rgb: rgb, width: w, height: h + 1, quality: 95) }
    #expect(throws: ImageError.self) { try JPEGEncoder.encode(rgb: rgb, width: w, height: h, quality: 0) }
}

@Test("varied2 draws varied's images and captions; groups get two more phrasings naming each shape with the zero-shot prompt",
      arguments: [SyntheticShapes.Split.train, .heldOut])
func varied2NamesEachShapeOfAGroup(split: SyntheticShapes.Split) {
    let v1 = SyntheticShapes(size: 16, seed: 5, split: split, style: .varied)
    let v2 = SyntheticShapes(size: 16, seed: 5, split: split, style: .varied2)
    var groups = 0
    for i in 0..<300 {
        let (a, b) = (v1.sample(i), v2.sample(i))
        #expect(a.rgb == b.rgb && a.label == b.label, "image \(i)")
        let (sceneA, _) = v1.scene(i), (sceneB, _) = v2.scene(i)
        let (c, s) = (SyntheticShapes.colours[a.colour].name, SyntheticShapes.shapes[a.shape])
        let added = sceneB.captionOptions.filter { !sceneA.captionOptions.contains($0) }
        #expect(sceneA.captionOptions.allSatisfy { !$0.contains("each a") }, "\(sceneA.captionOptions)")
        #expect(Array(sceneB.captionOptions.prefix(sceneA.captionOptions.count)) == sceneA.captionOptions)
        guard let scene = sceneB as? VariedScene, scene.count > 1 else {
            #expect(added.isEmpty, "a single shape: \(added)")
            continue
        }
        groups += 1
        let number = ["two", "three"][scene.count - 2]
        #expect(added.count == 2 && added.allSatisfy { $0.hasPrefix(number) && $0.hasSuffix("shapes, each a \(c) \(s)") }, "\(added)")
    }
    #expect(groups > 60, "\(groups) groups of 300")
}

@Test("varied4 draws varied3's images; groups get two more captions that begin with the zero-shot prompt itself",
      arguments: [SyntheticShapes.Split.train, .heldOut])
func varied4CaptionsGroupsWithThePrompt(split: SyntheticShapes.Split) {
    let v3 = SyntheticShapes(size: 16, seed: 5, split: split, style: .varied3)
    let v4 = SyntheticShapes(size: 16, seed: 5, split: split, style: .varied4)
    var groups = 0, promptCaptions = 0
    for i in 0..<300 {
        let (a, b) = (v3.sample(i), v4.sample(i))
        #expect(a.rgb == b.rgb && a.label == b.label, "image \(i)")
        let (sceneA, _) = v3.scene(i), (sceneB, _) = v4.scene(i)
        let (c, s) = (SyntheticShapes.colours[a.colour].name, SyntheticShapes.shapes[a.shape])
        #expect(Array(sceneB.captionOptions.prefix(sceneA.captionOptions.count)) == sceneA.captionOptions)
        let added = Array(sceneB.captionOptions.dropFirst(sceneA.captionOptions.count))
        guard let scene = sceneB as? VariedScene, scene.count > 1 else {
            // The same options drawn from the same stream: the same caption.
            #expect(added.isEmpty && a.caption == b.caption, "a single shape: \(added), \(a.caption) / \(b.caption)")
            continue
        }
        groups += 1
        #expect(added == ["a \(c) \(s)", "a \(c) \(s) and \(scene.count == 2 ? "another" : "two more")"], "\(added)")
        if added.contains(b.caption) { promptCaptions += 1 }
    }
    #expect(groups > 60, "\(groups) groups of 300")
    // Two of 8–11 phrasings: about a fifth of the groups drawn here are captioned so.
    #expect(promptCaptions > 5 && promptCaptions < groups / 2, "\(promptCaptions) of \(groups) groups")
}

@Test("varied3 outlines 30 % of main shapes (varied 18 %) at widths from a twentieth of the radius (an eighth), and textures twice as many backgrounds")
func varied3DrawsOutlinesAndTexturesAsOthersDo() {
    func census(busy: Bool) -> (outlined: Double, widths: [Double], textured: Int) {
        var rng = SplitMix64(state: 23)
        var widths: [Double] = [], textured = 0
        for k in 0..<6000 {
            let scene = VariedScene(random: &rng, colour: k % 8, shape: (k / 8) % 6, busy: busy)
            if case .outline(let w) = scene.main[0].fill { widths.append(w) }
            switch scene.pattern {
            case .stripes, .checks, .dots, .noise, .clutter: textured += 1
            case .solid, .linear, .radial: break
            }
        }
        return (Double(widths.count) / 6000, widths, textured)
    }
    let (varied, varied3) = (census(busy: false), census(busy: true))
    #expect(abs(varied.outlined - 0.18) < 0.02, "varied: outlined \(varied.outlined)")
    #expect(varied.widths.allSatisfy { $0 >= 0.12 && $0 <= 0.40 })
    // Log-uniform widths from 0.05 to 0.45 put log(2.4) / log(9) = 40 % of them under 0.12.
    let thin = Double(varied3.widths.filter { $0 < 0.12 }.count) / Double(max(1, varied3.widths.count))
    let (lo, hi) = (varied3.widths.min() ?? 0, varied3.widths.max() ?? 0)
    #expect(abs(varied3.outlined - 0.30) < 0.03 && abs(thin - 0.40) < 0.06, "varied3: outlined \(varied3.outlined), under 0.12: \(thin)")
    #expect(lo >= 0.05 && lo < 0.052 && hi < 0.45 && hi > 0.44, "varied3: widths \(lo)…\(hi)")
    // Textures behind 55 % of the drawings that are not clean, where varied has 28 %: 1.96 times as many.
    let ratio = Double(varied3.textured) / Double(max(1, varied.textured))
    #expect(ratio > 1.6 && ratio < 2.4 && varied3.textured > 1200, "textured: varied \(varied.textured), varied3 \(varied3.textured) of 6000")
}

@Test("varied3 is its own stream of images, a pure function of (seed, index)", arguments: [SyntheticShapes.Split.train, .heldOut])
func varied3IsDeterministic(split: SyntheticShapes.Split) {
    let a = SyntheticShapes(size: 24, seed: 9, split: split, style: .varied3)
    let b = SyntheticShapes(size: 24, seed: 9, split: split, style: .varied3)
    let varied = SyntheticShapes(size: 24, seed: 9, split: split, style: .varied)
    var differ = 0
    for i in 0..<40 {
        #expect(a.sample(i).rgb == b.sample(i).rgb && a.sample(i).caption == b.sample(i).caption)
        if a.sample(i).rgb != varied.sample(i).rgb { differ += 1 }
    }
    #expect(differ >= 10, "\(differ) of 40 images differ from varied's")
}
