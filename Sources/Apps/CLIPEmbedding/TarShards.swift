import CLIPData
import CLIPFiles
import CLIPImage
import Foundation

/// webdataset tar shards as img2dataset writes them: `key.jpg` (or .png, .webp) with an optional `key.txt` caption
/// and `key.json` beside it. A shard's headers are read once (the members of one shard, not of all, are held); the
/// images are read by offset as the job reaches them.
extension EmbeddingInputs {
    /// The image members of `shards` in stored order, shard after shard, each with its `.txt` caption when present.
    package static func tars(_ shards: [String]) throws(EmbeddingJobError) -> EmbeddingInputs {
        guard !shards.isEmpty else { throw EmbeddingJobError.input(path: "--input-tar", reason: "no tar shards given") }
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

    /// One shard's image members with their captions (`Captions`' rule).
    static func members(of path: String) throws(EmbeddingJobError) -> [EmbeddingInput] {
        let shard: WebDatasetShard
        do { shard = try WebDatasetShard(path: path) } catch { throw .file(error) }
        return shard.samples.map { sample in
            var input = EmbeddingInput(path: shard.name(sample.image),
                                       member: .init(tar: path, offset: sample.image.offset, size: sample.image.size))
            // Past the caption limit, or not UTF-8, the input fails, named, rather than being embedded without it.
            switch shard.caption(sample) {
            case .success(let caption): input.caption = caption
            case .failure(let error): input.problem = error.description
            }
            return input
        }
    }
}
