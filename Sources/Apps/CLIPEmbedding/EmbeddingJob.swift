#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLIPData
import CLIPFiles
import CLIPImage
import CLIPKit
import CLIPTensor
import Foundation

/// One input of an embedding job: an image file and, optionally, its caption.
package struct EmbeddingInput: Sendable, Equatable {
    /// The image's path; for a tar member, `shard.tar:member-name`.
    package var path: String
    package var caption: String?
    /// Where a tar member's bytes are.
    package var member: TarMember?
    /// Why the input is recorded as failed without being read (a caption past the limit), or nil.
    package var problem: String?

    package struct TarMember: Sendable, Equatable {
        package var tar: String
        package var offset: Int
        package var size: Int
    }

    package init(path: String, caption: String? = nil, member: TarMember? = nil) {
        (self.path, self.caption, self.member) = (path, caption, member)
    }
}

/// Which inputs this worker takes: `index` of `count` (counted from 1, as `--shard I/N`), every `count`-th input
/// from the `index`-th on, so no worker needs the total.
package struct Shard: Sendable, Equatable, CustomStringConvertible {
    package var index: Int
    package var count: Int

    package init(index: Int, count: Int) throws(EmbeddingJobError) {
        guard count >= 1, index >= 1, index <= count else {
            throw EmbeddingJobError.shard("shard \(index)/\(count): I must be between 1 and N (shards are counted from 1)")
        }
        (self.index, self.count) = (index, count)
    }

    /// "I/N".
    package init(parsing text: String) throws(EmbeddingJobError) {
        let parts = text.split(separator: "/")
        guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]) else {
            throw EmbeddingJobError.shard("--shard '\(text)': expected I/N, for example 3/10")
        }
        try self.init(index: i, count: n)
    }

    /// The shard the scheduler says this process is: Slurm's array task id and count, or a Kubernetes Indexed
    /// Job's completion index (counted from 0) with the count in `CLIP_SHARD_COUNT` (Kubernetes does not pass it).
    /// Nil when none is set (the whole input).
    package static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws(EmbeddingJobError) -> Shard? {
        if let id = env["SLURM_ARRAY_TASK_ID"], let count = env["SLURM_ARRAY_TASK_COUNT"] {
            guard let i = Int(id), let n = Int(count) else {
                throw EmbeddingJobError.shard("SLURM_ARRAY_TASK_ID=\(id), SLURM_ARRAY_TASK_COUNT=\(count): not whole numbers")
            }
            // Slurm arrays usually count from 0 (--array=0-9) but may start at 1 (--array=1-10).
            let minimum = Int(env["SLURM_ARRAY_TASK_MIN"] ?? "0") ?? 0
            return try Shard(index: i - minimum + 1, count: n)
        }
        if let id = env["JOB_COMPLETION_INDEX"] {
            guard let i = Int(id), let n = Int(env["CLIP_SHARD_COUNT"] ?? "") else {
                throw EmbeddingJobError.shard("JOB_COMPLETION_INDEX=\(id) needs CLIP_SHARD_COUNT (the Job's completions) as a whole number")
            }
            return try Shard(index: i + 1, count: n)
        }
        return nil
    }

    package var description: String { "\(index)/\(count)" }

    /// Whether the input at `position` (from 0) is this shard's.
    package func takes(_ position: Int) -> Bool { position % count == index - 1 }
}

/// Inputs read one at a time, so a list of millions costs no memory: lines of a file or standard input (`path`
/// or `path<TAB>caption`), the images of a folder tree (captions from same-named `.txt` files), or the members of
/// webdataset tar shards (`tars(_:)`).
package final class EmbeddingInputs {
    private let next: (EmbeddingInputs) throws(EmbeddingJobError) -> EmbeddingInput?
    package let description: String
    /// The videos met so far (a folder's all at once, a list's as its lines are read), for `VideoEmbeddingJob`:
    /// they are not image inputs.
    package fileprivate(set) var videos: [String] = []

    init(description: String, videos: [String] = [], next: @escaping (EmbeddingInputs) throws(EmbeddingJobError) -> EmbeddingInput?) {
        (self.description, self.videos, self.next) = (description, videos, next)
    }

    /// The next image input, or nil at the end.
    package func read() throws(EmbeddingJobError) -> EmbeddingInput? { try next(self) }

    /// Lines of `path` ("-": standard input). Relative image paths are relative to the current directory; blank
    /// lines are skipped; a line over 64 KiB is an error naming its number.
    package static func list(_ path: String) throws(EmbeddingJobError) -> EmbeddingInputs {
        let fd: Int32
        if path == "-" { fd = 0 } else {
            fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw EmbeddingJobError.input(path: path, reason: "cannot open the input list: \(String(cString: strerror(errno)))") }
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

    /// The images under `folder` (`FolderWalk`'s rules: recursive, sorted, hidden files and directories skipped),
    /// each with the caption beside it when there is one (`Captions`' rule); its videos, sorted, in `videos`.
    package static func folder(_ folder: String) throws(EmbeddingJobError) -> EmbeddingInputs {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDir), isDir.boolValue else {
            throw EmbeddingJobError.input(path: folder, reason: "not a folder")
        }
        // Paths only (a few hundred bytes each); the images are read as the job reaches them.
        var walk = FolderWalk()
        let found = walk.files(under: folder) { ImageFormat.hasImageExtension($0) || VideoReader.hasVideoExtension($0) }
        let paths = found.map(\.path).filter(ImageFormat.hasImageExtension)
        let videos = found.map(\.path).filter { !ImageFormat.hasImageExtension($0) }
        var i = 0
        return EmbeddingInputs(description: folder, videos: videos) { (_) throws(EmbeddingJobError) -> EmbeddingInput? in
            guard i < paths.count else { return nil }
            defer { i += 1 }
            var input = EmbeddingInput(path: paths[i])
            // A caption past the limit, or not UTF-8, fails its input rather than being embedded as an empty caption.
            switch Captions.read(forImage: paths[i]) {
            case .success(let caption): input.caption = caption
            case .failure(let error): input.problem = error.description
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
                throw EmbeddingJobError.input(path: name, reason: "line \(number + 1) is longer than \(Self.maxLine) bytes; not an input list")
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
                throw EmbeddingJobError.input(path: name, reason: "cannot read: \(String(cString: strerror(errno)))")
            }
            if n == 0 { eof = true } else { buffer += chunk[0..<n] }
        }
    }
}

