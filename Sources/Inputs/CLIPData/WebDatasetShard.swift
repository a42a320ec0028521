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

    /// open_clip's image extensions in the order its webdataset pipeline takes them.
    static let preferredImageExtensions = ["jpg", "png", "jpeg", "webp"]

    /// The largest image member read (img2dataset's images are a few hundred kB).
    package static let maxImageBytes = 64 << 20

    /// The shard file.
    package let file: RegularFile
    /// One image member per key (open_clip's preferred extension, the last copy of it), in the order keys first appear.
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
        // One sample per key, in the order keys first appear, so a key is never trained on or embedded twice. Of
        // several images under a key, open_clip's choice (`to_tuple("jpg;png;jpeg;webp", …)`: the first of those
        // extensions, then any other the decoders read); of several copies of one name, the last (as tar extracts it).
        var images: [(key: String, member: TarArchive.Member, preference: Int)] = []
        var imageIndex: [String: Int] = [:]
        var captions: [String: TarArchive.Member] = [:]
        for m in try TarArchive.members(of: file) {
            // webdataset's key needs a name before the extension: a member called ".jpg" is no sample.
            guard let (key, ext) = m.sample, !key.hasSuffix("/") else { continue }
            if ImageFormat.fileExtensions.contains(ext) {
                let preference = Self.preferredImageExtensions.firstIndex(of: ext) ?? Self.preferredImageExtensions.count
                if let i = imageIndex[key] {
                    if preference <= images[i].preference { images[i].member = m; images[i].preference = preference }
                } else {
                    imageIndex[key] = images.count
                    images.append((key, m, preference))
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
