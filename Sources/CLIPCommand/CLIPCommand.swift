import ArgumentParser
import CLIP
import CLIPHub
import CLIPFiles
import CLIPImage
import CLIPKit
import CLIPTokenizer
import CCLIPKernels
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@main
struct CLIPCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clip",
        abstract: "CLIP image and text embeddings, natively.",
        subcommands: [Classify.self, Embed.self, Similarity.self, Tokenize.self, Preprocess.self, Info.self, Bench.self]
    )

    /// Refuses arguments that are not UTF-8 before parsing: Swift's strings would replace their bytes, and a file
    /// name so changed would be reported as missing rather than as what it is.
    static func main() {
        for i in 1..<Int(CommandLine.argc) {
            guard let raw = CommandLine.unsafeArgv[i], String(validatingCString: raw) == nil else { continue }
            let bytes = UnsafeBufferPointer(start: raw, count: strlen(raw)).map { UInt8(bitPattern: $0) }
            let shown = bytes.map { $0 < 0x80 && $0 >= 0x20 ? String(UnicodeScalar($0)) : String(format: "\\x%02x", $0) }
            FileHandle.standardError.write(Data("clip: argument \(i) ('\(shown.joined())') is not valid UTF-8; clip needs UTF-8 file names and texts\n".utf8))
            Self.exit(withError: ExitCode(1))
        }
        main(nil)
    }
}

/// Runs `body`, turning library errors into one line on stderr and exit code 1. A `CLIP_CPU` setting this CPU
/// cannot honour is such an error for every command.
func reportingErrors<T>(_ body: () throws -> T) throws -> T {
    do {
        try CPU.validate()
        return try body()
    } catch let e as CustomStringConvertible & Error {
        FileHandle.standardError.write(Data("clip: \(e.description)\n".utf8))
        throw ExitCode(1)
    }
}

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print token ids as clip.tokenize returns them: a JSON array with one array per text.")

    @Option(help: "Ids per text, start and end tokens included; shorter texts are padded with 0.")
    var contextLength = 77

    @Flag(help: "Cut texts longer than the context (the last id becomes the end token) instead of failing.")
    var truncate = false

    @Flag(help: "Print the cleaned, lower-cased text each text is tokenized from, one JSON string per line (for debugging).")
    var showCleaned = false

    @Argument(help: "The texts.")
    var texts: [String] = []

    func run() throws {
        try reportingErrors {
            let tokenizer = try CLIPTokenizer.shared()
            if showCleaned {
                for t in texts { print(jsonString(tokenizer.cleanedText(t))) }
                return
            }
            let rows: [[Int]]
            do { rows = try tokenizer.tokenize(texts, contextLength: contextLength, truncate: truncate) } catch {
                if case TokenizerError.invalidContextLength = error { throw CLIError("--context-length: \(error)") }
                throw error
            }
            print("[" + rows.map { "[" + $0.map(String.init).joined(separator: ",") + "]" }.joined(separator: ",") + "]")
        }
    }
}

/// A JSON string literal with every non-ASCII scalar escaped, so output is unambiguous on any terminal.
func jsonString(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        default:
            if u.value >= 0x20 && u.value < 0x7F {
                out.unicodeScalars.append(u)
            } else {
                for unit in String(u).utf16 { out += String(format: "\\u%04x", unit) }
            }
        }
    }
    return out + "\""
}

struct Preprocess: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Decode and preprocess images exactly as the reference clip package does; write a float32 .npy [N, 3, R, R].")

    @Option(help: "Side of the square model input.")
    var resolution = 224

    @Option(help: "Per-channel mean, three comma-separated values (default: OpenAI's).")
    var mean: String?

    @Option(help: "Per-channel standard deviation, three comma-separated values (default: OpenAI's).")
    var std: String?

    @Flag(help: "Rotate/flip by the EXIF orientation first (the reference does not).")
    var exifTranspose = false

    @Option(help: "The .npy file to write.")
    var output: String

    @Argument(help: "JPEG, PNG or WebP files.")
    var images: [String]

    func validate() throws {
        guard !images.isEmpty else { throw ValidationError("give at least one image") }
        guard (1...4096).contains(resolution) else { throw ValidationError("--resolution must be between 1 and 4096") }
        _ = try triple(mean, "--mean")
        _ = try triple(std, "--std")
    }

    func triple(_ text: String?, _ flag: String) throws -> [Float]? {
        guard let text else { return nil }
        let values = text.split(separator: ",").compactMap { Float($0.trimmingCharacters(in: .whitespaces)) }
        guard values.count == 3, values.allSatisfy(\.isFinite) else {
            throw ValidationError("\(flag) needs three comma-separated numbers, got '\(text)'")
        }
        return values
    }

    func run() throws {
        try reportingErrors {
            let p = ImagePreprocessor(resolution: resolution,
                                      mean: try triple(mean, "--mean") ?? ImagePreprocessor.openAIMean,
                                      std: try triple(std, "--std") ?? ImagePreprocessor.openAIStd,
                                      applyEXIFOrientation: exifTranspose)
            let x = try p.tensor(files: images)
            try write(x.npyData(), to: output)
        }
    }
}

