import CLIPFiles
import CLIPImage
import CLIPKit
import Foundation

/// What makes two embeddings comparable: the same weights (a hash of the checkpoint's bytes, so a renamed or
/// re-downloaded file is recognised and an edited one is not), the same preprocessing and the same arithmetic.
package enum ModelFingerprint {
    /// The fingerprint of the checkpoint at `checkpoint` (a file, or a Hugging Face folder whose regular files
    /// are all hashed) used with `preprocessing` and `precision`. File hashes are cached in `index` by path,
    /// size and modification time, so a query does not reread a 600 MB checkpoint.
    package static func of(checkpoint: String, preprocessing: Preprocessing, precision: Precision,
                          orientation: Bool = false, cache index: PhotoIndex?) throws(IndexError) -> String {
        var parts = ["swift-clip index v1"]
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: checkpoint, isDirectory: &isDir) else {
            throw IndexError.unusable(path: checkpoint, reason: "no such checkpoint")
        }
        if isDir.boolValue {
            let names: [String]
            do { names = try FileManager.default.contentsOfDirectory(atPath: checkpoint).sorted() } catch {
                throw IndexError.unusable(path: checkpoint, reason: "cannot list the model folder (\(error.localizedDescription))")
            }
            for name in names {
                let file = checkpoint + "/" + name
                guard let a = try? FileManager.default.attributesOfItem(atPath: file),
                      a[.type] as? FileAttributeType == .typeRegular else { continue }
                parts.append(name + " " + (try fileHash(file, cache: index)))
            }
        } else {
            parts.append(try fileHash(checkpoint, cache: index))
        }
        // Every field: embeddings made under another resize mode or interpolation are not comparable either.
        parts.append(preprocessing.fingerprintText)
        parts.append("precision \(precision.rawValue)")
        // Only when applied, so the fingerprints of indexes made before orientation was applied stay as they were.
        if orientation { parts.append("exif orientation applied") }
        return SHA256.hex(Array(parts.joined(separator: "\n").utf8))
    }

    /// The index's record of the model a pipeline runs: registered when `registering` (indexing), else it must
    /// already be there (searching) and the error names the models the index holds. `name` is what the user
    /// called the model.
    package static func indexedModel(_ pipeline: CLIPPipeline, name: String, in index: PhotoIndex,
                                    registering: Bool) throws(IndexError) -> IndexedModel {
        guard let loaded = pipeline.loaded else { throw IndexError.mismatch(subject: "model \(name)", reason: "not loaded from a file; an index needs its checkpoint to fingerprint it") }
        let fingerprint = try of(checkpoint: loaded.path, preprocessing: loaded.preprocessing,
                                 precision: pipeline.model.precision, orientation: pipeline.preprocessor.applyEXIFOrientation,
                                 cache: index)
        let dimension = pipeline.model.configuration.embedDim
        return registering ? try index.model(fingerprint: fingerprint, name: name, dimension: dimension)
            : try index.existingModel(fingerprint: fingerprint, name: name)
    }

    /// The model to search an index with: the entry of `pipeline` as it is, or, when the pipeline turns images by
    /// their EXIF orientation and the index also holds embeddings made without (an index from before swift-clip
    /// applied it, or imported from a program that does not), whichever entry covers more of the live files, with
    /// the pipeline that matches it (image queries must be prepared as the index's images were). So an index whose
    /// first oriented run covered one folder of many, or was interrupted, is still searched whole; the oriented
    /// entry takes over once it covers as much.
    package static func searchedModel(_ pipeline: CLIPPipeline, name: String,
                                     in index: PhotoIndex) throws(IndexError) -> (pipeline: CLIPPipeline, model: IndexedModel) {
        let plain = pipeline.orientingImages(false)
        let unoriented = pipeline.preprocessor.applyEXIFOrientation
            ? try? indexedModel(plain, name: name, in: index, registering: false) : nil
        let oriented: IndexedModel
        do {
            oriented = try indexedModel(pipeline, name: name, in: index, registering: false)
        } catch {
            guard let unoriented else { throw error }
            return (plain, unoriented)
        }
        guard let unoriented else { return (pipeline, oriented) }
        // Live rows of each entry, from their vector caches (mapped; the search opens the chosen one next).
        let covered = try VectorStore.load(index: index, model: oriented).count
        let coveredBefore = try VectorStore.load(index: index, model: unoriented).count
        return covered >= coveredBefore ? (pipeline, oriented) : (plain, unoriented)
    }

    /// For an index run that turns images: the same weights' entry made without orientation, when the index holds
    /// one (its embeddings of photos that declare no turn are taken over, see `Indexer.unoriented`).
    package static func unorientedModel(_ pipeline: CLIPPipeline, name: String, in index: PhotoIndex) -> IndexedModel? {
        guard pipeline.preprocessor.applyEXIFOrientation else { return nil }
        return try? indexedModel(pipeline.orientingImages(false), name: name, in: index, registering: false)
    }

    static func fileHash(_ path: String, cache index: PhotoIndex?) throws(IndexError) -> String {
        let absolute = PhotoIndex.absolute(path)
        var st = stat()
        guard stat(absolute, &st) == 0 else { throw IndexError.unusable(path: path, reason: "cannot read the checkpoint") }
        let size = Int64(st.st_size), modified = modificationNanoseconds(st)
        if let index, let known = try index.cachedCheckpointHash(path: absolute, size: size, modified: modified) {
            return known
        }
        let digest: String
        do { digest = try SHA256.file(absolute) } catch { throw IndexError.unusable(path: path, reason: "cannot hash the checkpoint: \(error.reason)") }
        try index?.rememberCheckpointHash(path: absolute, size: size, modified: modified, sha256: digest)
        return digest
    }
}
