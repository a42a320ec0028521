import CLIPFiles
import CLIPImage
import Foundation

/// webdataset tar shards as img2dataset writes them: `key.jpg` (or .png, .webp) with an optional `key.txt` caption
/// and `key.json` beside it. A shard's headers are read once (the members of one shard, not of all, are held); the
/// images are read by offset as the job reaches them.
extension EmbeddingInputs {
    /// The image members of `shards` in stored order, shard after shard, each with its `.txt` caption when present.
    public static func tars(_ shards: [String]) throws(EmbeddingJobError) -> EmbeddingInputs {
        guard !shards.isEmpty else { throw EmbeddingJobError("no tar shards given") }
        var shardIndex = 0
        var members: [EmbeddingInput] = []
        var position = 0
        return EmbeddingInputs(description: "\(shards.count) tar shard\(shards.count == 1 ? "" : "s")") { (_) throws(EmbeddingJobError) -> EmbeddingInput? in
            while position >= members.count {
                guard shardIndex < shards.count else { return nil }
                members = try Self.members(of: shards[shardIndex])
                shardIndex += 1
                position = 0
            }
            defer { position += 1 }
            return members[position]
        }
    }

    /// One shard's image members with their captions.
    static func members(of path: String) throws(EmbeddingJobError) -> [EmbeddingInput] {
        let file: RegularFile, stored: [TarArchive.Member]
        do {
            file = try RegularFile(path: path)
            stored = try TarArchive.members(of: file)
        } catch { throw EmbeddingJobError(error.description) }
        var images: [(key: String, member: TarArchive.Member)] = []
        var captions: [String: TarArchive.Member] = [:]
        for m in stored {
            guard let (key, ext) = m.sample else { continue }
            if ImageFormat.fileExtensions.contains(ext) { images.append((key, m)) }
            if ext == "txt" { captions[key] = m }
        }
        return try images.map { (i) throws(EmbeddingJobError) -> EmbeddingInput in
            var input = EmbeddingInput(path: "\(path):\(i.member.name)",
                                       member: .init(tar: path, offset: i.member.offset, size: i.member.size))
            if let c = captions[i.key] {
                // Past the caption limit the input fails, named, rather than being embedded as an empty caption.
                guard c.size <= maximumCaptionBytes else {
                    input.problem = "\(path):\(c.name): a caption of \(c.size) bytes, more than the \(maximumCaptionBytes) read"
                    return input
                }
                do {
                    input.caption = String(decoding: try file.read(at: c.offset, count: c.size), as: UTF8.self)
                        .trimmingCharacters(in: .whitespacesAndNewlines)
                } catch { throw EmbeddingJobError("\(error)") }
            }
            return input
        }
    }
}