/// A command-line error with a message that names the culprit.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Where a model comes from, shared by every command that loads one.
struct ModelOptions: ParsableArguments {
    @Option(name: .customLong("model"), help: "A checkpoint file (.pt, .pth, .bin, .safetensors), a Hugging Face CLIPModel folder, or one of: \(CLIPConfiguration.openAIModelNames.joined(separator: ", ")).")
    var spec: String

    @Option(help: "Where named models are cached (default: $CLIP_CACHE_DIR, else ~/.cache/clip, as the reference).")
    var cacheDir: String?

    @Option(help: "An open_clip model config JSON whose activation and preprocessing apply to the checkpoint.")
    var openclipConfig: String?

    @Option(help: "Arithmetic of the weight products: fp32 (default, as the reference), bf16 (AVX512-BF16) or int8 (AVX2, AVX512-VNNI or NEON DotProd; dynamic quantisation).")
    var precision: Precision = .fp32

    func pipeline() throws -> CLIPPipeline {
        try CLIPPipeline.load(spec, cacheDirectory: cacheDir, openCLIPConfig: openclipConfig, precision: precision)
    }
}

/// A progress line on standard error, drawn only when it is a terminal and the work is long.
func progressReporter(_ what: String, total: Int) -> (@Sendable (Int, Int) -> Void)? {
    guard isatty(2) != 0, total >= 32 else { return nil }
    return { done, total in
        FileHandle.standardError.write(Data("\r\(what) \(done)/\(total)\(done == total ? "\n" : "")".utf8))
    }
}

func jsonNumbers(_ values: ArraySlice<Float>) -> String {
    "[" + values.map { $0.isFinite ? "\($0)" : "null" }.joined(separator: ",") + "]"
}

func jsonRows(_ t: Tensor) -> String {
    let w = t.shape.count == 2 ? t.shape[1] : 0
    return "[" + (0..<(t.shape.first ?? 0)).map { jsonNumbers(t.scalars[($0 * w)..<(($0 + 1) * w)]) }.joined(separator: ",") + "]"
}

struct Classify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Zero-shot classification: per image, the probability of each label.",
        discussion: """
            Probabilities are the softmax over labels of exp(logit_scale) × cosine(image, label). Each label is put \
            into every --template ("{}" marks where; default "\(PromptTemplates.defaultTemplate)"; "imagenet" \
            names the paper's 80-template ensemble); a label's templated embeddings are normalised, averaged and \
            renormalised. --template "{}" uses the labels verbatim, as the seed example does.
            """)

    @OptionGroup var model: ModelOptions

    @Argument(help: "Image files (JPEG, PNG, WebP).")
    var images: [String]

    @Option(parsing: .upToNextOption, help: "The labels to choose between.")
    var labels: [String]

    @Option(help: "A prompt template with {} for the label, or 'imagenet'; repeat for an ensemble.")
    var template: [String] = []

    @Flag(help: "One JSON object per image: {\"image\", \"labels\", \"probs\"}, labels in the given order.")
    var json = false

    @Option(help: "Images per batch.")
    var batchSize = 16

    func validate() throws {
        guard !images.isEmpty else { throw ValidationError("give at least one image") }
        guard !labels.isEmpty else { throw ValidationError("give at least one label with --labels") }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
        for t in template where PromptTemplates.named(t) == nil && t.components(separatedBy: "{}").count != 2 {
            throw ValidationError("--template '\(t)' must contain exactly one {} (or be 'imagenet')")
        }
    }

    func run() throws {
        try reportingErrors {
            let templates = template.isEmpty ? [PromptTemplates.defaultTemplate]
                : template.flatMap { PromptTemplates.named($0) ?? [$0] }
            let clip = try model.pipeline()
            let classifier = try clip.zeroShotClassifier(labels: labels, templates: templates)
            let embeddings = try clip.imageEmbeddings(files: images, batchSize: batchSize,
                                                      progress: progressReporter("images", total: images.count))
            let probs = try classifier.probabilities(embeddings)
            let n = labels.count
            for (i, path) in images.enumerated() {
                let row = Array(probs.scalars[(i * n)..<((i + 1) * n)])
                if json {
                    print("{\"image\":\(jsonString(path)),\"labels\":[\(labels.map(jsonString).joined(separator: ","))],\"probs\":\(jsonNumbers(row[...]))}")
                } else {
                    print(path)
                    for (index, p) in topK(row, k: n) {
                        print(String(format: "  %6.2f%%  %@", Double(p) * 100, labels[index]))
                    }
                }
            }
        }
    }
}

