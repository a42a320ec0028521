import CCLIPImage

/// How a model's images must be prepared: everything `ImagePreprocessor` needs to reproduce the model's own
/// transform, and all that makes two embeddings of one image comparable (an index fingerprints it whole).
public struct Preprocessing: Sendable, Hashable, CustomStringConvertible {
    /// Side of the square model input.
    public var resolution: Int
    /// Per-channel (R, G, B) mean subtracted after scaling to [0, 1].
    public var mean: [Float]
    /// Per-channel (R, G, B) standard deviation divided by.
    public var std: [Float]
    /// How the image is brought to the square (open_clip's `resize_mode`).
    public var resizeMode: ResizeMode
    /// The resampling filter (open_clip's `interpolation`, Pillow's filter as torchvision applies it to PIL images).
    public var interpolation: Interpolation
    /// SigLIP 2's NaFlex (`Siglip2ImageProcessor`): each image keeps its aspect ratio and becomes a grid of patch rows
    /// within a patch budget, instead of a square of `resolution` pixels (`resizeMode` then does not apply); nil for
    /// every other model.
    public var patchBudget: PatchBudget?

    /// The mean OpenAI's models were trained with.
    public static let openAIMean: [Float] = [0.48145466, 0.4578275, 0.40821073]
    /// The standard deviation OpenAI's models were trained with.
    public static let openAIStd: [Float] = [0.26862954, 0.26130258, 0.27577711]

    /// open_clip's `resize_mode`.
    public enum ResizeMode: String, Sendable, CaseIterable {
        /// Shorter side to `resolution` (torchvision `Resize(r)`), centre crop: OpenAI's and most models'.
        case shortest
        /// Both sides to `resolution`, the aspect ratio not kept (torchvision `Resize((r, r))`): DFN, SigLIP.
        case squash
        /// Longer side to `resolution` (open_clip's `ResizeKeepRatio(longest=1)`), centred and padded with zeros.
        case longest
    }

    /// The resampling filter of torchvision's `Resize`.
    public enum Interpolation: String, Sendable, CaseIterable {
        /// Pillow's BICUBIC (a = −0.5): OpenAI's and most models'.
        case bicubic
        /// Pillow's BILINEAR (a triangle filter): CLIPA's.
        case bilinear

        var filter: Int32 { Int32(self == .bilinear ? CLIP_FILTER_BILINEAR : CLIP_FILTER_BICUBIC) }
    }

    /// Values one preprocessed image takes: 3·resolution² for a square input, `PatchBudget.valuesPerImage` for
    /// NaFlex.
    public var valuesPerImage: Int { patchBudget?.valuesPerImage ?? 3 * resolution * resolution }

    /// The shape of a batch of `count` preprocessed images: [count, 3, resolution, resolution], or [count,
    /// valuesPerImage] for NaFlex.
    public func batchShape(_ count: Int) -> [Int] {
        patchBudget == nil ? [count, 3, resolution, resolution] : [count, valuesPerImage]
    }

    /// Preprocessing for `resolution` pixels with OpenAI's normalisation and resizing unless given.
    public init(resolution: Int, mean: [Float] = openAIMean, std: [Float] = openAIStd, resizeMode: ResizeMode = .shortest,
                interpolation: Interpolation = .bicubic) {
        self.resolution = resolution
        self.mean = mean
        self.std = std
        self.resizeMode = resizeMode
        self.interpolation = interpolation
    }

    /// Every field as text, for fingerprints of the embeddings it makes: two preprocessings that differ in any field
    /// give different texts. The resize mode and the interpolation appear only when not OpenAI's, so the text of
    /// OpenAI's preprocessing (and the fingerprints of indexes made before they were added) stays as it was.
    package var fingerprintText: String {
        var text = "resolution \(resolution) mean \(mean) std \(std)"
        if resizeMode != .shortest { text += " resize \(resizeMode.rawValue)" }
        if interpolation != .bicubic { text += " interpolation \(interpolation.rawValue)" }
        if let b = patchBudget { text += " naflex patch \(b.patchSize) max \(b.maxPatches)" }
        return text
    }

    public var description: String {
        let (r, i) = (resolution, interpolation.rawValue)
        if let b = patchBudget {
            return "resize to at most \(b.maxPatches) patches of \(b.patchSize)×\(b.patchSize) (\(i), aspect ratio kept, sides multiples of \(b.patchSize)), mean \(mean), std \(std)"
        }
        switch resizeMode {
        case .shortest: return "resize shorter side to \(r) (\(i)), center crop \(r)×\(r), mean \(mean), std \(std)"
        case .squash: return "resize to \(r)×\(r) (\(i), aspect ratio not kept), mean \(mean), std \(std)"
        case .longest: return "resize longer side to \(r) (\(i)), pad to \(r)×\(r) with black, mean \(mean), std \(std)"
        }
    }
}
