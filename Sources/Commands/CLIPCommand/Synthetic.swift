import ArgumentParser
import CLIPCommandSupport
import CLIPFiles
import CLIPImage
import CLIPTraining
import Foundation

struct Synthetic: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write captioned synthetic shape images (PNG + same-named .txt), the default model's data.",
        discussion: """
            The images are those `clip train --data synthetic` trains on (split train), or the evaluation streams \
            (held-out: every colour–shape pair, from another stream; unseen: only the colour–shape pairs never shown in \
            training). The folder is itself training data (`--data FOLDER`) and an evaluation set for `clip eval`: \
            with --class-folders, images go to folders named by class ("red circle/…"), one for each of the 48 classes.
            """)

    enum SplitName: String, ExpressibleByArgument { case train, heldOut = "held-out", unseen }

    @Option(help: "Images to write.") var count: Int
    @Option(help: "Output folder (created).") var output: String
    @Option(help: "train, held-out or unseen.") var split: SplitName = .train
    @Option(help: "Side of the images in pixels: the default model's input size, which it was trained at, unless given.")
    var size = DefaultArchitecture.configuration.imageResolution
    @Option(help: "Seed of the stream.") var seed: UInt64 = 0
    @Option(help: """
        plain (white, black, gray, noisy or light backgrounds; the data of the default model before 2026-12-06) or \
        varied (backgrounds of every colour and texture, other shapes, lighting, blur, noise, JPEG: the default model's \
        data from 2026-12-06 to 2026-12-07, `clip train --data synthetic-varied`) or varied2 (varied's images; groups also captioned shape by \
        shape, "two shapes, each a red square": `clip train --data synthetic-varied2`) or varied3 (varied with \
        outlines of any width in 30 % of drawings and textures behind twice as many: `clip train --data \
        synthetic-varied3`) or varied4 (varied3's images; groups also captioned with the prompt itself, "a red \
        square", "a red square and two more": the default model's data, `clip train --data synthetic-varied4`).
        """) var style: SyntheticShapes.Style = .plain
    @Option(help: "Index of the first image in the stream.") var start = 0
    @Flag(help: "Put each image in a folder named by its class, the layout `clip eval --images` reads.") var classFolders = false
    @Flag(help: """
        Also print, as JSON, the image↔text recall@1 of the ideal contrastive critic on these images and captions: \
        about the best a model can reach, below 100 % because a caption fits other images too.
        """) var retrievalCeiling = false

    func validate() throws {
        // Files are named by index: the range keeps start + count from overflowing and the names distinct.
        guard count >= 0, count <= 10_000_000, (0...(1 << 40)).contains(start) else {
            throw ValidationError("--count must be in 0...10,000,000 and --start in 0...1,099,511,627,776")
        }
        guard size >= 8, size <= 1024 else { throw ValidationError("--size must be between 8 and 1024 pixels") }
        guard style == .plain || split != .unseen else {
            throw ValidationError("--split unseen is the plain style's: the varied style trains on every colour–shape pair")
        }
        guard !retrievalCeiling || count <= 10_000 else {
            throw ValidationError("--retrieval-ceiling compares every image with every caption: use it with --count ≤ 10,000")
        }
    }

    func run() throws {
        let splitValue: SyntheticShapes.Split = split == .train ? .train : (split == .heldOut ? .heldOut : .unseenCombinations)
        let generator = SyntheticShapes(size: size, seed: seed, split: splitValue, style: style)
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        if classFolders {
            // Every class gets its folder, so an evaluation of the unseen split still chooses among all 48.
            for name in SyntheticShapes.classNames {
                try FileManager.default.createDirectory(atPath: "\(output)/\(name)", withIntermediateDirectories: true)
            }
        }
        for i in start..<(start + count) {
            let s = generator.sample(i)
            var folder = output
            if classFolders { folder += "/" + SyntheticShapes.classNames[s.label] }
            // Swift's own formatting: %d keeps 32 bits, and image 2^32 overwrote image 0.
            let digits = String(i)
            let stem = "\(folder)/" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
            try OutputFile.write(try PNGEncoder.encode(rgb: s.rgb, width: size, height: size, name: stem + ".png"), to: stem + ".png")
            try OutputFile.write(Array((s.caption + "\n").utf8), to: stem + ".txt")
        }
        if retrievalCeiling {
            let best = generator.retrievalCeiling(start..<(start + count))
            print(try jsonText(["retrievalCeiling": Eval.RecallOutput(imageToText: ["R@1": best.imageToText],
                                                                      textToImage: ["R@1": best.textToImage], count: count)]))
        }
    }
}
extension SyntheticShapes.Style: ExpressibleByArgument {}
