@_exported import CLIP
@_exported import CLIPLoading
@_exported import CLIPImage
@_exported import CLIPHub
@_exported import CLIPTokenizer
import Foundation

/// A model with its preprocessing and tokenizer: what `model, preprocess = clip.load(name)` gives in Python.
///
/// ```swift
/// let clip = try CLIPPipeline.load("ViT-B/32")
/// let image = try clip.imageEmbeddings(files: ["CLIP.png"])          // [1, 512], L2-normalised
/// let classifier = try clip.zeroShotClassifier(labels: ["a diagram", "a dog", "a cat"], templates: ["{}"])
/// let probs = try classifier.probabilities(image)                     // [1, 3]
/// ```
public struct CLIPPipeline: Sendable {
    /// The model the embeddings come from.
    public let model: CLIPModel
    /// Decodes and prepares images as the model's reference preprocessing does (turned by their EXIF orientation
    /// first only in a pipeline from `orientingImages()`).
    public private(set) var preprocessor: ImagePreprocessor
    /// The model's tokenizer: CLIP's BPE (the folder's own when it has one, OpenAI's otherwise), for SigLIP the
    /// SentencePiece model of its folder, for MetaCLIP 2 XLM-V's (`XLMRobertaTokenizer`), for CLIPA BERT's
    /// (`WordPieceTokenizer`), for NLLB-CLIP NLLB-200's (`NLLBTokenizer`; see `withTextLanguage(_:)`).
    public private(set) var tokenizer: any TextTokenizer
    /// Where the model came from, when it was loaded from a file.
    public let loaded: LoadedModel?

    /// A pipeline over a loaded model, with the tokenizer from the model's folder when it has one.
    public init(_ loaded: LoadedModel) throws(PipelineError) {
        let tokenizer: any TextTokenizer
        if case .notLoaded = loaded.model.text {
            tokenizer = NoTextTower()
        } else {
            do { tokenizer = try loaded.tokenizer() } catch { throw .tokenizer(error) }
        }
        self.init(model: loaded.model, preprocessing: loaded.preprocessing, tokenizer: tokenizer, loaded: loaded)
    }

    /// A model built in memory (random weights, or trained in this process) with its preprocessing; the tokenizer
    /// is OpenAI's unless given.
    public init(model: CLIPModel, preprocessing: Preprocessing, tokenizer: (any TextTokenizer)? = nil) throws(PipelineError) {
        let chosen: any TextTokenizer
        if let tokenizer {
            chosen = tokenizer
        } else {
            do { chosen = try CLIPTokenizer.shared() } catch { throw .tokenizer(error) }
        }
        self.init(model: model, preprocessing: preprocessing, tokenizer: chosen, loaded: nil)
    }

    private init(model: CLIPModel, preprocessing p: Preprocessing, tokenizer: any TextTokenizer, loaded: LoadedModel?) {
        self.model = model
        self.preprocessor = ImagePreprocessor(p)
        self.tokenizer = tokenizer
        self.loaded = loaded
    }

    /// Loads a model by name (downloading it like `clip.load`), checkpoint path, Hugging Face folder or Hub repository.
    /// `towers: .textOnly` skips the image tower (text queries start faster and smaller), `.imageOnly` the text tower
    /// and the tokenizer (for images classified by `cachedZeroShotClassifier`, and for embedding photos). With a `weightCache`
    /// (`PackedWeightCache.user` is the user's), later loads of a checkpoint file map its packed weights.
    /// `hf-hub:ORG/NAME` fetches an open_clip or Hugging Face repository at `revision` (default `main`) into the
    /// cache `huggingface_hub` shares; with `pretrained`, `spec` is an open_clip architecture and `pretrained` its
    /// tag (`ARCH/TAG` and `ARCH__TAG` name one too).
    public static func load(_ spec: String, cacheDirectory: String? = nil, openCLIPConfig: String? = nil,
                            revision: String? = nil, pretrained: String? = nil, precision: Precision = .fp32,
                            showProgress: Bool = true, towers: CLIPModel.Towers = .both,
                            weightCache: PackedWeightCache? = nil) throws(PipelineError) -> CLIPPipeline {
        // The bundled tokenizer (about 70 ms to build) is built on another core while the weights load, unless
        // the model is a folder that may bring its own.
        var isFolder: ObjCBool = false
        if towers != .imageOnly, !(FileManager.default.fileExists(atPath: spec, isDirectory: &isFolder) && isFolder.boolValue) {
            DispatchQueue.global().async { _ = try? CLIPTokenizer.shared() }
        }
        let loaded: LoadedModel
        do throws(HubError) {
            var hub = ModelHub(cacheDirectory: cacheDirectory, showProgress: showProgress)
            hub.revision = revision
            hub.pretrained = pretrained
            hub.weightCache = weightCache
            loaded = try hub.load(spec, openCLIPConfig: openCLIPConfig, precision: precision, towers: towers)
        } catch {
            throw .hub(error)
        }
        return try CLIPPipeline(loaded)
    }

