import CLIPFiles
import CLIPImage

/// One webdataset tar shard as img2dataset writes it: members `key.jpg` (or any image extension the decoders read)
/// with `key.txt` (the caption) and `key.json` beside them. Only the headers are read; images and captions are read
/// by offset when wanted.
package struct WebDatasetShard: Sendable {
    /// One image member and the caption stored under its key, if any.
    package struct Sample: Sendable {
        package var key: String
        package var image: TarArchive.Member
        package var caption: TarArchive.Member?
    }

    /// The largest image member read (img2dataset's images are a few hundred kB).
    package static let maxImageBytes = 64 << 20

    /// The shard file.
    package let file: RegularFile
    /// One image member per key (the last stored under it), in the order keys first appear.
    package let samples: [Sample]
    /// Caption members whose key has no image.
    package let loneCaptions: Int

    /// Indexes the shard at `path`.
    package init(path: String) throws(FileError) {
        try self.init(file: try RegularFile(path: path))
    }

    /// Indexes an opened shard.
    package init(file: RegularFile) throws(FileError) {
        self.file = file
        // One sample per key: a later member under a key replaces an earlier one (as tar extracts it: the last
        // copy of a name wins) but keeps the key's first place, so a key is never trained on or embedded twice.
        var images: [(key: String, member: TarArchive.Member)] = []
        var imageIndex: [String: Int] = [:]
        var captions: [String: TarArchive.Member] = [:]
        for m in try TarArchive.members(of: file) {
            guard let (key, ext) = m.sample else { continue }
            if ImageFormat.fileExtensions.contains(ext) {
                if let i = imageIndex[key] { images[i].member = m } else {
                    imageIndex[key] = images.count
                    images.append((key, m))
                }
            }
            if ext == "txt" { captions[key] = m }
        }
        samples = images.map { Sample(key: $0.key, image: $0.member, caption: captions[$0.key]) }
        let keys = Set(images.map(\.key))
        loneCaptions = captions.keys.filter { !keys.contains($0) }.count
    }

    /// What errors call a member: `shard.tar:member-name`.
    package func name(_ member: TarArchive.Member) -> String { "\(file.path):\(member.name)" }

    /// The caption of `sample` under the one caption rule (`Captions`): nil when it has none.
    package func caption(_ sample: Sample) -> Result<String?, CaptionError> {
        guard let c = sample.caption else { return .success(nil) }
        return Captions.read(file, offset: c.offset, size: c.size, name: name(c)).map { $0 }
    }
}
