import CLIPFiles
import CLIPImage
import CLIPTensor
import CLIPTestSupport
import Foundation
import Testing
@testable import CLIPTraining

@Test("synthetic images are a pure function of (seed, index) and differ between streams")
func syntheticImagesAreDeterministic() {
    let a = SyntheticShapes(size: 32, seed: 3), b = SyntheticShapes(size: 32, seed: 3)
    for i in [0, 1, 17, 1_000_003] {
        #expect(a.sample(i).rgb == b.sample(i).rgb && a.sample(i).caption == b.sample(i).caption)
    }
    #expect(a.sample(0).rgb != SyntheticShapes(size: 32, seed: 4).sample(0).rgb)
    #expect(a.sample(0).rgb != SyntheticShapes(size: 32, seed: 3, split: .heldOut).sample(0).rgb)
}

@Test("the training split never shows a held-out colour–shape pair; the unseen split shows only those; every class occurs")
func splitsRespectHeldOutCombinations() {
    let train = SyntheticShapes(size: 16, split: .train), unseen = SyntheticShapes(size: 16, split: .unseenCombinations)
    let heldOut = SyntheticShapes(size: 16, split: .heldOut)
    var seen = Set<Int>()
    for i in 0..<3000 {
        let s = train.sample(i)
        #expect(!SyntheticShapes.heldOutCombinations.contains([s.colour, s.shape]))
        let u = unseen.sample(i)
        #expect(SyntheticShapes.heldOutCombinations.contains([u.colour, u.shape]))
        seen.insert(heldOut.sample(i).label)
    }
    #expect(seen.count == 48)
}

@Test("captions name the image's colour and shape; the vocabulary has the issue's 8 colours and 6 shapes")
func captionsNameColourAndShape() {
    #expect(SyntheticShapes.colours.map(\.name) == ["red", "green", "blue", "yellow", "orange", "purple", "black", "white"])
    #expect(SyntheticShapes.shapes == ["circle", "square", "triangle", "star", "heart", "cross"])
    #expect(SyntheticShapes.classNames.count == 48)
    let g = SyntheticShapes(size: 64, seed: 9)
    var phrasings = Set<String>()
    for i in 0..<500 {
        let s = g.sample(i)
        #expect(s.caption.contains(SyntheticShapes.colours[s.colour].name), "\(s.caption)")
        #expect(s.caption.contains(SyntheticShapes.shapes[s.shape]), "\(s.caption)")
        phrasings.insert(s.caption.split(separator: " ").prefix(2).joined(separator: " "))
        // The shape's colour is drawn: some pixel is close to it (thin anti-aliased outlines never cover a whole pixel).
        let c = SyntheticShapes.colours[s.colour].rgb
        let close = { (a: UInt8, b: UInt8) in abs(Int(a) - Int(b)) <= 64 }
        let found = stride(from: 0, to: s.rgb.count, by: 3).contains { close(s.rgb[$0], c.0) && close(s.rgb[$0 + 1], c.1) && close(s.rgb[$0 + 2], c.2) }
        #expect(found, "image \(i) (\(s.caption), \(s.rgb.count) bytes) has no pixel of its colour")
    }
    #expect(phrasings.count >= 6)
}

/// Zero-shot prompts use the singular ("a red square"), and BPE gives "square" and "squares" unrelated tokens, so the
/// singular must be seen with shapes of every size a group has. A model trained when singles were all larger than
/// groups' shapes scored 59 % on three-shape images with singular prompts and 94 % with plural ones.
@Test("singular shape nouns are grounded on every size: single shapes span the groups' radii, groups are also captioned with the singular")
func singularNounsCoverEverySize() {
    var rng = SplitMix64(state: 42)
    var single: [Double] = [], group: [Double] = []
    for k in 0..<6000 {
        let scene = Scene(random: &rng, colour: k % 8, shape: k % 6)
        if scene.placements.count == 1 && scene.count == 1 { single.append(scene.radius) } else if scene.count > 1 { group.append(scene.radius) }
    }
    single.sort()
    // Within half a pixel at the default model's input size.
    let pixel = 1 / Double(DefaultArchitecture.configuration.imageResolution)
    let uncovered = group.filter { r in !single.contains { abs($0 - r) < 0.5 * pixel } }
    #expect(uncovered.count == 0, "\(uncovered.count) of \(group.count) group radii have no single shape within half a pixel, e.g. \(uncovered.prefix(3))")
    let g = SyntheticShapes(size: 16)
    var singularForGroups = Set<String>()
    for i in 0..<3000 {
        let s = g.sample(i), noun = SyntheticShapes.shapes[s.shape]
        if s.caption.hasPrefix("two ") || s.caption.hasPrefix("three ") || s.caption.contains(" two ") || s.caption.contains(" three "),
           s.caption.contains(" \(noun) shapes") { singularForGroups.insert(noun) }
    }
    #expect(singularForGroups == Set(SyntheticShapes.shapes), "groups captioned with the singular: \(singularForGroups.sorted())")
}

