#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLIPFiles
import CLIPImage
import CLIPKit
import CLIPTensor
import Foundation

/// One input of an embedding job: an image file and, optionally, its caption.
public struct EmbeddingInput: Sendable, Equatable {
    /// The image's path; for a tar member, `shard.tar:member-name`.
    public var path: String
    public var caption: String?
    /// Where a tar member's bytes are.
    public var member: TarMember?
    /// Why the input is recorded as failed without being read (a caption past the limit), or nil.
    public var problem: String?

    public struct TarMember: Sendable, Equatable {
        public var tar: String
        public var offset: Int
        public var size: Int
    }

    public init(path: String, caption: String? = nil, member: TarMember? = nil) {
        (self.path, self.caption, self.member) = (path, caption, member)
    }
}

/// Which inputs this worker takes: `index` of `count` (counted from 1, as `--shard I/N`), every `count`-th input
/// from the `index`-th on, so no worker needs the total.
public struct Shard: Sendable, Equatable, CustomStringConvertible {
    public var index: Int
    public var count: Int

    public init(index: Int, count: Int) throws(EmbeddingJobError) {
        guard count >= 1, index >= 1, index <= count else {
            throw EmbeddingJobError("shard \(index)/\(count): I must be between 1 and N (shards are counted from 1)")
        }
        (self.index, self.count) = (index, count)
    }

    /// "I/N".
    public init(parsing text: String) throws(EmbeddingJobError) {
        let parts = text.split(separator: "/")
        guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]) else {
            throw EmbeddingJobError("--shard '\(text)': expected I/N, for example 3/10")
        }
        try self.init(index: i, count: n)
    }

    /// The shard the scheduler says this process is: Slurm's array task id and count, or a Kubernetes Indexed
    /// Job's completion index (counted from 0) with the count in `CLIP_SHARD_COUNT` (Kubernetes does not pass it).
    /// Nil when none is set (the whole input).
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws(EmbeddingJobError) -> Shard? {
        if let id = env["SLURM_ARRAY_TASK_ID"], let count = env["SLURM_ARRAY_TASK_COUNT"] {
            guard let i = Int(id), let n = Int(count) else {
                throw EmbeddingJobError("SLURM_ARRAY_TASK_ID=\(id), SLURM_ARRAY_TASK_COUNT=\(count): not whole numbers")
            }
            // Slurm arrays usually count from 0 (--array=0-9) but may start at 1 (--array=1-10).
            let minimum = Int(env["SLURM_ARRAY_TASK_MIN"] ?? "0") ?? 0
            return try Shard(index: i - minimum + 1, count: n)
        }
        if let id = env["JOB_COMPLETION_INDEX"] {
            guard let i = Int(id), let n = Int(env["CLIP_SHARD_COUNT"] ?? "") else {
                throw EmbeddingJobError("JOB_COMPLETION_INDEX=\(id) needs CLIP_SHARD_COUNT (the Job's completions) as a whole number")
            }
            return try Shard(index: i + 1, count: n)
        }
        return nil
    }

    public var description: String { "\(index)/\(count)" }

    /// Whether the input at `position` (from 0) is this shard's.
    public func takes(_ position: Int) -> Bool { position % count == index - 1 }
}

/// Inputs read one at a time, so a list of millions costs no memory: lines of a file or standard input (`path`
/// or `path<TAB>caption`), the images of a folder tree (captions from same-named `.txt` files), or the members of
/// webdataset tar shards (`tars(_:)`).
public final class EmbeddingInputs {
    private let next: (EmbeddingInputs) throws(EmbeddingJobError) -> EmbeddingInput?
    public let description: String
    /// The videos met so far (a folder's all at once, a list's as its lines are read), for `VideoEmbeddingJob`:
    /// they are not image inputs.
    public fileprivate(set) var videos: [String] = []

    init(description: String, videos: [String] = [], next: @escaping (EmbeddingInputs) throws(EmbeddingJobError) -> EmbeddingInput?) {
        (self.description, self.videos, self.next) = (description, videos, next)
    }

    /// The next image input, or nil at the end.
    public func read() throws(EmbeddingJobError) -> EmbeddingInput? { try next(self) }

