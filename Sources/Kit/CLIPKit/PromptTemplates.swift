/// Prompt templates for zero-shot classification. `{}` stands for the class name.
public enum PromptTemplates {
    /// The template the `clip` command uses unless told otherwise.
    public static let defaultTemplate = "a photo of a {}."

    /// The 80-template ImageNet ensemble of the CLIP paper, as OpenAI's `notebooks/imagenet_data.json` lists it.
    public static let imageNet: [String] = [
        "a bad photo of a {}.",
        "a photo of many {}.",
        "a sculpture of a {}.",
        "a photo of the hard to see {}.",
        "a low resolution photo of the {}.",
        "a rendering of a {}.",
        "graffiti of a {}.",
        "a bad photo of the {}.",
        "a cropped photo of the {}.",
        "a tattoo of a {}.",
        "the embroidered {}.",
        "a photo of a hard to see {}.",
        "a bright photo of a {}.",
        "a photo of a clean {}.",
        "a photo of a dirty {}.",
        "a dark photo of the {}.",
        "a drawing of a {}.",
        "a photo of my {}.",
        "the plastic {}.",
        "a photo of the cool {}.",
        "a close-up photo of a {}.",
        "a black and white photo of the {}.",
        "a painting of the {}.",
        "a painting of a {}.",
        "a pixelated photo of the {}.",
        "a sculpture of the {}.",
        "a bright photo of the {}.",
        "a cropped photo of a {}.",
        "a plastic {}.",
        "a photo of the dirty {}.",
        "a jpeg corrupted photo of a {}.",
        "a blurry photo of the {}.",
        "a photo of the {}.",
        "a good photo of the {}.",
        "a rendering of the {}.",
        "a {} in a video game.",
        "a photo of one {}.",
        "a doodle of a {}.",
        "a close-up photo of the {}.",
        "a photo of a {}.",
        "the origami {}.",
        "the {} in a video game.",
        "a sketch of a {}.",
        "a doodle of the {}.",
        "a origami {}.",
        "a low resolution photo of a {}.",
        "the toy {}.",
        "a rendition of the {}.",
        "a photo of the clean {}.",
        "a photo of a large {}.",
        "a rendition of a {}.",
        "a photo of a nice {}.",
        "a photo of a weird {}.",
        "a blurry photo of a {}.",
        "a cartoon {}.",
        "art of a {}.",
        "a sketch of the {}.",
        "a embroidered {}.",
        "a pixelated photo of a {}.",
        "itap of the {}.",
        "a jpeg corrupted photo of the {}.",
        "a good photo of a {}.",
        "a plushie {}.",
        "a photo of the nice {}.",
        "a photo of the small {}.",
        "a photo of the weird {}.",
        "the cartoon {}.",
        "art of the {}.",
        "a drawing of the {}.",
        "a photo of the large {}.",
        "a black and white photo of a {}.",
        "the plushie {}.",
        "a dark photo of a {}.",
        "itap of a {}.",
        "graffiti of the {}.",
        "a toy {}.",
        "itap of my {}.",
        "a photo of a cool {}.",
        "a photo of a small {}.",
        "a tattoo of the {}.",
    ]

    /// The default model's ensemble over what its captions say besides colour and shape: one, two or three shapes,
    /// of either size ("two small {} shapes"). A prompt naming one count and no size ("a {}") is nearer the
    /// single shapes it was captioned with, and pulls small or grouped shapes towards the thinnest ones (cross, star).
    public static let shapes: [String] = ["a", "two", "three"].flatMap { number in
        ["", "small ", "large "].map { size in number == "a" ? "a \(size){} shape" : "\(number) \(size){} shapes" }
    }

    /// The names of the ensembles `named` knows, in the order messages list them.
    public static let ensembleNames = ["imagenet", "shapes"]

    /// Named ensembles: "imagenet" (80 templates), "shapes" (9, for the default model's classes).
    public static func named(_ name: String) -> [String]? {
        switch name.lowercased() {
        case "imagenet": imageNet
        case "shapes": shapes
        default: nil
        }
    }

    /// The ensemble names for a message, each between `quote`s: "'imagenet' or 'shapes'".
    public static func ensembleNamesPhrase(quote: String) -> String {
        ensembleNames.map { quote + $0 + quote }.joined(separator: " or ")
    }

    /// Whether `template` can be used: a named ensemble, or text with exactly one `{}`.
    public static func isValid(_ template: String) -> Bool {
        named(template) != nil || template.components(separatedBy: "{}").count == 2
    }

    /// The templates to fill in: named ensembles expanded, the default template when none are given.
    public static func expand(_ templates: [String]) -> [String] {
        templates.isEmpty ? [defaultTemplate] : templates.flatMap { named($0) ?? [$0] }
    }

    /// `template.format(label)`: the template must hold exactly one `{}`.
    public static func apply(_ template: String, to label: String) throws(ClassifierError) -> String {
        let parts = template.components(separatedBy: "{}")
        guard parts.count == 2 else { throw .badTemplate(template) }
        return parts[0] + label + parts[1]
    }
}