@Test("CSV fields: quotes, doubled quotes, separators and newlines inside quotes, CRLF", arguments: [
    ("a,b\r\n\"x, y\",\"say \"\"hi\"\"\"\r\n", [["a", "b"], ["x, y", "say \"hi\""]]),
    ("a\tb\n1\t\"two\nlines\"\n", [["a", "b"], ["1", "two\nlines"]]),
    ("a,b\n1,2", [["a", "b"], ["1", "2"]]),
])
func delimitedTablesParse(text: String, rows: [[String]]) throws {
    let sep: UInt8 = text.contains("\t") ? 9 : 44
    #expect(try DelimitedTable.parse(Array(text.utf8), separator: sep, name: "t") == rows)
}

@Test("an unterminated quote is an error naming the file")
func unterminatedQuoteIsAnError() {
    #expect(throws: TableError.self) { try DelimitedTable.parse(Array("a,b\n\"open,2\n".utf8), separator: 44, name: "t.csv") }
}

/// A 40 MB caption took 28.6 s and 3 GiB to tokenize; a field past the caption limit is an error naming its line,
/// found before the field is kept.
@Test("a caption longer than the limit is an error naming the table and line")
func longCaptionIsAnError() throws {
    let dir = try scratchDirectory("long-caption")
    let caption = String(repeating: "a cat and a dog ", count: 10_000)
    try Data("filepath,title\nx.jpg,a cat\ny.jpg,\"\(caption)\"\n".utf8).write(to: URL(fileURLWithPath: "\(dir)/t.csv"))
    #expect { _ = try FileData(table: "\(dir)/t.csv") } throws: { "\($0)".contains("t.csv: line 3: a field is longer than 65536 bytes") }
    #expect(throws: Never.self) {
        try DelimitedTable.parse(Array("a,\(String(repeating: "x", count: 100))\n".utf8), separator: 44, name: "t", maxFieldBytes: 100)
    }
}

@Test("a truncated shard is an error naming the member and offset")
func truncatedShardIsNamed() throws {
    let dir = NSTemporaryDirectory() + "clip-tar-\(getpid())"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    var header = [UInt8](repeating: 0, count: 512)
    for (i, b) in "x.jpg".utf8.enumerated() { header[i] = b }
    for (i, b) in "00000010000\0".utf8.enumerated() { header[124 + i] = b }  // 4096 bytes declared
    header[156] = 48
    try Data(header + [UInt8](repeating: 1, count: 100)).write(to: URL(fileURLWithPath: "\(dir)/s.tar"))
    #expect {
        try WebDataset(shards: ["\(dir)/s.tar"])
    } throws: { error in
        "\(error)".contains("x.jpg") && "\(error)".contains("offset 0")
    }
}

@Test("the learning rate warms up linearly, then follows a cosine to zero (open_clip's cosine_lr)")
func learningRateSchedule() {
    let s = LearningRateSchedule(base: 1, warmup: 4, totalSteps: 12)
    #expect(s.rate(at: 0) == 0.25 && s.rate(at: 3) == 1)
    #expect(abs(s.rate(at: 8) - 0.5) < 1e-6)
    #expect(s.rate(at: 12) == 0 && s.rate(at: 100) == 0)
}

