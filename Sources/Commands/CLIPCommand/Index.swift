import ArgumentParser
import CLIPCommandSupport
import CLIPFiles
import CLIPIndex
import CLIPKit
import CLIPTraining
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the index is, shared by `clip index` and `clip search`.
struct IndexOptions: ParsableArguments {
    @Option(help: "The index database (default: $XDG_DATA_HOME/swift-clip/index.sqlite, else ~/.local/share/swift-clip/index.sqlite). An index inside the photo folder (--db ./.clip-index.sqlite) stores paths relative to its folder and moves with it.")
    var db: String?

    var path: String { db ?? PhotoIndex.defaultPath() }

    func open() throws -> PhotoIndex { try PhotoIndex(path: path) }
}

/// Whether images are turned by their EXIF orientation: on for the photo index, its queries and the server.
struct OrientationOption: ParsableArguments {
    @Flag(inversion: .prefixedNo, help: "Turn and flip images by their EXIF orientation before embedding them, as they are shown (the reference's preprocess does not). The index records which was used; an index made without is still searched, and `clip index` turns its rotated photos and keeps the other embeddings.")
    var applyOrientation = true
}

/// The model an index run or a query uses, with its record in the index. A query falls back to an entry made
/// without orientation (with the pipeline that made it), and says so.
func indexedModel(_ options: ModelOptions, orientation: Bool = true, index: PhotoIndex, registering: Bool,
                  towers: CLIPModel.Towers = .both) throws -> (CLIPPipeline, IndexedModel) {
    let clip = try options.pipeline(towers: towers).orientingImages(orientation)
    if registering {
        return (clip, try ModelFingerprint.indexedModel(clip, name: options.spec, in: index, registering: true))
    }
    let found = try ModelFingerprint.searchedModel(clip, name: options.spec, in: index)
    if orientation && !found.pipeline.preprocessor.applyEXIFOrientation {
        FileHandle.standardError.write(Data("clip: \(index.path): searching its \(options.spec) embeddings made without EXIF orientation (they cover the most photos); `clip index` on all its folders turns its rotated photos (the others keep theirs)\n".utf8))
    }
    return found
}

struct Index: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Index photo folders for `clip search`: new and changed images and videos are embedded, moved ones recognised, vanished ones marked deleted.",
        subcommands: [Update.self, Merge.self, Stats.self, Export.self, Import.self],
        defaultSubcommand: Update.self)

    struct Update: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "update",
            abstract: "Index folders (the default: `clip index FOLDER…`).",
            discussion: """
                Files are recognised by size and modification time, then by a SHA-256 of their contents: a moved, \
                renamed or copied file reuses its embedding. Embeddings are kept per model, so several models live \
                side by side. A file that cannot be decoded is recorded with its reason and skipped (retried when \
                it changes). Ctrl-C finishes the current batch, commits and stops; a killed run loses at most its \
                last uncommitted batch, and running again continues. Hidden directories and @eaDir are skipped. \
                Videos (mp4, mov, mkv, webm, avi) are embedded at their moments (scene changes, and at least every \
                --video-interval seconds), one video per transaction after the images; clip search finds a video at \
                its best moment.
                """)

        @OptionGroup var model: ModelOptions
        @OptionGroup var index: IndexOptions
        @OptionGroup var orientation: OrientationOption

        @Argument(help: "Folders to index (default: the current folder).")
        var folders: [String] = []

        @Option(name: .customLong("exclude-dir"), help: "A directory name to skip wherever it occurs; repeat for more.")
        var excludeDir: [String] = []

        @Option(help: "Images per batch (and per committed transaction).")
        var batchSize = 32

        @Option(help: "Videos (mp4, mov, mkv, webm, avi): the longest gap between the moments embedded, in seconds; a moment is also taken at each scene change. clip search finds a video at its best moment.")
        var videoInterval = 2.0

        @Option(help: "Videos: the mean difference (0–255) between 32×32 gray thumbnails that counts as a scene change; 0 samples by --video-interval alone.")
        var sceneThreshold = 12.0

        func validate() throws {
            guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
            guard videoInterval > 0, videoInterval <= 86_400 else { throw ValidationError("--video-interval must be within (0, 86400] seconds") }
            guard (0...255).contains(sceneThreshold) else { throw ValidationError("--scene-threshold must be within 0...255") }
        }

        func run() throws {
            try update()
        }

        /// The progress bar on a terminal: files looked at, encoding rate, time left.
        static let progressLine: @Sendable (IndexingProgress) -> Void = { p in
            let rate = Double(p.embedded) / max(p.elapsed, 1e-9)
            let eta = Double(p.total - p.done) * p.elapsed / Double(max(p.done, 1))
            let line = String(format: "\rindexing %ld/%ld  %.1f images/s  ETA %@   ", p.done, p.total, rate,
                              TrainingRun.formatDuration(eta.isFinite ? eta : 0))
            FileHandle.standardError.write(Data(line.utf8))
        }

        private func update() throws {
                // From the start, so Ctrl-C while the model loads also ends in a clean stop (before the first batch).
                StopSignal.install()
                let photoIndex = try index.open()
                let lock = try photoIndex.lockForWriting()
                defer { lock.release() }
                // Photos and videos only: the text tower is not loaded.
                let (clip, indexed) = try indexedModel(model, orientation: orientation.applyOrientation, index: photoIndex,
                                                       registering: true, towers: .imageOnly)
                let unoriented = ModelFingerprint.unorientedModel(clip, name: model.spec, in: photoIndex)
                var options = IndexingOptions()
                options.batchSize = batchSize
                options.excludedDirectories = excludeDir
                (options.videoInterval, options.sceneThreshold) = (videoInterval, sceneThreshold)
                let terminal = isatty(2) != 0
                let progress = terminal ? Self.progressLine : nil
                let report = try Indexer(index: photoIndex, pipeline: clip, model: indexed, unoriented: unoriented).run(
                    folders: folders.isEmpty ? ["."] : folders, options: options,
                    shouldStop: { StopSignal.requested }, progress: progress)
                if terminal { FileHandle.standardError.write(Data("\n".utf8)) }
                try VectorStore.refreshCache(index: photoIndex, model: indexed)
                for (path, reason) in report.unreadableDirectories {
                    FileHandle.standardError.write(Data("clip: \(path): cannot list: \(reason)\n".utf8))
                }
                for (path, reason) in report.failed {
                    FileHandle.standardError.write(Data("clip: \(path): skipped: \(reason)\n".utf8))
                }
                print("\(photoIndex.path): \(report.scanned) images and videos found: \(report.embedded) embedded"
                      + (report.videos > 0 ? " (\(report.videos) videos, \(report.frames) moments)" : "") + ", "
                      + "\(report.reused) moved or copied (embedding reused), "
                      + (report.carriedOver > 0 ? "\(report.carriedOver) not rotated (embedding made without orientation kept), " : "")
                      + "\(report.unchanged) unchanged, \(report.deleted) deleted, \(report.failed.count) failed"
                      + (report.failedBefore > 0 ? " (and \(report.failedBefore) that failed before)" : "")
                      + " in \(String(format: "%.1f", report.seconds)) s")
                if report.interrupted {
                    FileHandle.standardError.write(Data("clip: interrupted; everything up to the last batch is saved. Run the same command again to continue.\n".utf8))
                    throw ExitCode(130)
                }
        }
    }

    struct Merge: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy another index's files, models and embeddings into this one (--db).",
            discussion: "Paths are rewritten for this index's folder; a file both hold keeps the newer record.")

        @OptionGroup var index: IndexOptions

        @Argument(help: "Index databases to merge in.")
        var sources: [String]

        func run() throws {
            let photoIndex = try index.open()
            let lock = try photoIndex.lockForWriting()
            defer { lock.release() }
            for source in sources {
                let counts = try photoIndex.merge(from: source)
                print("\(source): \(counts.files) files, \(counts.embeddings) embeddings, \(counts.models) models merged into \(photoIndex.path)")
            }
            for model in try photoIndex.models() { try VectorStore.refreshCache(index: photoIndex, model: model) }
        }
    }

    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "What the index holds, and SQLite's integrity check of it.")

        @OptionGroup var index: IndexOptions

        func run() throws {
            let photoIndex = try index.open()
            let s = try photoIndex.statistics()
            print("\(photoIndex.path): \(s.files) files, \(s.failed) failed, \(s.deleted) deleted; integrity \(try photoIndex.integrityCheck())")
            for m in try photoIndex.models() {
                print("model \(m.name): \(s.embeddings[m.name] ?? 0) embeddings of \(m.dimension) dimensions, fingerprint \(m.fingerprint.prefix(16))")
            }
        }
    }
}

