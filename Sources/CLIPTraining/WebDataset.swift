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
        var offset = 0
        while offset + 512 <= file.size {
            let header: [UInt8]
            do { header = try file.read(at: offset, count: 512) } catch { throw DataError(error.description) }
            if header.allSatisfy({ $0 == 0 }) { break }  // end-of-archive blocks
            let name = cString(header[0..<100]), prefix = cString(header[345..<500])
            guard let size = octal(header[124..<136]) else {
                throw DataError("\(file.path): the tar header at offset \(offset) has an invalid size field")
            }
            let data = offset + 512
            guard size <= file.size - data else {
                throw DataError("\(file.path): member '\(name)' at offset \(offset) runs past the end of the shard (\(size) bytes)")
            }
            let full = prefix.isEmpty ? name : "\(prefix)/\(name)"
            if header[156] == 48 || header[156] == 0 {  // regular file
                let base = (full as NSString).lastPathComponent, dir = (full as NSString).deletingLastPathComponent
                if let dot = base.firstIndex(of: ".") {
                    let key = dir + "/" + base[..<dot], ext = base[base.index(after: dot)...].lowercased()
                    if FileData.imageExtensions.contains(ext) { if images[key] == nil { order.append(key) }; images[key] = (data, size, full) }
                    if ext == "txt" { captions[key] = (data, size) }
                }
            }
            offset = data + (size + 511) / 512 * 512
        }
        var members: [Member] = []
        for key in order {
            guard let image = images[key], let caption = captions[key] else { continue }
            members.append(Member(shard: shard, image: image, caption: caption))
        }
        return (members, images.count + captions.count - 2 * members.count)
    }

    static func cString(_ bytes: ArraySlice<UInt8>) -> String {
        String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }

    static func octal(_ bytes: ArraySlice<UInt8>) -> Int? {
        var value = 0, digits = 0
        for b in bytes {
            if b == 0 || b == 32 { if digits > 0 { break } else { continue } }
            guard b >= 48, b <= 55, value < 1 << 40 else { return nil }
            value = value * 8 + Int(b - 48)
            digits += 1
        }
        return digits > 0 ? value : nil
    }

    public func example(_ index: Int, preprocessor: ImagePreprocessor) -> Result<(pixels: [Float], caption: String), DataError> {
        let m = members[index], file = shards[m.shard], name = "\(file.path):\(m.image.name)"
        do {
            guard m.caption.size <= 1 << 20 else { return .failure(DataError("\(name): caption of \(m.caption.size) bytes")) }
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
