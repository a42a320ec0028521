import ArgumentParser
import CLIP
import CLIPCommandSupport
import CLIPEmbedding
import CLIPImage
import CLIPKit
import CLIPTokenizer
import Foundation

struct Embed: ParsableCommand {
    /// The JSON output; a kind that was not asked for is left out.
    struct Output: Encodable {
        let image_embeddings: [[Float]]?
        let text_embeddings: [[Float]]?
    }

    static let configuration = CommandConfiguration(
        abstract: "Embed images and texts: JSON {\"image_embeddings\": [[...]], \"text_embeddings\": [[...]]} in input order.",
        discussion: """
            Embeddings are L2-normalised unless --raw (then exactly encode_image / encode_text). With --output FILE.npy \
            the arrays are written as float32 .npy instead: FILE.npy holds whichever kind was given; with both, \
            FILE_images.npy and FILE_texts.npy.
            """)

    @OptionGroup var model: ModelOptions

    @OptionGroup var inputs: InputOptions

    var images: [String] { inputs.images }
    var texts: [String] { inputs.texts }

    @Flag(help: "Unnormalised encode_image / encode_text outputs.")
    var raw = false

    @Flag(help: "Cut texts longer than the context instead of failing.")
    var truncate = false

    @Flag(inversion: .prefixedNo, help: "Turn and flip images by their EXIF orientation first. Default: off for --image (the reference's preprocess), on for --input-list/--input-dir/--input-tar (a photo collection, as it is shown).")
    var applyOrientation: Bool?

    @Option(help: "Write to this file (.json, or .npy for float32 arrays) instead of standard output.")
    var output: String?

    @Option(help: "Images per batch.")
    var batchSize = 16

    @OptionGroup(title: "Embedding at scale (clip-retrieval's layout; docs/cluster.md)")
    var stream: StreamOptions

    struct StreamOptions: ParsableArguments {
        @Option(help: "A file of inputs, one per line: a path, or path<TAB>caption; - for standard input.")
        var inputList: String?

        @Option(help: "A folder of images (recursive; captions from same-named .txt files).")
        var inputDir: String?

        @Option(parsing: .upToNextOption, help: "webdataset tar shards as img2dataset writes them (key.jpg + key.txt); with --shard I/N, every N-th shard from the I-th.")
        var inputTar: [String] = []

        @Option(help: "Write img_emb/img_emb_{N}.npy, text_emb/text_emb_{N}.npy (with --enable-text) and metadata/metadata_{N}.jsonl here, N the partition.")
        var outputDir: String?

        @Option(help: "This worker's share I/N (I from 1): every N-th input from the I-th. Default: from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT or JOB_COMPLETION_INDEX with CLIP_SHARD_COUNT; else everything.")
        var shard: String?

        @Option(help: "The output partition number N (default: the shard's I − 1, or 0).")
        var part: Int?

        @Flag(help: "Also embed the captions (text_emb/text_emb_{N}.npy).")
        var enableText = false

        @Option(help: "Videos (mp4, mov, mkv, webm, avi) among the inputs: the longest gap between sampled frames, in seconds; frames are also taken at scene changes. Written as videos/K.npy + K.json (clip-video-encode's layout).")
        var videoInterval = 2.0

        @Option(help: "Videos: the mean difference (0–255) between 32×32 gray thumbnails that counts as a scene change; 0 samples by --video-interval alone.")
        var sceneThreshold = 12.0

        init() {}
    }

    func validate() throws {
        let sources = [stream.inputList != nil, stream.inputDir != nil, !stream.inputTar.isEmpty].filter { $0 }.count
        if sources > 0 {
            guard stream.outputDir != nil else { throw ValidationError("--input-list, --input-dir and --input-tar write to --output-dir") }
            guard sources == 1 else { throw ValidationError("give one of --input-list, --input-dir, --input-tar") }
            guard images.isEmpty, texts.isEmpty else { throw ValidationError("--image/--text do not mix with --input-list/--input-dir/--input-tar") }
            if let part = stream.part, !(0...(1 << 40)).contains(part) { throw ValidationError("--part must be within 0...1,099,511,627,776") }
        } else {
            guard !images.isEmpty || !texts.isEmpty else { throw ValidationError("give at least one --image or --text, or --input-list/--input-dir with --output-dir") }
        }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
        guard stream.videoInterval > 0, stream.videoInterval <= 86_400 else { throw ValidationError("--video-interval must be within (0, 86400] seconds") }
        guard (0...255).contains(stream.sceneThreshold) else { throw ValidationError("--scene-threshold must be within 0...255") }
    }

