import CLIPFiles
import Foundation

/// Captions as image datasets store them: `photo.txt` beside `photo.jpg` in a folder, `key.txt` beside `key.jpg` in a
/// webdataset shard. One rule for every reader (training, `clip embed`, evaluation): a caption is read up to
/// `maximumBytes` (one byte past it fails its example, named: a 200 MB .txt took 7 GB to tokenize), must be UTF-8
/// text, and is trimmed of surrounding white space.
package enum Captions {
    /// The longest caption read, in bytes (64 KiB; CLIP's context holds about 300 bytes of English).
    package static var maximumBytes: Int { maximumCaptionBytes }

    /// The caption file beside an image: its path without the extension, then `.txt`.
    package static func path(forImage image: String) -> String { (image as NSString).deletingPathExtension + ".txt" }

    /// The caption beside `image`: nil when there is no caption file; an error naming the file when it cannot be
    /// read, is too long, or is not UTF-8.
    package static func read(forImage image: String) -> Result<String?, CaptionError> {
        let txt = path(forImage: image)
        do throws(FileError) {
            return text(try RegularFile.contents(of: txt, limit: maximumBytes), name: txt).map { $0 }
        } catch {
            if error.problem == .noSuchFile { return .success(nil) }
            return .failure(CaptionError(error.description))
        }
    }

    /// A caption's bytes (`name` says where they are from) as its text.
    package static func text(_ bytes: [UInt8], name: String) -> Result<String, CaptionError> {
        guard bytes.count <= maximumBytes else {
            return .failure(CaptionError("\(name): a caption of \(bytes.count) bytes, more than the \(maximumBytes) read"))
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            return .failure(CaptionError("\(name): the caption is not UTF-8 text"))
        }
        return .success(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// A caption stored in a tar shard: `size` bytes at `offset` of `file`.
    package static func read(_ file: RegularFile, offset: Int, size: Int, name: String) -> Result<String, CaptionError> {
        guard size <= maximumBytes else {
            return .failure(CaptionError("\(name): a caption of \(size) bytes, more than the \(maximumBytes) read"))
        }
        do throws(FileError) { return text(try file.read(at: offset, count: size), name: name) } catch {
            return .failure(CaptionError(error.description))
        }
    }
}

/// Why a caption could not be used; the message names the file.
package struct CaptionError: Error, CustomStringConvertible, Sendable, Equatable {
    package let description: String
    package init(_ description: String) { self.description = description }
}