    // MARK: Encoding

    /// `encode_image` of image files in batches: [N, embed], unnormalised. `progress` is told how many are done.
    /// The next batch is decoded while the current one is encoded, so the cores the model leaves idle (between
    /// layers, in its single-threaded stretches) decode.
    public func encodeImages(files: [String], batchSize: Int = 16,
                             progress: (@Sendable (Int, Int) -> Void)? = nil) throws(PipelineError) -> Tensor {
        var out: [Float] = []
        out.reserveCapacity(files.count * model.configuration.embedDim)
        let size = max(batchSize, 1), encoder = ImageBatchEncoder(pipeline: self)
        let batches = stride(from: 0, to: files.count, by: size).map { files[$0..<min($0 + size, files.count)].map(ImageSource.file) }
        var next = batches.first.map(encoder.pixelsInBackground)
        for (i, _) in batches.enumerated() {
            guard let current = next else { break }
            let decoded = current.wait()
            next = i + 1 < batches.count ? encoder.pixelsInBackground(batches[i + 1]) : nil
            // The first file that cannot be read, in input order, is the error.
            var pixels: [[Float]] = []
            for result in decoded {
                switch result {
                case .success(let row): pixels.append(row)
                case .failure(let error):
                    _ = next?.wait()  // the background decode must not outlive the call
                    throw .image(error)
                }
            }
            do { for row in try encoder.embeddings(pixels: pixels, normalized: false) { out += row } } catch {
                _ = next?.wait()
                throw .model(error)
            }
            progress?(min((i + 1) * size, files.count), files.count)
        }
        return makeTensor(out, rows: files.count)
    }

    /// `encode_text(clip.tokenize(texts))`: [N, embed], unnormalised. Texts longer than the context are an error
    /// naming them unless `truncate`.
    public func encodeTexts(_ texts: [String], truncate: Bool = false, batchSize: Int = 256) throws(PipelineError) -> Tensor {
        let ids: [[Int]]
        do {
            ids = try tokenizer.tokenize(texts, contextLength: model.configuration.text.contextLength, truncate: truncate)
        } catch { throw .tokenizer(error) }
        // Texts are encoded shortest first: a causal tower computes a batch up to its longest text, so batches of
        // similar lengths pad less (an ImageNet template ensemble spans 5 to 20 tokens). Texts of one length are in
        // token order, so a template's prompts of that length fall in the same batches and the tower computes their
        // common start once per batch.
        // Rows are independent; each lands back in its input position.
        func length(_ row: [Int]) -> Int { (row.lastIndex { $0 != 0 } ?? 0) + 1 }
        let lengths = ids.map(length)
        let order = ids.indices.sorted {
            lengths[$0] != lengths[$1] ? lengths[$0] < lengths[$1]
                : ids[$0] != ids[$1] ? ids[$0].lexicographicallyPrecedes(ids[$1]) : $0 < $1
        }
        let e = model.configuration.embedDim
        var out = [Float](repeating: 0, count: ids.count * e)
        var start = 0
        while start < order.count {
            let rows = order[start..<min(start + max(batchSize, 1), order.count)]
            let values: [Float]
            do { values = try model.encodeText(rows.map { ids[$0] }).scalars } catch { throw .model(error.inInputOrder(Array(rows))) }
            for (k, row) in rows.enumerated() {
                out.replaceSubrange((row * e)..<((row + 1) * e), with: values[(k * e)..<((k + 1) * e)])
            }
            start += rows.count
        }
        return makeTensor(out, rows: texts.count)
    }

    /// L2-normalised image embeddings [N, embed].
    public func imageEmbeddings(files: [String], batchSize: Int = 16,
                                progress: (@Sendable (Int, Int) -> Void)? = nil) throws(PipelineError) -> Tensor {
        l2Normalized(try encodeImages(files: files, batchSize: batchSize, progress: progress))
    }