    /// The streaming worker: one partition of clip-retrieval's layout.
    func runStream(_ output: String) throws {
        let shard = try stream.shard.map { (s) throws(EmbeddingJobError) -> Shard in try Shard(parsing: s) } ?? Shard.fromEnvironment()
        let part = stream.part ?? ((shard?.index ?? 1) - 1)
        var inputShard = shard
        let inputs: EmbeddingInputs
        if !stream.inputTar.isEmpty {
            // Whole shards per worker, as clip-retrieval hands them out: the inputs are this worker's tars.
            let mine = stream.inputTar.enumerated().filter { shard?.takes($0.offset) ?? true }.map(\.element)
            guard !mine.isEmpty else { throw CLIError.input(subject: "shard \(shard?.description ?? "")", reason: "none of the \(stream.inputTar.count) tar shards is this shard's") }
            inputs = try EmbeddingInputs.tars(mine)
            inputShard = nil
        } else if let list = stream.inputList {
            inputs = try EmbeddingInputs.list(list)
        } else {
            inputs = try EmbeddingInputs.folder(stream.inputDir ?? ".")
        }
        var job = EmbeddingJob(pipeline: try model.pipeline().orientingImages(applyOrientation ?? true))
        job.batchSize = batchSize
        let report = try job.run(inputs, shard: inputShard, directory: output, part: part, withText: stream.enableText)
        for (path, reason) in report.failed {
            FileHandle.standardError.write(Data("clip: \(path): skipped: \(reason)\n".utf8))
        }
        let rate = Double(report.embedded) / max(report.seconds, 1e-9)
        // Interpolated, not %d: String(format:)'s %d keeps 32 bits of a partition number.
        print("\(output): partition \(part)\(shard.map { " (shard \($0))" } ?? ""): \(report.taken) inputs, \(report.embedded) embedded, "
              + "\(report.failed.count) failed in \(String(format: "%.1f", report.seconds)) s (\(String(format: "%.1f", rate)) images/s)")
        guard !inputs.videos.isEmpty else { return }
        var videoJob = VideoEmbeddingJob(pipeline: job.pipeline)
        videoJob.batchSize = batchSize
        videoJob.interval = stream.videoInterval
        videoJob.sceneThreshold = stream.sceneThreshold
        let videos = try videoJob.run(inputs.videos, shard: inputShard, directory: output, part: part)
        for (path, reason) in videos.failed {
            FileHandle.standardError.write(Data("clip: \(path): skipped: \(reason)\n".utf8))
        }
        print("\(output)/videos: \(videos.taken) videos, \(videos.embedded) embedded (\(videos.frames) frames), "
              + "\(videos.skipped) done before, \(videos.failed.count) failed in \(String(format: "%.1f", videos.seconds)) s")
    }

    func run() throws {
        if let output = stream.outputDir, stream.inputList != nil || stream.inputDir != nil || !stream.inputTar.isEmpty {
            try runStream(output)
            return
        }
        // Texts alone need no image tower, images alone no text tower (nor a tokenizer): neither its load nor its memory.
        let towers: CLIPModel.Towers = images.isEmpty ? .textOnly : texts.isEmpty ? .imageOnly : .both
        let clip = try model.pipeline(towers: towers).orientingImages(applyOrientation ?? false)
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
        let text = try jsonText(Output(image_embeddings: imageEmbeddings.map(rows), text_embeddings: textEmbeddings.map(rows))) + "\n"
        if let output { try write(Data(text.utf8), to: output) } else { print(text, terminator: "") }
    }
}