struct Embed: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Embed images and texts: JSON {\"image_embeddings\": [[...]], \"text_embeddings\": [[...]]} in input order.",
        discussion: """
            Embeddings are L2-normalised unless --raw (then exactly encode_image / encode_text). With --output FILE.npy \
            the arrays are written as float32 .npy instead: FILE.npy holds whichever kind was given; with both, \
            FILE_images.npy and FILE_texts.npy.
            """)

    @OptionGroup var model: ModelOptions

    @Option(name: .customLong("image"), help: "An image file; repeat for more.")
    var images: [String] = []

    @Option(name: .customLong("text"), help: "A text; repeat for more.")
    var texts: [String] = []

    @Flag(help: "Unnormalised encode_image / encode_text outputs.")
    var raw = false

    @Flag(help: "Cut texts longer than the context instead of failing.")
    var truncate = false

    @Option(help: "Write to this file (.json, or .npy for float32 arrays) instead of standard output.")
    var output: String?

    @Option(help: "Images per batch.")
    var batchSize = 16

    func validate() throws {
        guard !images.isEmpty || !texts.isEmpty else { throw ValidationError("give at least one --image or --text") }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
    }

    func run() throws {
        try reportingErrors {
            let clip = try model.pipeline()
            var imageEmbeddings: Tensor?
            var textEmbeddings: Tensor?
            if !images.isEmpty {
                let e = try clip.encodeImages(files: images, batchSize: batchSize,
                                              progress: progressReporter("images", total: images.count))
                imageEmbeddings = raw ? e : l2Normalized(e)
            }
            if !texts.isEmpty {
                let e = try clip.encodeTexts(texts, truncate: truncate)
                textEmbeddings = raw ? e : l2Normalized(e)
            }
            if let output, output.hasSuffix(".npy") {
                let stem = String(output.dropLast(4))
                var files: [(String, Tensor)] = []
                if let i = imageEmbeddings { files.append((textEmbeddings == nil ? output : stem + "_images.npy", i)) }
                if let t = textEmbeddings { files.append((imageEmbeddings == nil ? output : stem + "_texts.npy", t)) }
                for (path, t) in files { try write(t.npyData(), to: path) }
                return
            }
            var parts: [String] = []
            if let i = imageEmbeddings { parts.append("\"image_embeddings\":" + jsonRows(i)) }
            if let t = textEmbeddings { parts.append("\"text_embeddings\":" + jsonRows(t)) }
            let text = "{" + parts.joined(separator: ",") + "}\n"
            if let output { try write(Data(text.utf8), to: output) } else { print(text, terminator: "") }
        }
    }
}

/// Writes an output file atomically (devices and FIFOs in place; see `OutputFile`), one line naming it on failure.
func write(_ data: Data, to path: String) throws {
    do {
        try OutputFile.write([UInt8](data), to: path)
    } catch {
        throw CLIError("\(path): cannot write: \(error.reason)")
    }
}