    /// L2-normalised text embeddings [N, embed].
    public func textEmbeddings(_ texts: [String], truncate: Bool = false) throws(PipelineError) -> Tensor {
        l2Normalized(try encodeTexts(texts, truncate: truncate))
    }

    /// A zero-shot classifier: per label, every template filled in, encoded, normalised, averaged, renormalised.
    public func zeroShotClassifier(labels: [String], templates: [String] = [PromptTemplates.defaultTemplate]) throws(PipelineError) -> ZeroShotClassifier {
        let prompts = try ZeroShotClassifier.prompts(labels: labels, templates: templates)
        let all = try textEmbeddings(prompts)
        return ZeroShotClassifier(labels: labels, templateCount: templates.count, promptEmbeddings: all.scalars,
                                  dimension: model.configuration.embedDim, logitScale: expf(model.logitScale),
                                  logitBias: model.logitBias, objective: model.configuration.objective)
    }

    /// This pipeline with texts tokenized in rows led by the language code `code` (one of `NLLBTokenizer.languageCodes`,
    /// as `fra_Latn`), for an NLLB-CLIP or NLLB-SigLIP model, whose rows otherwise start with eng_Latn as open_clip's
    /// do; an error for a code NLLB does not have and for a model whose tokenizer has no language codes. A pipeline
    /// loaded `.imageOnly` has no tokenizer to take the code: it is returned as it is once the code and the model's
    /// vocabulary are checked, so the same options serve a job whose text tower is loaded apart.
    public func withTextLanguage(_ code: String) throws(PipelineError) -> CLIPPipeline {
        if tokenizer is NoTextTower {
            let vocabulary = model.configuration.text.vocabulary
            guard vocabulary == .nllb else { throw .tokenizer(.noLanguages("\(vocabulary)")) }
            guard NLLBTokenizer.languageCodes.contains(code) else { throw .tokenizer(.unknownLanguage(code)) }
            return self
        }
        guard let nllb = tokenizer as? NLLBTokenizer else {
            throw .tokenizer(.noLanguages(String(describing: type(of: tokenizer))))
        }
        var copy = self
        do { copy.tokenizer = try nllb.withLanguage(code) } catch { throw .tokenizer(error) }
        return copy
    }

    /// This pipeline with images turned and flipped by their EXIF orientation before they are prepared (the photo
    /// as its owner sees it, as Pillow's `ImageOps.exif_transpose` gives it), or, with `false`, not (the
    /// reference's `preprocess`, which ignores the tag). A photo index records which was used.
    public func orientingImages(_ apply: Bool = true) -> CLIPPipeline {
        var copy = self
        copy.preprocessor.applyEXIFOrientation = apply
        return copy
    }

    /// A zero-shot classifier as `zeroShotClassifier(labels:templates:)` builds it, kept in `cache` (beside the
    /// packed weights) so that the same model, labels and templates skip the text tower next time: an ImageNet
    /// classifier of 1,000 classes × 80 templates is 80,000 prompts. Used when the weights' content is known (a
    /// checkpoint file loaded through a packed-weight cache) and the tokenizer is the bundled BPE; otherwise, and
    /// when the cache cannot be written, the classifier is built as without a cache.
    public func zeroShotClassifier(labels: [String], templates: [String], cache: PackedWeightCache?) throws(PipelineError) -> ZeroShotClassifier {
        if let cached = cachedZeroShotClassifier(labels: labels, templates: templates, cache: cache) { return cached }
        let classifier = try zeroShotClassifier(labels: labels, templates: templates)
        guard let cache, let key = labelCacheKey(labels: labels, templates: templates) else { return classifier }
        let e = model.configuration.embedDim
        // A cache that cannot be written (a full disk, a read-only home) costs the next run the text tower, no more.
        try? cache.storeLabelEmbeddings(classifier.weights.scalars, key: key, rows: labels.count, dimension: e,
                                        source: loaded?.path ?? "", precision: model.precision)
        return classifier
    }

