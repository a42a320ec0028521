import ArgumentParser
import CLIP
import CLIPCommandSupport
import CLIPImage
import CLIPKit
import CLIPTokenizer
import Foundation

struct Similarity: ParsableCommand {
    /// The `--json` output.
    struct Output: Encodable {
        let images: [String]
        let texts: [String]
        let cosine: [[Float]]
    }

    static let configuration = CommandConfiguration(
        abstract: "The image × text cosine-similarity matrix.")

    @OptionGroup var model: ModelOptions

    @OptionGroup var inputs: InputOptions

    var images: [String] { inputs.images }
    var texts: [String] { inputs.texts }

    @Flag(help: "JSON {\"images\", \"texts\", \"cosine\": [[...]]} instead of a table.")
    var json = false

    func validate() throws {
        guard !images.isEmpty, !texts.isEmpty else { throw ValidationError("give at least one --image and one --text") }
    }

    func run() throws {
        let clip = try model.pipeline()
        let m = try cosineSimilarity(try clip.imageEmbeddings(files: images, progress: progressReporter("images", total: images.count)),
                                     try clip.textEmbeddings(texts))
        if json {
            print(try jsonText(Output(images: images, texts: texts, cosine: rows(m))))
            return
        }
        for (i, path) in images.enumerated() {
            print(path)
            for (j, t) in texts.enumerated() {
                print(String(format: "  %+.4f  %@", m.scalars[i * texts.count + j], t))
            }
        }
    }
}