    /// Lines of `path` ("-": standard input). Relative image paths are relative to the current directory; blank
    /// lines are skipped; a line over 64 KiB is an error naming its number.
    public static func list(_ path: String) throws(EmbeddingJobError) -> EmbeddingInputs {
        let fd: Int32
        if path == "-" { fd = 0 } else {
            fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw EmbeddingJobError("\(path): cannot open the input list: \(String(cString: strerror(errno)))") }
        }
        let reader = LineReader(fd: fd, name: path == "-" ? "standard input" : path, closes: path != "-")
        return EmbeddingInputs(description: path == "-" ? "standard input" : path) { (inputs) throws(EmbeddingJobError) -> EmbeddingInput? in
            while let line = try reader.next() {
                let trimmed = line.hasSuffix("\r") ? String(line.dropLast()) : line
                if trimmed.trimmingCharacters(in: .whitespaces).isEmpty { continue }
                let file = trimmed.firstIndex(of: "\t").map { String(trimmed[..<$0]) } ?? trimmed
                if VideoReader.hasVideoExtension(file) {
                    inputs.videos.append(file)
                    continue
                }
                if let tab = trimmed.firstIndex(of: "\t") {
                    return EmbeddingInput(path: String(trimmed[..<tab]), caption: String(trimmed[trimmed.index(after: tab)...]))
                }
                return EmbeddingInput(path: trimmed)
            }
            return nil
        }
    }

    /// The images under `folder` (recursive, sorted, hidden directories skipped), each with the text of a
    /// same-named `.txt` beside it as caption when there is one; its videos, sorted, in `videos`.
    public static func folder(_ folder: String) throws(EmbeddingJobError) -> EmbeddingInputs {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDir), isDir.boolValue else {
            throw EmbeddingJobError("\(folder): not a folder")
        }
        // Paths only (a few hundred bytes each); the images are read as the job reaches them.
        var paths: [String] = []
        var videos: [String] = []
        var pending = [folder]
        while let dir = pending.popLast() {
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { continue }
            for name in names.sorted() where !name.hasPrefix(".") {
                let path = dir + "/" + name
                var sub: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path, isDirectory: &sub) else { continue }
                if sub.boolValue { pending.append(path) } else if ImageFormat.hasImageExtension(name) { paths.append(path) }
                else if VideoReader.hasVideoExtension(name) { videos.append(path) }
            }
        }
        paths.sort()
        var i = 0
        return EmbeddingInputs(description: folder, videos: videos.sorted()) { (_) throws(EmbeddingJobError) -> EmbeddingInput? in
            guard i < paths.count else { return nil }
            defer { i += 1 }
            let path = paths[i]
            let txt = (path as NSString).deletingPathExtension + ".txt"
            // Read to the caption limit (a 200 MB .txt took 7 GB to tokenize); one past it, or not UTF-8, fails its
            // input rather than being embedded as an empty caption.
            var input = EmbeddingInput(path: path)
            do throws(FileError) {
                let bytes = try RegularFile.contents(of: txt, limit: maximumCaptionBytes)
                if let text = String(validating: bytes, as: UTF8.self) {
                    input.caption = text.trimmingCharacters(in: .whitespacesAndNewlines)
                } else {
                    input.problem = "\(txt): the caption is not UTF-8 text"
                }
            } catch {
                if error.problem != .noSuchFile { input.problem = error.description }
            }
            return input
        }
    }
}

/// Reads lines from a file descriptor in 64 KiB chunks.
final class LineReader {
    let fd: Int32, name: String, closes: Bool
    private var buffer: [UInt8] = []
    private var start = 0
    private var eof = false
    private var number = 0
    static let maxLine = 64 << 10

    init(fd: Int32, name: String, closes: Bool) { (self.fd, self.name, self.closes) = (fd, name, closes) }
    deinit { if closes { close(fd) } }

    func next() throws(EmbeddingJobError) -> String? {
        while true {
            if let nl = buffer[start...].firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[start..<nl], as: UTF8.self)
                start = nl + 1
                number += 1
                return line
            }
            if buffer.count - start > Self.maxLine {
                throw EmbeddingJobError("\(name): line \(number + 1) is longer than \(Self.maxLine) bytes; not an input list")
            }
            if eof {
                guard start < buffer.count else { return nil }
                let line = String(decoding: buffer[start...], as: UTF8.self)
                start = buffer.count
                number += 1
                return line
            }
            buffer.removeFirst(start)
            start = 0
            var chunk = [UInt8](repeating: 0, count: 64 << 10)
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw EmbeddingJobError("\(name): cannot read: \(String(cString: strerror(errno)))")
            }
            if n == 0 { eof = true } else { buffer += chunk[0..<n] }
        }
    }
}

/// What an embedding job did.
public struct EmbeddingReport: Sendable {
    /// Inputs this shard took.
    public var taken = 0
    /// Rows written.
    public var embedded = 0
    /// Inputs that could not be read or decoded, with the reason (recorded in `metadata/failed_{N}.jsonl`).
    public var failed: [(path: String, reason: String)] = []
    public var seconds = 0.0
}

/// Embeds a stream of inputs into one clip-retrieval partition: batches decoded on all cores while the model
/// encodes the previous one, L2-normalised image (and, for captioned inputs, text) embeddings appended as they are
/// made, the partition renamed into place at the end. Memory holds two batches, whatever the input size.
public struct EmbeddingJob {
    public let pipeline: CLIPPipeline
    public var batchSize = 64

    public init(pipeline: CLIPPipeline) { self.pipeline = pipeline }