    /// The classifier `zeroShotClassifier(labels:templates:cache:)` kept in `cache` for these labels and templates, if
    /// it has it: no text tower needed, so a pipeline loaded with `towers: .imageOnly` classifies without one.
    ///
    /// ```swift
    /// let images = try CLIPPipeline.load("ViT-B/32", towers: .imageOnly, weightCache: .user)
    /// let classifier = try images.cachedZeroShotClassifier(labels: labels, templates: ["{}"], cache: .user)
    ///     ?? CLIPPipeline.load("ViT-B/32", towers: .textOnly, weightCache: .user)
    ///         .zeroShotClassifier(labels: labels, templates: ["{}"], cache: .user)
    /// ```
    public func cachedZeroShotClassifier(labels: [String], templates: [String], cache: PackedWeightCache?) -> ZeroShotClassifier? {
        let e = model.configuration.embedDim
        guard let cache, let key = labelCacheKey(labels: labels, templates: templates),
              let weights = cache.labelEmbeddings(key: key, rows: labels.count, dimension: e) else { return nil }
        return ZeroShotClassifier(labels: labels, weights: Tensor(uncheckedShape: [labels.count, e], scalars: weights),
                                  logitScale: expf(model.logitScale), logitBias: model.logitBias,
                                  objective: model.configuration.objective)
    }

    /// What the text tower's output for these prompts depends on: the weights' content, architecture and
    /// precision, this CPU's kernels, the tokenizer and context length, the templates and labels (each
    /// length-prefixed, so no two lists give one key). Nil when the weights' content is not known.
    package func labelCacheKey(labels: [String], templates: [String]) -> String? {
        guard let loaded, let digest = loaded.checkpointDigest, loaded.tokenizerFolder == nil,
              model.configuration.text.vocabulary == .openAIBPE else { return nil }
        func listed(_ name: String, _ items: [String]) -> String {
            "\(name) \(items.count)\n" + items.map { "\($0.utf8.count) \($0)" }.joined(separator: "\n")
        }
        return ["swift-clip label embeddings, format \(Self.labelCacheFormat)", "checkpoint sha256 \(digest)",
                "configuration \(model.configuration.fingerprintText)", "precision \(model.precision.rawValue)", PackedMatrix.layoutDescription,
                // The bundled BPE by the guard above (named so, not by the pipeline's tokenizer: an image-only
                // pipeline has none but reads the same entries).
                "tokenizer \(CLIPTokenizer.self) context \(model.configuration.text.contextLength)",
                listed("templates", templates), listed("labels", labels)].joined(separator: "\n")
    }

    /// Bump when the tokenizer's output or the text tower's arithmetic changes for a given checkpoint.
    static let labelCacheFormat = 1

    /// `values` hold `rows` embeddings by construction (each encode call returns [batch, embed]).
    private func makeTensor(_ values: [Float], rows: Int) -> Tensor {
        Tensor(uncheckedShape: [rows, model.configuration.embedDim], scalars: values)
    }
}

/// Class weights for zero-shot classification: [classes, embed], each row unit length.
public struct ZeroShotClassifier: Sendable {
    /// The class names, in the order of `weights`' rows.
    public let labels: [String]
    /// One unit-length text embedding per class, averaged over the templates: `[classes, embed]`.
    public let weights: Tensor
    /// exp(logit_scale) of the model.
    public let logitScale: Float
    /// The model's `logit_bias` (SigLIP), added to every logit; 0 for CLIP.
    public let logitBias: Float
    /// Softmax over the classes (CLIP), or an independent sigmoid per class (SigLIP: each label's probability
    /// of matching, not a share of one).
    public let objective: CLIPConfiguration.Objective

    /// Every label in every template, label-major: the texts whose embeddings `init(labels:templateCount:…)`
    /// averages.
    public static func prompts(labels: [String], templates: [String]) throws(PipelineError) -> [String] {
        guard !labels.isEmpty else { throw .classifier(.noLabels) }
        guard !templates.isEmpty else { throw .classifier(.noTemplates) }
        var prompts: [String] = []
        for label in labels {
            for t in templates {
                do { prompts.append(try PromptTemplates.apply(t, to: label)) } catch { throw .classifier(error) }
            }
        }
        return prompts
    }