extension Index {
    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a model's embeddings in clip-retrieval's layout (img_emb/img_emb_{N}.npy + metadata/metadata_{N}.jsonl), for autofaiss, Milvus or pgvector.")

        @OptionGroup var model: ModelOptions
        @OptionGroup var index: IndexOptions
        @OptionGroup var orientation: OrientationOption

        @Argument(help: "The output folder.")
        var output: String

        func run() throws {
            let photoIndex = try index.open()
            let (_, indexed) = try indexedModel(model, orientation: orientation.applyOrientation, index: photoIndex,
                                                registering: false, towers: .textOnly)
            let rows = try RetrievalLayout.export(photoIndex, model: indexed, to: output)
            print("\(output): \(rows) embeddings of model \(indexed.name)")
        }
    }

    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Read embeddings in clip-retrieval's layout (float32 or float16 .npy, JSON-lines metadata with image_path) as embeddings of --model.",
            discussion: "The embeddings must come from the same model and preprocessing as --model: they are stored under its fingerprint.")

        @OptionGroup var model: ModelOptions
        @OptionGroup var index: IndexOptions

        @Flag(inversion: .prefixedNo, help: "Whether the embeddings were made from images turned by their EXIF orientation. Default: what the folder's metadata/preprocessing_N.json files (written by clip embed) say, else no (clip-retrieval's inference does not turn images).")
        var applyOrientation: Bool?

        @Argument(help: "The folder holding img_emb/ and metadata/.")
        var input: String

        func run() throws {
            let photoIndex = try index.open()
            let lock = try photoIndex.lockForWriting()
            defer { lock.release() }
            let orientation = try applyOrientation ?? RetrievalLayout.recordedOrientation(in: input) ?? false
            let (_, indexed) = try indexedModel(model, orientation: orientation, index: photoIndex, registering: true,
                                                towers: .textOnly)
            let rows = try RetrievalLayout.importEmbeddings(from: input, into: photoIndex, model: indexed)
            try VectorStore.refreshCache(index: photoIndex, model: indexed)
            print("\(input): \(rows) embeddings imported into \(photoIndex.path) as model \(indexed.name)")
        }
    }
}
