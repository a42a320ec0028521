#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLIPFiles
import Foundation

/// Why an embedding job could not read its inputs or write its outputs; the message names the file.
package enum EmbeddingJobError: Error, CustomStringConvertible, Sendable {
    /// The shard this process is asked to take (`--shard`, Slurm's or Kubernetes' variables) is not one.
    case shard(String)
    /// An input (the list, the folder, a tar shard, a video) cannot be used at all.
    case input(path: String, reason: String)
    /// A file could not be read.
    case file(FileError)
    /// A video could not be read, decoded or encoded (the failure names it).
    case video(VideoFrameEncoder.Failure)
    /// An output file or folder cannot be written; what was renamed into place before stays whole.
    case output(path: String, reason: String)
    /// The model refused a batch as a whole.
    case model(String)
    /// A failure of this program rather than of its input.
    case `internal`(String)

    package var description: String {
        switch self {
        case .shard(let reason), .model(let reason): return reason
        case .input(let path, let reason), .output(let path, let reason): return "\(path): \(reason)"
        case .file(let e): return e.description
        case .video(let e): return e.description
        case .internal(let reason): return "internal: \(reason)"
        }
    }
}

/// One output partition in clip-retrieval's layout, written as rows arrive so memory stays flat:
/// `img_emb/img_emb_{N}.npy` (float32 [rows, dim]), `text_emb/text_emb_{N}.npy` when captions are embedded, and
/// `metadata/metadata_{N}.jsonl` (one JSON object per row: `image_path`, `caption`), rows aligned across the three.
///
/// Everything is written to hidden temporary files beside the targets; `finish()` fixes the row count in the .npy
/// headers, syncs, and renames the metadata, the text and then the image embeddings into place. A reader that sees
/// `img_emb_{N}.npy` therefore sees a whole partition, and a task that dies (or is retried) leaves either nothing
/// or the previous complete partition, never half of one.
package final class RetrievalPartWriter {
    package let directory: String
    package let part: Int
    package let dimension: Int
    package let withText: Bool
    package private(set) var rows = 0

    private struct Output {
        let final: String
        let temporary: String
        let handle: FileHandle
    }
    private var images: Output
    private var texts: Output?
    private var metadata: Output
    /// Room for the .npy header so the final row count can be written in place: 128 bytes hold any shape.
    static let headerSize = 128

    package init(directory: String, part: Int, dimension: Int, withText: Bool) throws(EmbeddingJobError) {
        (self.directory, self.part, self.dimension, self.withText) = (directory, part, dimension, withText)
        func open(_ sub: String, _ name: String) throws(EmbeddingJobError) -> Output {
            let folder = directory + "/" + sub
            do { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) } catch {
                throw EmbeddingJobError.output(path: folder, reason: "cannot create (\(error.localizedDescription))")
            }
            let final = folder + "/" + name
            let temporary = folder + "/.\(name).\(getpid()).tmp"
            guard FileManager.default.createFile(atPath: temporary, contents: nil),
                  let handle = FileHandle(forWritingAtPath: temporary) else {
                throw EmbeddingJobError.output(path: temporary, reason: "cannot create: \(String(cString: strerror(errno)))")
            }
            return Output(final: final, temporary: temporary, handle: handle)
        }
        images = try open("img_emb", "img_emb_\(part).npy")
        texts = withText ? try open("text_emb", "text_emb_\(part).npy") : nil
        metadata = try open("metadata", "metadata_\(part).jsonl")
        try write(Data(count: Self.headerSize), to: images)
        if let texts { try write(Data(count: Self.headerSize), to: texts) }
    }

    deinit {
        // Not finished: the temporary files are abandoned work.
        for o in [images, metadata] + (texts.map { [$0] } ?? []) {
            try? o.handle.close()
            unlink(o.temporary)
        }
    }

    private func write(_ data: Data, to output: Output) throws(EmbeddingJobError) {
        do { try output.handle.write(contentsOf: data) } catch {
            throw EmbeddingJobError.output(path: output.temporary, reason: "cannot write (\(error.localizedDescription)); is the disk full?")
        }
    }

    /// Appends rows: `imageEmbeddings` [n, dim] (and `textEmbeddings` [n, dim] when the writer has text) with one
    /// metadata object per row.
    package func append(imageEmbeddings: [Float], textEmbeddings: [Float]?, metadata objects: [RetrievalMetadata]) throws(EmbeddingJobError) {
        let n = objects.count
        guard imageEmbeddings.count == n * dimension, (textEmbeddings?.count ?? n * dimension) == n * dimension else {
            throw EmbeddingJobError.internal("\(n) metadata rows for \(imageEmbeddings.count / max(dimension, 1)) embeddings")
        }
        try write(imageEmbeddings.withUnsafeBytes { Data($0) }, to: images)
        if let texts {
            try write((textEmbeddings ?? [Float](repeating: 0, count: n * dimension)).withUnsafeBytes { Data($0) }, to: texts)
        }
        let lines: [UInt8]
        do { lines = try JSONOutput.lines(objects) } catch { throw EmbeddingJobError.internal("a metadata row is not JSON: \(error)") }
        try write(Data(lines), to: metadata)
        rows += n
    }

    /// The .npy header for `rows` × `dimension` float32, padded to `headerSize` bytes.
    static func npyHeader(rows: Int, dimension: Int) -> Data {
        var dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(rows), \(dimension)), }"
        while 10 + dict.utf8.count + 1 < headerSize { dict += " " }
        dict += "\n"
        var d = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
        let length = UInt16(dict.utf8.count)
        d += Data([UInt8(length & 0xFF), UInt8(length >> 8)])
        d += Data(dict.utf8)
        return d
    }

    /// Temporaries of this partition left by attempts that were killed (`.img_emb_{N}.npy.PID.tmp` whose process is
    /// gone from this host). Another host's attempts cannot be told dead from here and are left.
    private func removeAbandonedTemporaries() {
        for (sub, name) in [("img_emb", "img_emb_\(part).npy"), ("text_emb", "text_emb_\(part).npy"), ("metadata", "metadata_\(part).jsonl")] {
            let folder = directory + "/" + sub
            for file in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [] where file.hasPrefix(".\(name).") && file.hasSuffix(".tmp") {
                let pidText = file.dropFirst(name.count + 2).dropLast(4)
                guard let pid = Int32(pidText), pid != getpid(), kill(pid, 0) == -1, errno == ESRCH else { continue }
                unlink(folder + "/" + file)
            }
        }
    }

    /// Writes the headers, syncs every file and renames them into place (metadata, texts, images last).
    package func finish() throws(EmbeddingJobError) {
        for o in [images] + (texts.map { [$0] } ?? []) {
            do {
                try o.handle.seek(toOffset: 0)
                try o.handle.write(contentsOf: Self.npyHeader(rows: rows, dimension: dimension))
            } catch {
                throw EmbeddingJobError.output(path: o.temporary, reason: "cannot write the header (\(error.localizedDescription))")
            }
        }
        for o in [metadata] + (texts.map { [$0] } ?? []) + [images] {
            do {
                try o.handle.synchronize()
                try o.handle.close()
            } catch {
                throw EmbeddingJobError.output(path: o.temporary, reason: "cannot sync (\(error.localizedDescription)); is the disk full?")
            }
            guard rename(o.temporary, o.final) == 0 else {
                throw EmbeddingJobError.output(path: o.final, reason: "cannot rename into place: \(String(cString: strerror(errno)))")
            }
        }
        removeAbandonedTemporaries()
        // The renames are durable once the folders are synced.
        for sub in ["metadata", "text_emb", "img_emb"] {
            let fd = open(directory + "/" + sub, O_RDONLY)
            if fd >= 0 { fsync(fd); close(fd) }
        }
        images = Output(final: images.final, temporary: "", handle: FileHandle.nullDevice)
        metadata = Output(final: metadata.final, temporary: "", handle: FileHandle.nullDevice)
        texts = nil
    }
}

/// One row of clip-retrieval's `metadata/metadata_{N}.jsonl` (img2dataset's columns); absent fields are left out.
package struct RetrievalMetadata: Codable, Sendable, Equatable {
    package var image_path: String
    package var caption: String?
    package var width: Int?
    package var height: Int?

    package init(imagePath: String, caption: String? = nil, width: Int? = nil, height: Int? = nil) {
        (image_path, self.caption, self.width, self.height) = (imagePath, caption, width, height)
    }
}