/// What an embedding job did.
package struct EmbeddingReport: Sendable {
    /// Inputs this shard took.
    package var taken = 0
    /// Rows written.
    package var embedded = 0
    /// Inputs that could not be read or decoded, with the reason (recorded in `metadata/failed_{N}.jsonl`).
    package var failed: [(path: String, reason: String)] = []
    package var seconds = 0.0
}

/// Embeds a stream of inputs into one clip-retrieval partition: batches decoded on all cores while the model
/// encodes the previous one, L2-normalised image (and, for captioned inputs, text) embeddings appended as they are
/// made, the partition renamed into place at the end. Memory holds two batches, whatever the input size.
package struct EmbeddingJob {
    package let pipeline: CLIPPipeline
    package var batchSize = 64

    package init(pipeline: CLIPPipeline) { self.pipeline = pipeline }

    /// Runs the job over `inputs` (the `shard`'s share) into partition `part` of `directory`.
    package func run(_ inputs: EmbeddingInputs, shard: Shard?, directory: String, part: Int, withText: Bool,
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
        let encoder = ImageBatchEncoder(pipeline: pipeline)
        var pending = Self.prepareInBackground(try nextBatch(), encoder: encoder)
        while let current = pending {
            let prepared = current.wait()
            let following = try nextBatch()
            pending = Self.prepareInBackground(following, encoder: encoder)
            report.taken += prepared.count
            var good = prepared.filter { $0.pixels != nil }
            for p in prepared where p.pixels == nil { report.failed.append((p.input.path, p.error ?? "unreadable")) }
            // One image the model refuses fails alone; the rest of its batch is kept.
            let outcomes = encoder.embeddingsPerImage(pixels: good.map { $0.pixels! })
            var images: [Float] = []
            var kept: [Prepared] = []
            for (p, outcome) in zip(good, outcomes) {
                switch outcome {
                case .success(let row): images += row; kept.append(p)
                case .failure(let error): report.failed.append((p.input.path, "\(p.input.path): \(error)"))
                }
            }
            good = kept
            guard !good.isEmpty else { continue }
            let texts: [Float]?
            do {
                texts = withText ? try pipeline.textEmbeddings(good.map { $0.input.caption ?? "" }, truncate: true).scalars : nil
            } catch {
                _ = pending?.wait()
                throw EmbeddingJobError.model("cannot embed the captions of the batch starting with \(good[0].input.path): \(error)")
            }
            let rows = good.map { RetrievalMetadata(imagePath: $0.input.path, caption: withText ? $0.input.caption ?? "" : nil) }
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
            throw EmbeddingJobError.output(path: path, reason: "cannot write (\(error.reason))")
        }
    }

    /// `metadata/failed_{N}.jsonl`: the inputs left out, with why (always written, so a partition's record of its
    /// failures is as whole as its rows).
    private func writeFailures(_ failed: [(path: String, reason: String)], directory: String, part: Int) throws(EmbeddingJobError) {
        struct Failure: Encodable { var image_path: String, error: String }
        try writeFailureLines(failed.map { Failure(image_path: $0.path, error: $0.reason) }, to: "\(directory)/metadata/failed_\(part).jsonl")
    }

    struct Prepared: Sendable {
        var input: EmbeddingInput
        var pixels: [Float]?
        var error: String?
    }

    /// Reads and preprocesses a batch on all cores, on another thread; nil for an empty batch. An input with a
    /// problem of its own (a caption past the limit) is not read.
    static func prepareInBackground(_ batch: [EmbeddingInput], encoder: ImageBatchEncoder) -> BackgroundWork<[Prepared]>? {
        guard !batch.isEmpty else { return nil }
        return BackgroundWork {
            let readable = batch.indices.filter { batch[$0].problem == nil }
            let sources = readable.map { i -> ImageSource in
                guard let m = batch[i].member else { return .file(batch[i].path) }
                return .member(file: m.tar, offset: m.offset, size: m.size, name: batch[i].path)
            }
            var out = batch.map { Prepared(input: $0, error: $0.problem) }
            for (i, result) in zip(readable, encoder.pixels(sources)) {
                switch result {
                case .success(let pixels): out[i].pixels = pixels
                case .failure(let error): out[i].error = "\(error)"
                }
            }
            return out
        }
    }
}

/// A job's record of the inputs it left out: one JSON line each, written atomically even when there are none, so that
/// the file says what this run could not do and nothing of an earlier run.
func writeFailureLines<T: Encodable>(_ records: [T], to path: String) throws(EmbeddingJobError) {
    let lines: [UInt8]
    do { lines = try JSONOutput.lines(records) } catch { throw .internal("a failure record is not JSON: \(error)") }
    do { try OutputFile.write(lines, to: path) } catch {
        throw .output(path: path, reason: "cannot write (\(error.reason)); is the disk full?")
    }
}
