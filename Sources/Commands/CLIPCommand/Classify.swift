import ArgumentParser
import CLIP
import CLIPCommandSupport
import CLIPImage
import CLIPKit
import CLIPTokenizer
import Foundation

struct Classify: ParsableCommand {
    /// One line of `--json` output.
    struct Record: Encodable {
        let image: String
        let labels: [String]
        let probs: [Float]
    }

    static let configuration = CommandConfiguration(
        abstract: "Zero-shot classification: per image, the probability of each label.",
        discussion: """
            Probabilities are the softmax over labels of exp(logit_scale) × cosine(image, label). Each label is put \
            into every --template ("{}" marks where; default "\(PromptTemplates.defaultTemplate)"; "imagenet" \
            names the paper's 80-template ensemble, "shapes" the default model's 9 over count and size); a label's templated embeddings are normalised, averaged and \
            renormalised. --template "{}" uses the labels verbatim, as the seed example does. The label \
            embeddings are kept in the packed-weight cache (clip cache list), so a second run with the same model, \
            labels and templates does not encode the prompts again.
            """)

    @OptionGroup var model: ModelOptions

    @Argument(help: "Image files (JPEG, PNG, WebP, HEIC, AVIF, GIF, BMP, TIFF).")
    var images: [String]

    @Option(parsing: .upToNextOption, help: "The labels to choose between.")
    var labels: [String]

    @Option(help: "A prompt template with {} for the label, \(PromptTemplates.ensembleNamesPhrase(quote: "'")); repeat for an ensemble.")
    var template: [String] = []

    @Flag(help: "One JSON object per image: {\"image\", \"labels\", \"probs\"}, labels in the given order.")
    var json = false

    @Flag(help: "Turn and flip images by their EXIF orientation first (the reference's preprocess does not).")
    var applyOrientation = false

    @Option(help: "Images per batch.")
    var batchSize = 16

    func validate() throws {
        guard !images.isEmpty else { throw ValidationError("give at least one image") }
        guard !labels.isEmpty else { throw ValidationError("give at least one label with --labels") }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
        for t in template where !PromptTemplates.isValid(t) {
            throw ValidationError("--template '\(t)' must contain exactly one {} (or be \(PromptTemplates.ensembleNamesPhrase(quote: "'")))")
        }
    }

    func run() throws {
        let templates = PromptTemplates.expand(template)
        // Label embeddings are kept beside the packed weights: with the same labels and templates the text tower
        // and the tokenizer are not even loaded. Otherwise the text tower is loaded apart, which reads what a load
        // of both towers reads.
        let clip = try model.pipeline(towers: .imageOnly).orientingImages(applyOrientation)
        let classifier: ZeroShotClassifier
        if let cached = clip.cachedZeroShotClassifier(labels: labels, templates: templates, cache: PackedWeightCache.user) {
            classifier = cached
        } else {
            let texts = try model.pipeline(towers: .textOnly)
            // Two loads: a checkpoint replaced between them (a Hub revision that moved, a file saved again) would
            // pair one file's image tower with another's text tower.
            if let a = clip.loaded?.checkpointDigest, let b = texts.loaded?.checkpointDigest, a != b {
                throw ValidationError("\(model.spec) changed while it was loading (its towers came from different contents); run again")
            }
            classifier = try texts.zeroShotClassifier(labels: labels, templates: templates, cache: PackedWeightCache.user)
        }
        let embeddings = try clip.imageEmbeddings(files: images, batchSize: batchSize,
                                                  progress: progressReporter("images", total: images.count))
        let probs = try classifier.probabilities(embeddings)
        let n = labels.count
        for (i, path) in images.enumerated() {
            let row = Array(probs.scalars[(i * n)..<((i + 1) * n)])
            if json {
                print(try jsonText(Record(image: path, labels: labels, probs: row)))
            } else {
                print(path)
                for (index, p) in topK(row, k: n) {
                    print(String(format: "  %6.2f%%  %@", Double(p) * 100, labels[index]))
                }
            }
        }
    }
}
