import ArgumentParser
import CLIP
import CLIPCommandSupport
import CLIPHub
import CLIPImage
import CLIPKit
import CLIPTokenizer
import Foundation

package struct Bench: ParsableCommand {
    package static let configuration = CommandConfiguration(
        abstract: "Time image and text encoding.",
        discussion: """
            Uses a checkpoint when --model is given, otherwise random weights of --architecture (throughput does
            not depend on weight values). Reports the median of --repeat timed runs after one warm-up run, and
            the process's peak resident memory.
            """)

    @Option(help: "Architecture for random weights: \(CLIPConfiguration.openAIModelNames.joined(separator: ", ")).")
    var architecture = "ViT-B/32"

    @Option(help: "A checkpoint, Hugging Face folder or model name to time instead of random weights.")
    var model: String?

    @Option(help: "An open_clip model config JSON describing --model (needed for timm towers such as EVA, whose settings the weights do not hold).")
    var openclipConfig: String?

    @Option(help: "Images and texts per batch.")
    var batch = 16

    @Option(help: "Timed runs per measurement (the median is reported).")
    var `repeat` = 3

    @Flag(help: "Skip the text tower.")
    var imagesOnly = false

    @Option(help: "fp32, bf16 (AVX512-BF16) or int8 (AVX2, AVX512-VNNI or NEON DotProd) weight products.")
    var precision: Precision = .fp32

    @Flag(help: "Measure SGEMM throughput on CLIP's matrix shapes instead of the model.")
    var gemm = false

    @Flag(help: "Measure tokenizer throughput (single thread, cold cache) instead of the model.")
    var tokenizer = false

    @Option(help: "Measure end-to-end embedding of every image in this folder (any format the decoders read) (decode, preprocess, encode in batches).")
    var folder: String?

    @Option(parsing: .upToNextOption, help: "Measure decoding + preprocessing throughput on these image files instead of the model (one thread, then all cores).")
    var preprocess: [String] = []

    @Option(help: "Measure vector search instead of the model: fill the index --db with this many random unit vectors for the model (--model, default the shipped one) unless it holds them, then time top-10 queries.")
    var searchVectors: Int?

    @Option(help: "The index database --search-vectors fills and searches.")
    var db: String?

    package init() {}

    package func validate() throws {
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1") }
        guard (1...1000).contains(`repeat`) else { throw ValidationError("--repeat must be within 1...1000") }
        if let searchVectors {
            // 2^27 vectors of 512 floats is 256 GiB of index: more than any disk here, and a bench is not a fill.
            guard (1...(1 << 27)).contains(searchVectors), db != nil else {
                throw ValidationError("--search-vectors needs a count within 1...134217728 and --db")
            }
        }
        if openclipConfig != nil, model == nil {
            throw ValidationError("--openclip-config describes a checkpoint: give it with --model")
        }
        if model == nil, CLIPConfiguration.openAI(architecture) == nil {
            throw ValidationError("unknown architecture '\(architecture)'; choose one of \(CLIPConfiguration.openAIModelNames.joined(separator: ", "))")
        }
    }

    /// The largest batch timed: ViT-L/14@336px activations for 4,096 images already take about 60 GB.
    static let maximumBatch = 4_096

    package func run() throws {
        if gemm { return try runGEMM() }
        if tokenizer { return try runTokenizer() }
        if !preprocess.isEmpty { return try runPreprocess() }
        if let searchVectors { return try runSearch(vectors: searchVectors) }
        guard batch <= Self.maximumBatch else {
            throw ValidationError("--batch \(batch) is larger than \(Self.maximumBatch) images, the most clip bench times at once")
        }
        let clip: CLIPModel
        let name: String
        var preprocessing: Preprocessing?
        if let model {
            // The model alone: timing needs no tokenizer (a SigLIP folder without its spiece.model times too), and
            // with --images-only no text tower.
            let towers: CLIPModel.Towers = imagesOnly ? .imageOnly : .both
            let loaded = if let openclipConfig {
                try CLIPModel.load(path: model, openCLIPConfig: openclipConfig, precision: precision, towers: towers)
            } else {
                try ModelHub().load(model, precision: precision, towers: towers)
            }
            (clip, preprocessing) = (loaded.model, loaded.preprocessing)
            name = model
        } else {
            guard let configuration = CLIPConfiguration.openAI(architecture) else {
                throw ValidationError("unknown architecture '\(architecture)'; one of \(CLIPConfiguration.openAIModelNames.joined(separator: ", "))")
            }
            // Converted tower by tower as it is built, so the fp32 weights of only one tower are held at once.
            clip = try CLIPModel(randomWeightsFor: configuration, seed: 1, precision: precision)
            name = "\(architecture) (random weights)"
        }
        let c = clip.configuration
        let r = c.imageResolution
        // NaFlex towers take patch rows: each image here the position table's own grid, no padding.
        var naflexGrid: Int?
        if case .transformer(let v) = c.vision, v.variableGrid { naflexGrid = v.grid }
        let perImage = (naflexGrid == nil ? 0 : 2) + 3 * r * r  // a whole grid of patches holds the r × r pixels
        var values = [Float](repeating: 0, count: batch * perImage)
        var state: UInt64 = 12345
        for i in values.indices {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            values[i] = Float(state >> 40) / Float(1 << 23) - 1  // uniform in [-1, 1)
        }
        if let g = naflexGrid { for i in 0..<batch { (values[i * perImage], values[i * perImage + 1]) = (Float(g), Float(g)) } }
        let pixels = try Tensor(shape: naflexGrid == nil ? [batch, 3, r, r] : [batch, perImage], scalars: values)
        // Five-word prompts padded to the context length, as the PyTorch anchor measures. Each starts with a word of
        // its own: prompts sharing their start would be computed once per shared token (the tower's prefix tree),
        // and this measures the tower on every token.
        let ctx = c.text.contextLength
        let eot = c.text.vocabSize - 1
        let word = min(320, eot - 2)
        let tokens = (0..<batch).map { i in
            [eot - 1, 1 + i % max(eot - 2, 1)] + [Int](repeating: word, count: 4) + [eot]
                + [Int](repeating: 0, count: max(0, ctx - 7))
        }

        print("model: \(name)")
        if let folder {
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
            let files = entries.filter { ImageFormat.hasImageExtension($0) }
                .sorted().map { (folder as NSString).appendingPathComponent($0) }
            guard !files.isEmpty else { throw CLIError.input(subject: folder, reason: "no JPEG, PNG, WebP, HEIC, AVIF, GIF, BMP or TIFF files") }
            let pipeline = try CLIPPipeline(model: clip, preprocessing: preprocessing ?? Preprocessing(resolution: r))
            let t = try median { _ = try pipeline.imageEmbeddings(files: files, batchSize: batch) }
            print(String(format: "folder of %d images, batch %d: %.2f img/s end to end", files.count, batch, Double(files.count) / t))
            print(String(format: "peak RSS: %.0f MiB", peakResidentMiB()))
            return
        }
        print("threads: \(availableCores), CPU level: \(CPU.level) (\(CPU.features.joined(separator: ", "))), "
              + "precision: \(clip.precision.rawValue)")
        let imageTime = try median { _ = try clip.encodeImage(pixels) }
        print(String(format: "image batch %d: %.2f img/s (%.1f ms/img)", batch, Double(batch) / imageTime, imageTime * 1000 / Double(batch)))
        if !imagesOnly {
            let textTime = try median { _ = try clip.encodeText(tokens) }
            print(String(format: "text batch %d: %.2f txt/s (%.1f ms/txt)", batch, Double(batch) / textTime, textTime * 1000 / Double(batch)))
        }
        let peakMiB = peakResidentMiB()
        print(String(format: "peak RSS: %.0f MiB", peakMiB))
    }
}
