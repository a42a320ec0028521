import CLIPFiles
import CLIPImage
import Foundation

/// webdataset tar shards as img2dataset writes them: members `key.jpg` (or .png/.webp) and `key.txt` side by side.
/// The shards are indexed once (headers only); examples are read by offset, so any position is one seek away.
public struct WebDataset: TrainingData {
    struct Member: Sendable {
        var shard: Int
        var image: (offset: Int, size: Int, name: String)
        var caption: (offset: Int, size: Int)
    }

    let shards: [RegularFile]
    let members: [Member]
    public let description: String
    /// Images without a caption member (or captions without an image), left out.
    public let unpaired: Int

    public var count: Int? { members.count }

    /// `paths`: shard files (`.tar`); a folder stands for every `.tar` in it, sorted.
    public init(shards paths: [String]) throws(DataError) {
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
        guard !files.isEmpty else { throw DataError("\(paths.joined(separator: ", ")): no .tar shards") }
        var opened: [RegularFile] = [], members: [Member] = [], unpaired = 0
        for (s, path) in files.enumerated() {
            let file: RegularFile
            do { file = try RegularFile(path: path) } catch { throw DataError(error.description) }
            opened.append(file)
            let (found, lone) = try Self.index(file, shard: s)
            members += found
            unpaired += lone
        }
        guard !members.isEmpty else { throw DataError("\(files.joined(separator: ", ")): no image with a .txt caption in the shards") }
        (shards, self.members, self.unpaired) = (opened, members, unpaired)
        description = "\(files.count) webdataset shard\(files.count == 1 ? "" : "s"): \(members.count) pairs"
    }

    /// The pairs of one shard, in stored order, and how many members had no partner.
    static func index(_ file: RegularFile, shard: Int) throws(DataError) -> ([Member], Int) {
        var images: [String: (Int, Int, String)] = [:], captions: [String: (Int, Int)] = [:], order: [String] = []
        let stored: [TarArchive.Member]
        do { stored = try TarArchive.members(of: file) } catch { throw DataError(error.description) }
        for m in stored {
            guard let (key, ext) = m.sample else { continue }
            if ImageFormat.fileExtensions.contains(ext) { if images[key] == nil { order.append(key) }; images[key] = (m.offset, m.size, m.name) }
            if ext == "txt" { captions[key] = (m.offset, m.size) }
        }
        var members: [Member] = []
        for key in order {
            guard let image = images[key], let caption = captions[key] else { continue }
            members.append(Member(shard: shard, image: image, caption: caption))
        }
        return (members, images.count + captions.count - 2 * members.count)
    }

    public func example(_ index: Int, preprocessor: ImagePreprocessor) -> Result<(pixels: [Float], caption: String), DataError> {
        let m = members[index], file = shards[m.shard], name = "\(file.path):\(m.image.name)"
        do {
            guard m.caption.size <= maximumCaptionBytes else {
                return .failure(DataError("\(name): a caption of \(m.caption.size) bytes, more than the \(maximumCaptionBytes) read"))
            }
            let caption = String(decoding: try file.read(at: m.caption.offset, count: m.caption.size), as: UTF8.self)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            guard !caption.isEmpty else { return .failure(DataError("\(name): empty caption")) }
            guard m.image.size <= 64 << 20 else { return .failure(DataError("\(name): image of \(m.image.size) bytes")) }
            let bytes = try file.read(at: m.image.offset, count: m.image.size)
            return .success((try preprocessor.pixels(try decodeImage(bytes, name: name, maxPixels: preprocessor.maxPixels), name: name), caption))
        } catch let e as FileError {
            return .failure(DataError(e.description))
        } catch let e as ImageError {
            return .failure(DataError(e.description))
        } catch {
            return .failure(DataError("\(name): \(error)"))
        }
    }
}
