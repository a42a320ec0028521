import CLIPData
import CLIPFiles
import CLIPImage
import Foundation

/// webdataset tar shards as img2dataset writes them: members `key.jpg` (or .png/.webp) and `key.txt` side by side.
/// The shards are indexed once (headers only); examples are read by offset, so any position is one seek away.
package struct WebDataset: TrainingData {
    struct Member: Sendable {
        var shard: Int
        var sample: WebDatasetShard.Sample
    }

    let shards: [WebDatasetShard]
    let members: [Member]
    package let description: String
    /// Images without a caption member (or captions without an image), left out.
    package let unpaired: Int

    package var count: Int? { members.count }

    /// `paths`: shard files (`.tar`); a folder stands for every `.tar` in it, sorted.
    package init(shards paths: [String]) throws(DataError) {
        var files: [String] = []
        for path in paths {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
                let listed = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { $0.hasSuffix(".tar") }.sorted()
                files += listed.map { "\(path)/\($0)" }
            } else {
                files.append(path)
            }
        }
        guard !files.isEmpty else { throw DataError.dataset(subject: paths.joined(separator: ", "), reason: "no .tar shards") }
        var opened: [WebDatasetShard] = [], members: [Member] = [], unpaired = 0
        for (s, path) in files.enumerated() {
            let shard: WebDatasetShard
            do { shard = try WebDatasetShard(path: path) } catch { throw .file(error) }
            opened.append(shard)
            let paired = shard.samples.filter { $0.caption != nil }
            members += paired.map { Member(shard: s, sample: $0) }
            unpaired += shard.samples.count - paired.count + shard.loneCaptions
        }
        guard !members.isEmpty else { throw DataError.dataset(subject: files.joined(separator: ", "), reason: "no image with a .txt caption in the shards") }
        (shards, self.members, self.unpaired) = (opened, members, unpaired)
        description = "\(files.count) webdataset shard\(files.count == 1 ? "" : "s"): \(members.count) pairs"
    }

    package func example(_ index: Int, preprocessor: ImagePreprocessor) -> Result<(pixels: [Float], caption: String), DataError> {
        let m = members[index], shard = shards[m.shard], name = shard.name(m.sample.image)
        let caption: String
        switch shard.caption(m.sample) {
        case .success(let text?): caption = text
        case .success(nil): return .failure(.example(subject: name, reason: "no caption"))
        case .failure(let error): return .failure(.caption(error))
        }
        guard !caption.isEmpty else { return .failure(.example(subject: name, reason: "empty caption")) }
        let image = m.sample.image
        guard image.size <= WebDatasetShard.maxImageBytes else {
            return .failure(.example(subject: name, reason: "image of \(image.size) bytes"))
        }
        do {
            let bytes = try shard.file.read(at: image.offset, count: image.size)
            return .success((try preprocessor.pixels(try decodeImage(bytes, name: name, maxPixels: preprocessor.maxPixels), name: name), caption))
        } catch let e as FileError {
            return .failure(.file(e))
        } catch let e as ImageError {
            return .failure(.image(e))
        } catch {
            return .failure(.example(subject: name, reason: "\(error)"))
        }
    }
}