    /// Runs the job over `inputs` (the `shard`'s share) into partition `part` of `directory`.
    public func run(_ inputs: EmbeddingInputs, shard: Shard?, directory: String, part: Int, withText: Bool,
                    progress: ((Int) -> Void)? = nil) throws(EmbeddingJobError) -> EmbeddingReport {
        let start = Date()
        var report = EmbeddingReport()
        let writer = try RetrievalPartWriter(directory: directory, part: part,
                                             dimension: pipeline.model.configuration.embedDim, withText: withText)
        var position = 0
        func nextBatch() throws(EmbeddingJobError) -> [EmbeddingInput] {
            var batch: [EmbeddingInput] = []
            while batch.count < max(batchSize, 1), let input = try inputs.read() {
                defer { position += 1 }
                if shard?.takes(position) ?? true { batch.append(input) }
            }
            return batch
        }
        var pending = Self.prepareInBackground(try nextBatch(), preprocessor: pipeline.preprocessor)
        while let current = pending {
            let prepared = current.wait()
            let following = try nextBatch()
            pending = Self.prepareInBackground(following, preprocessor: pipeline.preprocessor)
            report.taken += prepared.count
            let good = prepared.filter { $0.pixels != nil }
            for p in prepared where p.pixels == nil { report.failed.append((p.input.path, p.error ?? "unreadable")) }
            guard !good.isEmpty else { continue }
            let r = pipeline.preprocessor.resolution
            let images: [Float], texts: [Float]?
            do {
                images = l2Normalized(try pipeline.model.encodeImage(
                    Tensor(uncheckedShape: [good.count, 3, r, r], scalars: good.flatMap { $0.pixels! }))).scalars
                texts = withText ? try pipeline.textEmbeddings(good.map { $0.input.caption ?? "" }, truncate: true).scalars : nil
            } catch {
                _ = pending?.wait()
                throw EmbeddingJobError("cannot embed the batch starting with \(good[0].input.path): \(error)")
            }
            let rows: [[String: Any]] = good.map { p in
                var row: [String: Any] = ["image_path": p.input.path]
                if withText { row["caption"] = p.input.caption ?? "" }
                return row
            }
            try writer.append(imageEmbeddings: images, textEmbeddings: texts, metadata: rows)
            report.embedded += good.count
            progress?(report.taken)
        }
        try writeFailures(report.failed, directory: directory, part: part)
        try writePreprocessing(directory: directory, part: part)
        try writer.finish()
        report.seconds = Date().timeIntervalSince(start)
        return report
    }

    /// `metadata/preprocessing_{N}.json`: how this partition's images were prepared, which clip-retrieval's layout
    /// does not record: `{"exif_orientation": true}` when they were turned by their EXIF orientation, so that
    /// `clip index import` files the embeddings under the matching model entry.
    private func writePreprocessing(directory: String, part: Int) throws(EmbeddingJobError) {
        let path = "\(directory)/metadata/preprocessing_\(part).json"
        let text = "{\"exif_orientation\": \(pipeline.preprocessor.applyEXIFOrientation)}\n"
        do { try OutputFile.write(Array(text.utf8), to: path) } catch {
            throw EmbeddingJobError("\(path): cannot write (\(error.reason))")
        }
    }

    /// `metadata/failed_{N}.jsonl`: the inputs left out, with why (always written, so a partition's record of its
    /// failures is as whole as its rows).
    private func writeFailures(_ failed: [(path: String, reason: String)], directory: String, part: Int) throws(EmbeddingJobError) {
        var lines = ""
        for (path, reason) in failed {
            let data = (try? JSONSerialization.data(withJSONObject: ["image_path": path, "error": reason], options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
            lines += String(decoding: data, as: UTF8.self) + "\n"
        }
        let path = "\(directory)/metadata/failed_\(part).jsonl"
        let temporary = "\(directory)/metadata/.failed_\(part).jsonl.\(getpid()).tmp"
        do {
            try Data(lines.utf8).write(to: URL(fileURLWithPath: temporary))
        } catch {
            throw EmbeddingJobError("\(temporary): cannot write (\(error.localizedDescription))")
        }
        guard rename(temporary, path) == 0 else { throw EmbeddingJobError("\(path): cannot rename into place") }
    }

    struct Prepared: Sendable {
        var input: EmbeddingInput
        var pixels: [Float]?
        var error: String?
    }

    /// Reads and preprocesses a batch on all cores, on another thread; nil for an empty batch.
    static func prepareInBackground(_ batch: [EmbeddingInput], preprocessor: ImagePreprocessor) -> BackgroundWork<[Prepared]>? {
        guard !batch.isEmpty else { return nil }
        return BackgroundWork {
            var out = batch.map { Prepared(input: $0) }
            out.withUnsafeMutableBufferPointer { o in
                let base = o.baseAddress!
                parallelFor(batch.count) { i in
                    do {
                        if let problem = batch[i].problem { throw EmbeddingJobError(problem) }
                        if let m = batch[i].member {
                            guard m.size <= 64 << 20 else { throw EmbeddingJobError("\(batch[i].path): image of \(m.size) bytes") }
                            let bytes = try RegularFile(path: m.tar).read(at: m.offset, count: m.size)
                            base[i].pixels = try preprocessor.pixels(encoded: bytes, name: batch[i].path)
                        } else {
                            base[i].pixels = try preprocessor.pixels(file: batch[i].path)
                        }
                    } catch {
                        base[i].error = "\(error)"
                    }
                }
            }
            return out
        }
    }
}