@Test("weight decay spares gains, biases, embeddings and the temperature")
func weightDecayExclusions() {
    #expect(AdamW.decays("visual.transformer.resblocks.0.attn.in_proj_weight", shape: [192, 64]))
    #expect(AdamW.decays("text_projection", shape: [64, 32]))
    #expect(!AdamW.decays("ln_final.weight", shape: [64]))
    #expect(!AdamW.decays("transformer.resblocks.0.mlp.c_fc.bias", shape: [256]))
    #expect(!AdamW.decays("token_embedding.weight", shape: [49408, 64]))
    #expect(!AdamW.decays("positional_embedding", shape: [77, 64]))
    #expect(!AdamW.decays("visual.class_embedding", shape: [64]))
    #expect(!AdamW.decays("logit_scale", shape: []))
}

@Test("the random resized crop is deterministic per position, stays within the image's values, and varies by position")
func randomResizedCrop() {
    let side = 20
    let image = (0..<(3 * side * side)).map { Float($0 % side) / Float(side) }  // a horizontal ramp per channel
    var a = image, b = image, c = image
    Augmentation.crop.apply(&a, side: side, seed: 1, position: 5)
    Augmentation.crop.apply(&b, side: side, seed: 1, position: 5)
    Augmentation.crop.apply(&c, side: side, seed: 1, position: 6)
    #expect(a == b && a != c && a != image)
    #expect(a.allSatisfy { $0 >= 0 && $0 <= Float(side - 1) / Float(side) })
    var d = image
    Augmentation.none.apply(&d, side: side, seed: 1, position: 5)
    #expect(d == image)
}

@Test("the retrieval ceiling: one image is always found; on held-out images the ideal critic p(c|x)/p(c) beats p(c|x) alone and stays well below 100 %")
func retrievalCeilingOfSyntheticCaptions() {
    let g = SyntheticShapes(size: 16, split: .heldOut)
    let one = g.retrievalCeiling(7..<8, marginalSamples: 1000)
    #expect(one.imageToText == 1 && one.textToImage == 1)
    let indices = 1_000_000..<1_000_400
    let best = g.retrievalCeiling(indices, marginalSamples: 50_000)
    // Ranking captions by how likely the image is to get them, without dividing by how common they are, prefers
    // the short generic captions ("a red circle") that many images share.
    let captions = indices.map { g.sample($0).caption }
    var likelihoodHits = 0.0
    for (i, index) in indices.enumerated() {
        let options = g.scene(index).0.captionOptions
        let p = captions.map { c in options.filter { $0 == c }.count }, best = p.max()
        let top = p.indices.filter { p[$0] == best }
        likelihoodHits += Double(top.filter { captions[$0] == captions[i] }.count) / Double(top.count)
    }
    let likelihoodOnly = likelihoodHits / Double(indices.count)
    #expect(best.imageToText > likelihoodOnly + 0.05, "ceiling \(best.imageToText), likelihood-only ranking \(likelihoodOnly)")
    #expect(best.imageToText > 0.3 && best.imageToText < 0.9 && best.textToImage > 0.3 && best.textToImage < 0.9, "\(best)")
}

/// Messages name the physical line: LF, CRLF and lone CR ends, newlines inside quotes.
@Test("table rows carry their first line's number whatever the line ends", arguments: [
    ("h\na\n\"b\nc\"\nd\n", [1, 2, 3, 5]), ("h\r\na\r\n\r\nd\r\n", [1, 2, 4]), ("h\ra\rd", [1, 2, 3]),
])
func tableLineNumbers(text: String, lines: [Int]) throws {
    var seen: [Int] = []
    try DelimitedTable.forEachRow(Array(text.utf8), separator: 44, name: "t") { (_, line) throws(TableError) in seen.append(line) }
    #expect(seen == lines)
    // A field too long on line 2 of a lone-CR table is reported there.
    #expect { try DelimitedTable.parse(Array("h\r\(String(repeating: "x", count: 50))\r".utf8), separator: 44, name: "t", maxFieldBytes: 10) }
        throws: { "\($0)".contains("t: line 2:") }
}