    /// Per label, the unit embeddings of its prompts (`prompts(labels:templates:)`, [labels × templates,
    /// dimension]) averaged and renormalised.
    public init(labels: [String], templateCount: Int, promptEmbeddings all: [Float], dimension e: Int, logitScale: Float,
                logitBias: Float = 0, objective: CLIPConfiguration.Objective = .softmax) {
        var weights = [Float](repeating: 0, count: labels.count * e)
        for c in 0..<labels.count {
            var mean = [Double](repeating: 0, count: e)
            for t in 0..<templateCount {
                let row = (c * templateCount + t) * e
                for j in 0..<e { mean[j] += Double(all[row + j]) }
            }
            var norm = 0.0
            for j in 0..<e { mean[j] /= Double(templateCount); norm += mean[j] * mean[j] }
            norm = norm.squareRoot()
            for j in 0..<e { weights[c * e + j] = Float(norm > 0 ? mean[j] / norm : 0) }
        }
        self.labels = labels
        self.weights = Tensor(uncheckedShape: [labels.count, e], scalars: weights)
        self.logitScale = logitScale
        self.logitBias = logitBias
        self.objective = objective
    }

    /// A classifier over class embeddings computed before (`weights` [classes, embed], unit rows).
    public init(labels: [String], weights: Tensor, logitScale: Float, logitBias: Float = 0,
                objective: CLIPConfiguration.Objective = .softmax) {
        (self.labels, self.weights, self.logitScale, self.logitBias, self.objective) = (labels, weights, logitScale, logitBias, objective)
    }

    /// The probabilities of logitScale × cosine similarity + logitBias, `imageEmbeddings` [N, embed] → [N, classes]:
    /// a softmax over the classes for CLIP, each class's sigmoid for SigLIP.
    public func probabilities(_ imageEmbeddings: Tensor) throws(TensorError) -> Tensor {
        var logits = try cosineSimilarity(imageEmbeddings, weights)
        for i in logits.scalars.indices { logits.scalars[i] = logits.scalars[i] * logitScale + logitBias }
        guard objective == .sigmoid else { return softmax(logits) }
        for i in logits.scalars.indices { logits.scalars[i] = 1 / (1 + expf(-logits.scalars[i])) }
        return logits
    }
}

/// The `k` largest scores with their indices, largest first (ties keep the earlier index first).
public func topK(_ scores: [Float], k: Int) -> [(index: Int, score: Float)] {
    Array(scores.enumerated().sorted { $0.element > $1.element || ($0.element == $1.element && $0.offset < $1.offset) }
        .prefix(max(k, 0)).map { (index: $0.offset, score: $0.element) })
}

/// Why a zero-shot classifier could not be built.
public enum ClassifierError: Error, CustomStringConvertible, Equatable {
    case badTemplate(String)
    case noLabels
    case noTemplates

    public var description: String {
        switch self {
        case .badTemplate(let t): return "template '\(t)' must contain exactly one {} where the label goes"
        case .noLabels: return "no labels given"
        case .noTemplates: return "no templates given"
        }
    }
}

/// Why a pipeline step failed; `description` is the underlying message, naming the file, text or model.
public enum PipelineError: Error, CustomStringConvertible {
    case hub(HubError)
    case image(ImageError)
    case tokenizer(TokenizerError)
    case model(CLIPError)
    case classifier(ClassifierError)

    public var description: String {
        switch self {
        case .hub(let e): return e.description
        case .image(let e): return e.description
        case .tokenizer(let e): return e.description
        case .model(let e): return e.description
        case .classifier(let e): return e.description
        }
    }
}

/// The tokenizer of a pipeline loaded image-only: every text is refused, naming why.
struct NoTextTower: TextTokenizer {
    func tokenize(_ texts: [String], contextLength: Int, truncate: Bool) throws(TokenizerError) -> [[Int]] {
        throw .textTowerNotLoaded
    }
    func cleanedText(_ text: String) -> String { text }
    var vocabularySize: Int { 0 }
}

extension CLIPError {
    /// The error with the text or row it names counted in the caller's order: `rows[i]` is where the batch's text i
    /// came from.
    package func inInputOrder(_ rows: [Int]) -> CLIPError {
        func at(_ i: Int) -> Int { rows.indices.contains(i) ? rows[i] : i }
        switch self {
        case .tokenLength(let t, let n, let e, let c): return .tokenLength(text: at(t), count: n, expected: e, contextLength: c)
        case .tokenOutOfRange(let t, let p, let id, let v): return .tokenOutOfRange(text: at(t), position: p, id: id, vocabularySize: v)
        case .nonFiniteOutput(let what, let row): return .nonFiniteOutput(what: what, row: at(row))
        default: return self
        }
    }
}
