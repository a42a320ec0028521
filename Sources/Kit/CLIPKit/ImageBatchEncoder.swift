import CLIPData
import CLIPFiles
import CLIPImage
import CLIPTensor
import Foundation

/// Where one image of a batch comes from.
public enum ImageSource: Sendable, Equatable {
    /// A file, read whole.
    case file(String)
    /// An encoded image already in memory; `name` is what errors call it.
    case encoded([UInt8], name: String)
    /// `size` bytes at `offset` of a file (a member of a webdataset tar shard); `name` is what errors call it.
    case member(file: String, offset: Int, size: Int, name: String)

    /// What errors call the image.
    public var name: String {
        switch self {
        case .file(let path): path
        case .encoded(_, let name), .member(_, _, _, let name): name
        }
    }
}

/// "Embed a batch of images", once for every caller (`CLIPPipeline`, `clip index`, `clip embed`, `clip serve`, video
/// moments): sources are decoded and preprocessed on all cores, a batch is one `encode_image` call, its rows are
/// L2-normalised, and a batch the model refuses is retried image by image so that one bad image fails alone.
public struct ImageBatchEncoder: Sendable {
    /// The model and preprocessing the embeddings come from.
    public let pipeline: CLIPPipeline

    /// The largest member of a tar shard read as one image.
    public static let maxMemberBytes = WebDatasetShard.maxImageBytes

    public init(pipeline: CLIPPipeline) { self.pipeline = pipeline }

    /// Each source preprocessed → [3, R, R] values, or the reason it could not be; on all cores.
    public func pixels(_ sources: [ImageSource]) -> [Result<[Float], ImageError>] {
        let preprocessor = pipeline.preprocessor
        var out = [Result<[Float], ImageError>](repeating: .success([]), count: sources.count)
        out.withUnsafeMutableBufferPointer { buffer in
            let base = buffer.baseAddress!
            parallelFor(sources.count) { i in
                base[i] = Result { () throws(ImageError) -> [Float] in try Self.pixels(sources[i], preprocessor) }
            }
        }
        return out
    }

    /// `pixels(_:)` on another thread, so that the model encodes the previous batch meanwhile.
    package func pixelsInBackground(_ sources: [ImageSource]) -> BackgroundWork<[Result<[Float], ImageError>]> {
        let encoder = self
        return BackgroundWork { encoder.pixels(sources) }
    }

    static func pixels(_ source: ImageSource, _ preprocessor: ImagePreprocessor) throws(ImageError) -> [Float] {
        switch source {
        case .file(let path):
            // Read, then decoded under the budget every concurrent decode shares.
            return try preprocessor.pixels(encoded: try ImagePreprocessor.readImageFile(path), name: path)
        case .encoded(let bytes, let name):
            return try preprocessor.pixels(encoded: bytes, name: name)
        case .member(let file, let offset, let size, let name):
            guard size <= Self.maxMemberBytes else {
                throw ImageError(file: name, .unsupported("an image of \(size) bytes in a tar shard; at most \(Self.maxMemberBytes) are read"))
            }
            let bytes: [UInt8]
            do { bytes = try RegularFile(path: file).read(at: offset, count: size) } catch {
                throw ImageError(file: name, .unreadable(error.reason))
            }
            return try preprocessor.pixels(encoded: bytes, name: name)
        }
    }

    /// `encode_image` of preprocessed images (each [3, R, R], or NaFlex's patch rows) as one batch → one row per
    /// image, L2-normalised unless `normalized` is false.
    public func embeddings(pixels rows: [[Float]], normalized: Bool = true) throws(CLIPError) -> [[Float]] {
        guard !rows.isEmpty else { return [] }
        let preprocessing = pipeline.preprocessor.preprocessing
        let (r, per) = (preprocessing.resolution, preprocessing.valuesPerImage)
        // Each image its own size: rows of 2·per and 0 elements add up to a whole batch but are not two images.
        if let (index, row) = rows.enumerated().first(where: { $0.element.count != per }) {
            let layout = preprocessing.patchBudget == nil ? "[3, \(r), \(r)]" : "NaFlex's grid and patch rows"
            throw .imageShape([row.count], expected: "\(per) values (\(layout)) for image \(index)")
        }
        let pixels = Tensor(uncheckedShape: preprocessing.batchShape(rows.count)) { out in
            for (i, row) in rows.enumerated() {
                row.withUnsafeBufferPointer { (out.baseAddress! + i * per).update(from: $0.baseAddress!, count: per) }
            }
        }
        let out = try pipeline.model.encodeImage(pixels)
        let unit = normalized ? l2Normalized(out) : out
        let d = out.shape.last ?? 0
        return (0..<rows.count).map { Array(unit.scalars[$0 * d..<($0 + 1) * d]) }
    }

    /// `embeddings(pixels:)` with an outcome per image: when the model refuses the batch (an image whose outputs
    /// are not finite), each image is encoded alone and only the ones it refuses fail.
    /// A refusal of the whole model (no image tower, an internal error) fails every image at once: retrying them one
    /// by one would only repeat it.
    public func embeddingsPerImage(pixels rows: [[Float]]) -> [Result<[Float], CLIPError>] {
        do { return try embeddings(pixels: rows).map { .success($0) } } catch {
            switch error {
            case .nonFinitePixels, .nonFiniteOutput, .imageShape: break
            default: return rows.map { _ in .failure(error) }
            }
        }
        return rows.map { row in Result { () throws(CLIPError) -> [Float] in try embeddings(pixels: [row])[0] } }
    }
}
