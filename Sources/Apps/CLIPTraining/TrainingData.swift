import CLIPData
import CLIPFiles
import CLIPImage
import Foundation

/// Image–caption pairs for training, addressed by position so that a run's data position is one integer.
///
/// Finite sources are read in epochs, each in its own seeded permutation. An example that cannot be read (a
/// damaged image, a missing or empty caption) is `.failure` with a message naming it: the loader skips and counts
/// it, never stops.
package protocol TrainingData: Sendable {
    /// Examples in one epoch, or nil for an endless stream (the synthetic generator).
    var count: Int? { get }
    /// What the data is, for progress lines and checkpoints.
    var description: String { get }
    /// Example `index` (0..<count): pixels [3, R, R] preprocessed for the model, and the caption.
    func example(_ index: Int, preprocessor: ImagePreprocessor) -> Result<(pixels: [Float], caption: String), DataError>
}

/// Why training data, or one example of it, could not be used.
package enum DataError: Error, CustomStringConvertible, Sendable {
    /// The data set as a whole (`subject`: its file, folder or shards) cannot be trained on.
    case dataset(subject: String, reason: String)
    /// One example (`subject`: its image or member) is left out.
    case example(subject: String, reason: String)
    /// A file could not be read.
    case file(FileError)
    /// A caption file or member could not be read.
    case caption(CaptionError)
    /// An image could not be decoded or preprocessed.
    case image(ImageError)
    /// The caption table is malformed.
    case table(TableError)
    /// The captions of a batch could not be tokenized.
    case tokenizer(String)
    /// A failure of this program rather than of its data.
    case `internal`(String)

    package var description: String {
        switch self {
        case .dataset(let subject, let reason), .example(let subject, let reason): return "\(subject): \(reason)"
        case .file(let e): return e.description
        case .caption(let e): return e.description
        case .image(let e): return e.description
        case .table(let e): return e.description
        case .tokenizer(let reason): return "tokenizing captions: \(reason)"
        case .internal(let reason): return "internal: \(reason)"
        }
    }
}

/// The synthetic shapes stream (`SyntheticShapes`), rendered at the model's resolution.
package struct SyntheticData: TrainingData {
    package let generator: SyntheticShapes
    package init(_ generator: SyntheticShapes) { self.generator = generator }
    package var count: Int? { nil }
    package var description: String { "synthetic shapes (\(generator.style.rawValue), \(generator.size) px, seed \(generator.seed))" }

    package func example(_ index: Int, preprocessor: ImagePreprocessor) -> Result<(pixels: [Float], caption: String), DataError> {
        let s = generator.sample(index)
        do {
            let pixels = try preprocessor.pixels(rgb: s.rgb, width: generator.size, height: generator.size, hasAlpha: false,
                                                 name: "synthetic image \(index)")
            return .success((pixels, s.caption))
        } catch {
            return .failure(.image(error))
        }
    }
}

/// Images from files with their captions: a folder of images with same-named `.txt` captions, or open_clip's CSV/TSV.
package struct FileData: TrainingData {
    /// (image path, caption or the caption file to read).
    let items: [(image: String, caption: Caption)]
    package let description: String

    enum Caption: Sendable {
        case text(String)
        case file(String)
    }

    package var count: Int? { items.count }

    /// Every image under `folder` (`FolderWalk`'s rules: recursive, sorted, hidden files and directories skipped)
    /// that has a caption file beside it (`x.jpg` + `x.txt`). Images without a caption are not examples; the count
    /// of them is reported by `skippedWithoutCaption`.
    package init(folder: String) throws(DataError) {
        var walk = FolderWalk()
        let found = walk.files(under: folder) { ImageFormat.hasImageExtension($0) || $0.hasSuffix(".txt") }
        if found.isEmpty, let (path, reason) = walk.unreadable.first { throw DataError.dataset(subject: path, reason: "cannot list the folder (\(reason))") }
        let texts = Set(found.map(\.path).filter { $0.hasSuffix(".txt") }.map { ($0 as NSString).deletingPathExtension })
        let images = found.map(\.path).filter(ImageFormat.hasImageExtension)
        let paired = images.filter { texts.contains(($0 as NSString).deletingPathExtension) }
        guard !paired.isEmpty else {
            throw DataError.dataset(subject: folder, reason: "no image with a caption (.jpg/.png/.webp beside a same-named .txt) among \(images.count) images")
        }
        items = paired.map { ($0, .file(Captions.path(forImage: $0))) }
        skippedWithoutCaption = images.count - paired.count
        description = "\(folder): \(paired.count) captioned images"
    }

    /// Images without a caption file, left out.
    package private(set) var skippedWithoutCaption = 0

    /// open_clip's CSV (comma) or TSV (tab, for `.tsv`) with a header naming `imageKey` and `captionKey` columns.
    /// Relative image paths are taken relative to the table's folder when they do not exist as given.
    package init(table path: String, imageKey: String = "filepath", captionKey: String = "title") throws(DataError) {
        let bytes: [UInt8]
        do { bytes = try RegularFile.contents(of: path, limit: 1 << 30) } catch { throw .file(error) }
        let separator: UInt8 = path.lowercased().hasSuffix(".tsv") ? 9 : 44
        let base = (path as NSString).deletingLastPathComponent
        var header: [String]?, columns = (image: 0, caption: 0)
        var items: [(String, Caption)] = []
        do {
            try DelimitedTable.forEachRow(bytes, separator: separator, name: path, maxFieldBytes: maximumCaptionBytes) { (row, line) throws(TableError) in
                guard let header else {
                    guard let i = row.firstIndex(of: imageKey), let c = row.firstIndex(of: captionKey) else {
                        throw TableError.missingColumns(table: path, header: row, wanted: [imageKey, captionKey], hint: "set them with --csv-image-key / --csv-caption-key")
                    }
                    (header, columns) = (row, (i, c))
                    return
                }
                guard row.count > max(columns.image, columns.caption) else {
                    throw TableError.shortRow(table: path, line: line, fields: row.count, headerFields: header.count)
                }
                var image = row[columns.image]
                if !image.hasPrefix("/"), !FileManager.default.fileExists(atPath: image), !base.isEmpty { image = "\(base)/\(image)" }
                items.append((image, .text(row[columns.caption])))
            }
        } catch {
            throw .table(error)
        }
        guard header != nil else { throw DataError.dataset(subject: path, reason: "the table is empty") }
        guard !items.isEmpty else { throw DataError.dataset(subject: path, reason: "the table has a header but no rows") }
        self.items = items
        description = "\(path): \(items.count) rows"
    }

    package func example(_ index: Int, preprocessor: ImagePreprocessor) -> Result<(pixels: [Float], caption: String), DataError> {
        let (image, caption) = items[index]
        let text: String
        switch caption {
        case .text(let t): text = t
        case .file:
            switch Captions.read(forImage: image) {
            case .success(let caption?): text = caption
            case .success(nil): return .failure(.example(subject: Captions.path(forImage: image), reason: "the caption file is gone"))
            case .failure(let error): return .failure(.caption(error))
            }
        }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else { return .failure(.example(subject: image, reason: "empty caption")) }
        do {
            return .success((try preprocessor.pixels(file: image), trimmed))
        } catch {
            return .failure(.image(error))
        }
    }
}