struct Similarity: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The image × text cosine-similarity matrix.")

    @OptionGroup var model: ModelOptions

    @Option(name: .customLong("image"), help: "An image file; repeat for more.")
    var images: [String] = []

    @Option(name: .customLong("text"), help: "A text; repeat for more.")
    var texts: [String] = []

    @Flag(help: "JSON {\"images\", \"texts\", \"cosine\": [[...]]} instead of a table.")
    var json = false

    func validate() throws {
        guard !images.isEmpty, !texts.isEmpty else { throw ValidationError("give at least one --image and one --text") }
    }

    func run() throws {
        try reportingErrors {
            let clip = try model.pipeline()
            let m = try cosineSimilarity(try clip.imageEmbeddings(files: images, progress: progressReporter("images", total: images.count)),
                                         try clip.textEmbeddings(texts))
            if json {
                print("{\"images\":[\(images.map(jsonString).joined(separator: ","))],\"texts\":[\(texts.map(jsonString).joined(separator: ","))],\"cosine\":\(jsonRows(m))}")
                return
            }
            for (i, path) in images.enumerated() {
                print(path)
                for (j, t) in texts.enumerated() {
                    print(String(format: "  %+.4f  %@", m.scalars[i * texts.count + j], t))
                }
            }
        }
    }
}

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a model's architecture (inferred from its weights), size, storage and preprocessing.")

    @Argument(help: "A checkpoint file, a Hugging Face folder, or one of the nine OpenAI model names.")
    var model: String

    @Option(help: "Where named models are cached (default: $CLIP_CACHE_DIR, else ~/.cache/clip).")
    var cacheDir: String?

    @Option(help: "An open_clip model config JSON for the checkpoint.")
    var openclipConfig: String?

    func run() throws {
        try reportingErrors {
            let loaded = try ModelHub(cacheDirectory: cacheDir).load(model, openCLIPConfig: openclipConfig)
            let c = loaded.model.configuration
            print("path: \(loaded.path)")
            print("format: \(loaded.format.rawValue)")
            print("stored dtypes: \(loaded.storedDTypes.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.rawValue) (\($0.value) tensors)" }.joined(separator: ", "))")
            print("parameters: \(loaded.parameterCount)")
            print("embedding width: \(c.embedDim)")
            switch c.vision {
            case .transformer(let v):
                print("image tower: Vision Transformer, width \(v.width), \(v.layers) layers, \(v.heads) heads, patch \(v.patchSize)")
            case .resnet(let r):
                print("image tower: modified ResNet, stages \(r.layers), width \(r.width), attention pool \(r.heads) heads")
            }
            print("text tower: width \(c.text.width), \(c.text.layers) layers, \(c.text.heads) heads, context \(c.text.contextLength), vocabulary \(c.text.vocabSize)")
            print("activation: \(c.activation.rawValue), LayerNorm eps \(c.layerNormEps)")
            print("preprocessing: \(loaded.preprocessing)")
            print(String(format: "logit scale: %.4f (exp: %.2f)", loaded.model.logitScale, exp(loaded.model.logitScale)))
        }
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
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

    @Option(help: "Measure end-to-end embedding of every JPEG/PNG/WebP in this folder (decode, preprocess, encode in batches).")
    var folder: String?

    @Option(parsing: .upToNextOption, help: "Measure decoding + preprocessing throughput on these image files instead of the model (one thread, then all cores).")
    var preprocess: [String] = []

    func validate() throws {
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1") }
        guard `repeat` >= 1 else { throw ValidationError("--repeat must be at least 1") }
        if model == nil, CLIPConfiguration.openAI(architecture) == nil {
            throw ValidationError("unknown architecture '\(architecture)'; choose one of \(CLIPConfiguration.openAIModelNames.joined(separator: ", "))")
        }
    }

    /// The largest batch timed: ViT-L/14@336px activations for 4,096 images already take about 60 GB.
    static let maximumBatch = 4_096

    func run() throws {
        if gemm { return try runGEMM() }
        if tokenizer { return try runTokenizer() }
        if !preprocess.isEmpty { return try runPreprocess() }
        try reportingErrors {
            guard batch <= Self.maximumBatch else {
                throw CLIError("--batch \(batch) is larger than \(Self.maximumBatch) images, the most clip bench times at once")
            }
            let clip: CLIPModel
            let name: String
            if let model {
                clip = try ModelHub().load(model, precision: precision).model
                name = model
            } else {
                clip = try CLIPModel(randomWeightsFor: CLIPConfiguration.openAI(architecture)!, seed: 1, precision: precision)
                name = "\(architecture) (random weights)"
            }
            let c = clip.configuration
            let r = c.imageResolution
            var values = [Float](repeating: 0, count: batch * 3 * r * r)
            var state: UInt64 = 12345
            for i in values.indices {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                values[i] = Float(state >> 40) / Float(1 << 23) - 1  // uniform in [-1, 1)
            }
            let pixels = try Tensor(shape: [batch, 3, r, r], scalars: values)
            // Five-word prompts padded to the context length, as the PyTorch anchor measures.
            let ctx = c.text.contextLength
            let eot = c.text.vocabSize - 1
            let prompt = [eot - 1] + [Int](repeating: min(320, eot - 2), count: 5) + [eot]
            let tokens = [[Int]](repeating: prompt + [Int](repeating: 0, count: max(0, ctx - prompt.count)), count: batch)

            print("model: \(name)")
            if let folder {
                let entries = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
                let files = entries.filter { ["jpg", "jpeg", "png", "webp"].contains(($0 as NSString).pathExtension.lowercased()) }
                    .sorted().map { (folder as NSString).appendingPathComponent($0) }
                guard !files.isEmpty else { throw CLIError("\(folder): no JPEG, PNG or WebP files") }
                let pipeline = try CLIPPipeline(model: clip, preprocessing: Preprocessing(resolution: r))
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

    /// Texts/s of `tokenize` on the captions the reference anchor uses, each run with a fresh (cold) cache.
    func runTokenizer() throws {
        try reportingErrors {
            let pets = ["dog", "cat", "bird", "fish"]
            let texts = (0..<1000).map { "a photo of a \(pets[$0 % 4]), a type of pet number \($0)." }
            _ = try CLIPTokenizer.shared()  // load the vocabulary outside the timing
            var fresh: [CLIPTokenizer] = []
            for _ in 0...`repeat` { fresh.append(try CLIPTokenizer()) }
            var run = 0
            let t = try median {
                _ = try fresh[run].tokenize(texts)
                run += 1
            }
            print(String(format: "tokenizer (cold cache, 1 thread): %.0f texts/s", Double(texts.count) / t))
        }
    }

    /// Images/s of decode + preprocess at 224, one thread (file bytes already in memory) and the parallel batch API.
    func runPreprocess() throws {
        try reportingErrors {
            let p = ImagePreprocessor()
            let blobs = try preprocess.map { path -> [UInt8] in
                guard let d = FileManager.default.contents(atPath: path) else { throw CLIError("\(path): cannot read") }
                return [UInt8](d)
            }
            let decodeOnly = try median {
                for (i, b) in blobs.enumerated() { _ = try decodeImage(b, name: preprocess[i]) }
            }
            let decoded = try blobs.enumerated().map { try decodeImage($1, name: preprocess[$0]) }
            let preprocessOnly = try median { for d in decoded { _ = try p.pixels(d) } }
            print(String(format: "decode only, 1 thread: %.1f img/s; resize+crop+normalise only: %.1f img/s",
                         Double(blobs.count) / decodeOnly, Double(blobs.count) / preprocessOnly))
            let single = try median {
                for (i, b) in blobs.enumerated() { _ = try p.pixels(decodeImage(b, name: preprocess[i])) }
            }
            print(String(format: "decode + preprocess, 1 thread: %.1f img/s", Double(blobs.count) / single))
            let batch = try median { _ = try p.tensor(files: preprocess) }
            print(String(format: "decode + preprocess, %d threads (files): %.1f img/s", availableCores, Double(blobs.count) / batch))
        }
    }

    /// The measured arithmetic peak of all cores for `kind` (0 fp32, 1 bf16, 2 int8) in GFLOP/s, or nil when the
    /// CPU lacks it: a register-only multiply-add loop on every core, best of five runs (about 50 ms each on this
    /// AVX-512 machine).
    func measuredPeak(kind: Int32) -> Double? {
        var sink: Float = 0
        guard clip_peak_loop(kind, 1, &sink) > 0 else { return nil }
        let iterations = 16_000_000
        var best = 0.0
        for _ in 0..<5 {
            let start = monotonicSeconds()
            let ops = ParallelSum()
            parallelFor(availableCores) { _ in
                var s: Float = 0
                ops.add(clip_peak_loop(kind, iterations, &s))
            }
            best = max(best, ops.total / (monotonicSeconds() - start) / 1e9)
        }
        return best
    }

    /// GFLOP/s of C = A·Bᵀ (the Linear layer's form) for square 1024³ and ViT-B/32 batch-16 layer shapes, and as a
    /// share of the measured arithmetic peak.
    func runGEMM() throws {
        print("threads: \(availableCores)")
        var peaks: [Precision: Double] = [:]
        for (precision, kind) in [(Precision.fp32, Int32(0)), (.bf16, 1), (.int8, 2)] {
            guard let peak = measuredPeak(kind: kind) else { continue }
            peaks[precision] = peak
            print(String(format: "arithmetic peak, %@ multiply-add loop on %d cores: %.1f GFLOP/s", precision.rawValue,
                         availableCores, peak))
        }
        func share(_ rate: Double, _ precision: Precision) -> String {
            guard let peak = peaks[precision] else { return "" }
            return String(format: " (%.0f %% of peak)", 100 * rate / peak)
        }
        let shapes = [(1024, 1024, 1024, "square"), (800, 2304, 768, "ViT-B/32 qkv"), (800, 768, 768, "ViT-B/32 out"),
                      (800, 3072, 768, "ViT-B/32 c_fc"), (800, 768, 3072, "ViT-B/32 c_proj")]
        for kernel in GEMMKernel.allCases where kernel != .auto && kernel.isAvailable {
            for (m, n, k, label) in shapes {
                let a = [Float](repeating: 0.5, count: m * k), b = [Float](repeating: 0.25, count: n * k)
                var c = [Float](repeating: 0, count: m * n)
                let t = try median {
                    a.withUnsafeBufferPointer { ap in
                        b.withUnsafeBufferPointer { bp in
                            c.withUnsafeMutableBufferPointer { cp in
                                sgemm(transA: false, transB: true, m: m, n: n, k: k, a: ap.baseAddress!, lda: k,
                                      b: bp.baseAddress!, ldb: k, c: cp.baseAddress!, ldc: n, kernel: kernel)
                            }
                        }
                    }
                }
                let rate = 2 * Double(m * n * k) / t / 1e9
                print(String(format: "%@ %dx%dx%d (%@): %.1f GFLOP/s", kernel.rawValue, m, n, k, label, rate)
                      + (kernel == .best ? share(rate, .fp32) : ""))
            }
        }
        // Products with packed layer weights, as the model runs them.
        for precision in Precision.allCases where precision.isAvailable {
            for (m, n, k, label) in shapes {
                let a = [Float](repeating: 0.5, count: m * k)
                let w = try Tensor(shape: [n, k], scalars: [Float](repeating: 0.25, count: n * k))
                let packed = try PackedMatrix(w, transposed: true, precision: precision)
                var c = [Float](repeating: 0, count: m * n)
                let t = try median {
                    a.withUnsafeBufferPointer { ap in
                        c.withUnsafeMutableBufferPointer { cp in
                            packed.multiply(ap.baseAddress!, rows: m, lda: k, into: cp.baseAddress!, ldc: n)
                        }
                    }
                }
                let rate = 2 * Double(m * n * k) / t / 1e9
                print(String(format: "packed %@ %dx%dx%d (%@): %.1f GFLOP/s", precision.rawValue, m, n, k, label, rate)
                      + share(rate, precision))
            }
        }
    }

    func median(_ body: () throws -> Void) throws -> Double {
        try body()
        var times: [Double] = []
        for _ in 0..<`repeat` {
            let start = monotonicSeconds()
            try body()
            times.append(monotonicSeconds() - start)
        }
        return times.sorted()[times.count / 2]
    }
}

/// Peak resident memory of this process in MiB. On Linux from VmHWM, which starts afresh at exec
/// (getrusage's ru_maxrss carries over the parent's peak into a child process).
func peakResidentMiB() -> Double {
    #if os(Linux)
    if let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
       let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
       let kib = Double(line.split(separator: " ").dropFirst().first ?? "") {
        return kib / 1024
    }
    #endif
    var usage = rusage()
    #if os(Linux)
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024
    #else
    getrusage(RUSAGE_SELF, &usage)
    return Double(usage.ru_maxrss) / 1024 / 1024
    #endif
}

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

extension Precision: ExpressibleByArgument {}

/// A sum that parallel tasks add to.
final class ParallelSum: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0.0
    func add(_ x: Double) { lock.lock(); value += x; lock.unlock() }
    var total: Double { lock.lock(); defer { lock.unlock() }; return value }
}
