import CLIPImage
import CLIPKit
import CLIPTensor
import CLIPTokenizer
import Foundation

/// A user mistake in a request: answered with 400 (or the status given) and this message.
package struct RequestError: Error, CustomStringConvertible, Sendable {
    package let status: Int
    package let description: String
    package init(_ description: String, status: Int = 400) { (self.description, self.status) = (description, status) }
}

/// The model behind every route: tokenizes and decodes in the request's task, embeds through the batcher.
package final class EmbeddingService: Sendable {
    package let pipeline: CLIPPipeline
    package let batcher: InferenceBatcher
    /// The name clients see (`model` in OpenAI responses, the index's model name).
    package let modelName: String
    /// Inputs (texts or images) one request may carry.
    package let maxInputsPerRequest: Int
    private let classifiers = ClassifierCache(capacity: 64)

    package var dimension: Int { pipeline.model.configuration.embedDim }

    /// - Parameters:
    ///   - maxBatch: inputs per model call at most.
    ///   - maxWait: how long a partial batch waits for more inputs.
    ///   - queueCapacity: inputs waiting (queued or admitted, not counting the batch being run) at most; beyond,
    ///     requests are refused at once. The queue's memory bound.
    ///   - maxQueueWait: the longest predicted wait a request is admitted to (see `InferenceBatcher`).
    ///   - maxInputsPerRequest: texts or images one request may carry.
    package init(pipeline: CLIPPipeline, modelName: String, maxBatch: Int = 32, maxWait: Duration = .milliseconds(5),
                queueCapacity: Int = 1024, maxQueueWait: Duration = .seconds(30), maxInputsPerRequest: Int = 2048,
                observer: BatchObserver? = nil) {
        self.pipeline = pipeline
        self.modelName = modelName
        self.maxInputsPerRequest = maxInputsPerRequest
        let model = pipeline.model
        let images = ImageBatchEncoder(pipeline: pipeline)
        batcher = InferenceBatcher(maxBatch: maxBatch, maxWait: maxWait, capacity: queueCapacity, maxQueueWait: maxQueueWait,
                                   observer: observer) { lane, inputs in
            switch lane {
            case .text:
                let ids = inputs.map { if case .tokens(let t) = $0 { return t } else { return [] } }
                let out = try model.encodeText(ids), unit = l2Normalized(out), d = out.shape.last ?? 0
                return (0..<inputs.count).map { Array(unit.scalars[$0 * d..<($0 + 1) * d]) }
            case .image:
                return try images.embeddings(pixels: inputs.map { if case .pixels(let p) = $0 { return p } else { return [] } })
            }
        }
    }

    /// Token ids of each text, padded to the context; a text longer than the context is an error naming its
    /// position unless `truncate`.
    package func tokens(_ texts: [String], truncate: Bool, names: (Int) -> String = { "input[\($0)]" }) throws(RequestError) -> [[Int]] {
        do {
            return try pipeline.tokenizer.tokenize(texts, contextLength: pipeline.model.configuration.text.contextLength,
                                                   truncate: truncate)
        } catch TokenizerError.textTooLong(let i, let n, let c) {
            throw RequestError("\(names(i)): the text is \(n) tokens long (with start and end tokens), more than the model's context of \(c); shorten it, or send \"truncate\": true")
        } catch {
            throw RequestError("\(error)")
        }
    }

    /// Unit-length text embeddings through the batcher.
    package func embed(tokens: [[Int]], reservation: InferenceBatcher.Reservation) async throws -> [[Float]] {
        try await reservation.run(.text, tokens.map { .tokens($0) })
    }

    /// Unit-length image embeddings through the batcher.
    package func embed(pixels: [[Float]], reservation: InferenceBatcher.Reservation) async throws -> [[Float]] {
        try await reservation.run(.image, pixels.map { .pixels($0) })
    }

    /// The zero-shot classifier for labels and templates; recent ones are kept, so a client that sends the same
    /// labels with every image pays for their embeddings once.
    /// `tokenize` makes the prompts' token ids (the server runs it off its request threads).
    package func classifier(labels: [String], templates: [String], reservation: InferenceBatcher.Reservation,
                           tokenize: ([String]) async throws -> [[Int]]) async throws -> ZeroShotClassifier {
        let key = ClassifierCache.Key(labels: labels, templates: templates)
        if let known = classifiers[key] { return known }
        let prompts: [String]
        do { prompts = try ZeroShotClassifier.prompts(labels: labels, templates: templates) } catch {
            throw RequestError("\(error)")
        }
        guard prompts.count <= 4096 else {
            throw RequestError("\(labels.count) labels × \(templates.count) templates = \(prompts.count) prompts; at most 4096")
        }
        let ids = try await tokenize(prompts)
        let rows = try await embed(tokens: ids, reservation: reservation)
        let classifier = ZeroShotClassifier(labels: labels, templateCount: templates.count, promptEmbeddings: rows.flatMap { $0 },
                                            dimension: dimension, logitScale: expf(pipeline.model.logitScale),
                                            logitBias: pipeline.model.logitBias,
                                            objective: pipeline.model.configuration.objective)
        classifiers[key] = classifier
        return classifier
    }
}

/// A small least-recently-inserted cache of classifiers.
final class ClassifierCache: @unchecked Sendable {
    struct Key: Hashable { var labels: [String]; var templates: [String] }
    private let lock = NSLock()
    private var entries: [Key: ZeroShotClassifier] = [:]
    private var order: [Key] = []
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    subscript(key: Key) -> ZeroShotClassifier? {
        get { lock.withLock { entries[key] } }
        set {
            lock.withLock {
                guard let newValue else { return }
                if entries.updateValue(newValue, forKey: key) == nil { order.append(key) }
                while order.count > capacity { entries[order.removeFirst()] = nil }
            }
        }
    }
}
