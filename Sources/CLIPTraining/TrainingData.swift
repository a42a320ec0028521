import CLIPFiles
import CLIPImage
import Foundation

/// Image–caption pairs for training, addressed by position so that a run's data position is one integer.
///
/// Finite sources are read in epochs, each in its own seeded permutation. An example that cannot be read (a
/// damaged image, a missing or empty caption) is `.failure` with a message naming it: the loader skips and counts
/// it, never stops.
public protocol TrainingData: Sendable {
    /// Examples in one epoch, or nil for an endless stream (the synthetic generator).
    var count: Int? { get }
    /// What the data is, for progress lines and checkpoints.
    var description: String { get }
    /// Example `index` (0..<count): pixels [3, R, R] preprocessed for the model, and the caption.
    func example(_ index: Int, preprocessor: ImagePreprocessor) -> Result<(pixels: [Float], caption: String), DataError>
}

/// One example that could not be used, and why.
public struct DataError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The synthetic shapes stream (`SyntheticShapes`), rendered at the model's resolution.
public struct SyntheticData: TrainingData {
    public let generator: SyntheticShapes
    public init(_ generator: SyntheticShapes) { self.generator = generator }
    public var count: Int? { nil }
    public var description: String { "synthetic shapes (\(generator.size) px, seed \(generator.seed))" }

    public func example(_ index: Int, preprocessor: ImagePreprocessor) -> Result<(pixels: [Float], caption: String), DataError> {
        let s = generator.sample(index)
        do {
            let pixels = try preprocessor.pixels(rgb: s.rgb, width: generator.size, height: generator.size, hasAlpha: false,
                                                 name: "synthetic image \(index)")
            return .success((pixels, s.caption))
        } catch {
            return .failure(DataError(error.description))
        }
    }
}

/// Images from files with their captions: a folder of images with same-named `.txt` captions, or open_clip's CSV/TSV.
public struct FileData: TrainingData {
    /// (image path, caption or the caption file to read).
    let items: [(image: String, caption: Caption)]
    public let description: String

    enum Caption: Sendable {
        case text(String)
        case file(String)
    }

    public var count: Int? { items.count }

    /// Every image under `folder` (recursively, sorted) that has a caption file beside it (`x.jpg` + `x.txt`).
    /// Images without a caption are not examples; the count of them is reported by `skippedWithoutCaption`.
    public init(folder: String) throws(DataError) {
        let fm = FileManager.default
        guard let walker = fm.enumerator(atPath: folder) else { throw DataError("\(folder): cannot list the folder") }
        var images: [String] = [], texts = Set<String>()
        while let relative = walker.nextObject() as? String {
            let ext = (relative as NSString).pathExtension.lowercased()
            if ImageFormat.fileExtensions.contains(ext) { images.append(relative) }
            if ext == "txt" { texts.insert((relative as NSString).deletingPathExtension) }
        }
        images.sort()
        let paired = images.filter { texts.contains(($0 as NSString).deletingPathExtension) }
        guard !paired.isEmpty else {
            throw DataError("\(folder): no image with a caption (.jpg/.png/.webp beside a same-named .txt) among \(images.count) images")
        }
        items = paired.map { ("\(folder)/\($0)", .file("\(folder)/\(($0 as NSString).deletingPathExtension).txt")) }
        skippedWithoutCaption = images.count - paired.count
        description = "\(folder): \(paired.count) captioned images"
    }

    /// Images without a caption file, left out.
    public private(set) var skippedWithoutCaption = 0

    /// open_clip's CSV (comma) or TSV (tab, for `.tsv`) with a header naming `imageKey` and `captionKey` columns.
    /// Relative image paths are taken relative to the table's folder when they do not exist as given.
    public init(table path: String, imageKey: String = "filepath", captionKey: String = "title") throws(DataError) {
        let bytes: [UInt8]
        do { bytes = try RegularFile.contents(of: path, limit: 1 << 30) } catch { throw DataError(error.description) }
        let separator: UInt8 = path.lowercased().hasSuffix(".tsv") ? 9 : 44
        let base = (path as NSString).deletingLastPathComponent
        var header: [String]?, columns = (image: 0, caption: 0)
        var items: [(String, Caption)] = []
        do {
            try DelimitedTable.forEachRow(bytes, separator: separator, name: path, maxFieldBytes: maximumCaptionBytes) { (row, line) throws(TableError) in
                guard let header else {
                    guard let i = row.firstIndex(of: imageKey), let c = row.firstIndex(of: captionKey) else {
                        throw TableError("\(path): the header \(row) has no '\(imageKey)' and '\(captionKey)' columns (set them with --csv-image-key / --csv-caption-key)")
                    }
                    (header, columns) = (row, (i, c))
                    return
                }
                guard row.count > max(columns.image, columns.caption) else {
                    throw TableError("\(path): line \(line) has \(row.count) fields, the header \(header.count)")
                }
                var image = row[columns.image]
                if !image.hasPrefix("/"), !FileManager.default.fileExists(atPath: image), !base.isEmpty { image = "\(base)/\(image)" }
                items.append((image, .text(row[columns.caption])))
            }
        } catch {
            throw DataError(error.description)
        }
        guard header != nil else { throw DataError("\(path): the table is empty") }
        guard !items.isEmpty else { throw DataError("\(path): the table has a header but no rows") }
        self.items = items
        description = "\(path): \(items.count) rows"
    }

    public func example(_ index: Int, preprocessor: ImagePreprocessor) -> Result<(pixels: [Float], caption: String), DataError> {
        let (image, caption) = items[index]
        let text: String
        switch caption {
        case .text(let t): text = t
        case .file(let f):
            do {
                let bytes = try RegularFile.contents(of: f, limit: maximumCaptionBytes)
                text = String(decoding: bytes, as: UTF8.self)
            } catch {
                return .failure(DataError(error.description))
            }
        }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else { return .failure(DataError("\(image): empty caption")) }
        do {
            return .success((try preprocessor.pixels(file: image), trimmed))
        } catch {
            return .failure(DataError(error.description))
        }
    }
}
