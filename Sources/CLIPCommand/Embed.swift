import ArgumentParser
import CLIP
import CLIPCommandSupport
import CLIPImage
import CLIPKit
import CLIPTokenizer
import Foundation

struct Embed: ParsableCommand {
    /// The JSON output; a kind that was not asked for is left out.
    struct Output: Encodable {
        let image_embeddings: [[Float]]?
        let text_embeddings: [[Float]]?
    }

    static let configuration = CommandConfiguration(
        abstract: "Embed images and texts: JSON {\"image_embeddings\": [[...]], \"text_embeddings\": [[...]]} in input order.",
        discussion: """
            Embeddings are L2-normalised unless --raw (then exactly encode_image / encode_text). With --output FILE.npy \
            the arrays are written as float32 .npy instead: FILE.npy holds whichever kind was given; with both, \
            FILE_images.npy and FILE_texts.npy.
            """)

    @OptionGroup var model: ModelOptions

    @OptionGroup var inputs: InputOptions

    var images: [String] { inputs.images }
    var texts: [String] { inputs.texts }

    @Flag(help: "Unnormalised encode_image / encode_text outputs.")
    var raw = false

    @Flag(help: "Cut texts longer than the context instead of failing.")
    var truncate = false

    @Option(help: "Write to this file (.json, or .npy for float32 arrays) instead of standard output.")
    var output: String?

    @Option(help: "Images per batch.")
    var batchSize = 16

    func validate() throws {
        guard !images.isEmpty || !texts.isEmpty else { throw ValidationError("give at least one --image or --text") }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
    }

    func run() throws {
        try reportingErrors {
            let clip = try model.pipeline()
            var imageEmbeddings: Tensor?
            var textEmbeddings: Tensor?
            if !images.isEmpty {
                let e = try clip.encodeImages(files: images, batchSize: batchSize,
                                              progress: progressReporter("images", total: images.count))
                imageEmbeddings = raw ? e : l2Normalized(e)
            }
            if !texts.isEmpty {
                let e = try clip.encodeTexts(texts, truncate: truncate)
                textEmbeddings = raw ? e : l2Normalized(e)
            }
            if let output, output.hasSuffix(".npy") {
                let stem = String(output.dropLast(4))
                var files: [(String, Tensor)] = []
                if let i = imageEmbeddings { files.append((textEmbeddings == nil ? output : stem + "_images.npy", i)) }
                if let t = textEmbeddings { files.append((imageEmbeddings == nil ? output : stem + "_texts.npy", t)) }
                for (path, t) in files { try write(t.npyData(), to: path) }
                return
            }
            let text = try jsonText(Output(image_embeddings: imageEmbeddings.map(rows), text_embeddings: textEmbeddings.map(rows))) + "\n"
            if let output { try write(Data(text.utf8), to: output) } else { print(text, terminator: "") }
        }
    }
}
