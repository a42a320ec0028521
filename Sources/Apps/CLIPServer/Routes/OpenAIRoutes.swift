import CLIPKit
import Foundation
import Hummingbird

/// `POST /v1/embeddings` in OpenAI's request and response shapes (texts, and images as `{"image": base64}`), and
/// `POST /v1/classify`, zero-shot classification as `clip classify --json` reports it.
enum OpenAIRoutes {
    static func add(to router: Router<BasicRequestContext>, state: ServerState) {
        router.post("/v1/embeddings") { request, _ in try await embeddings(request, state) }
        router.post("/v1/classify") { request, _ in try await classify(request, state) }
    }

    // MARK: Embeddings

    /// One item of `input`: a text, or an image (base64 or a data URL).
    enum Item: Decodable {
        case text(String)
        case image(String)

        private enum Keys: String, CodingKey { case text, image }

        init(from decoder: any Decoder) throws {
            if let text = try? decoder.singleValueContainer().decode(String.self) { self = .text(text); return }
            if (try? decoder.singleValueContainer().decode(Int.self)) != nil {
                throw RequestError("input\(Self.position(decoder)): token ids are not accepted (they would be another tokenizer's); send the text")
            }
            guard let object = try? decoder.container(keyedBy: Keys.self) else {
                throw RequestError("input\(Self.position(decoder)): expected a string or {\"image\": \"<base64>\"} or {\"text\": \"…\"}")
            }
            if let image = try object.decodeIfPresent(String.self, forKey: .image) {
                self = .image(image)
            } else if let text = try object.decodeIfPresent(String.self, forKey: .text) {
                self = .text(text)
            } else {
                throw RequestError("input\(Self.position(decoder)): an object needs \"image\" (base64 or a data URL) or \"text\"")
            }
        }

        private static func position(_ decoder: any Decoder) -> String {
            decoder.codingPath.last?.intValue.map { "[\($0)]" } ?? ""
        }
    }

    struct EmbeddingsRequest: Decodable {
        var input: [Item]
        var model: String?
        var encodingFormat: String?
        var dimensions: Int?
        /// Not OpenAI's: cut texts longer than the model's context instead of refusing them.
        var truncate: Bool?

        enum CodingKeys: String, CodingKey { case input, model, dimensions, truncate, encodingFormat = "encoding_format" }

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            if let one = try? c.decode(String.self, forKey: .input) {
                input = [.text(one)]
            } else if c.contains(.input) {
                input = try c.decode([Item].self, forKey: .input)
            } else {
                throw RequestError("missing \"input\": a string, or a list of strings and {\"image\": \"<base64>\"} objects")
            }
            model = try c.decodeIfPresent(String.self, forKey: .model)
            encodingFormat = try c.decodeIfPresent(String.self, forKey: .encodingFormat)
            dimensions = try c.decodeIfPresent(Int.self, forKey: .dimensions)
            truncate = try c.decodeIfPresent(Bool.self, forKey: .truncate)
        }
    }

    struct EmbeddingsResponse: Encodable {
        struct Datum: Encodable {
            var object = "embedding"
            var index: Int
            var embedding: Embedding
        }
        enum Embedding: Encodable {
            case floats([Float])
            case base64(String)
            func encode(to encoder: any Encoder) throws {
                var c = encoder.singleValueContainer()
                switch self {
                case .floats(let v): try c.encode(v)
                case .base64(let s): try c.encode(s)
                }
            }
        }
        struct Usage: Encodable {
            var promptTokens: Int
            var totalTokens: Int
            enum CodingKeys: String, CodingKey { case promptTokens = "prompt_tokens", totalTokens = "total_tokens" }
        }
        var object = "list"
        var data: [Datum]
        var model: String
        var usage: Usage
    }

    static func embeddings(_ request: Request, _ state: ServerState) async throws -> Response {
        let reservation = try state.admit(request)
        let body = try await state.json(request, as: EmbeddingsRequest.self)
        let service = state.service
        guard !body.input.isEmpty else { throw RequestError("\"input\" is empty") }
        guard body.input.count <= service.maxInputsPerRequest else {
            throw RequestError("\"input\" has \(body.input.count) items; at most \(service.maxInputsPerRequest) per request")
        }
        if let d = body.dimensions, d != service.dimension {
            throw RequestError("\"dimensions\": \(d) asked; \(service.modelName) gives \(service.dimension) (CLIP embeddings cannot be shortened)")
        }
        let base64: Bool
        switch body.encodingFormat ?? "float" {
        case "float": base64 = false
        case "base64": base64 = true
        case let other: throw RequestError("\"encoding_format\": \(other.debugDescription) is neither \"float\" nor \"base64\"")
        }
        try reservation.grow(to: body.input.count)

        var textPositions: [Int] = [], texts: [String] = []
        var imagePositions: [Int] = [], images: [String] = []
        for (i, item) in body.input.enumerated() {
            switch item {
            case .text(let t): textPositions.append(i); texts.append(t)
            case .image(let encoded): imagePositions.append(i); images.append(encoded)
            }
        }
        let tokens = try await state.tokens(texts, truncate: body.truncate ?? false) { [textPositions] in "input[\(textPositions[$0])]" }
        let pixels = try await state.pixels(base64: images) { [imagePositions] in "input[\(imagePositions[$0])].image" }.map(\.pixels)
        async let textRows = service.embed(tokens: tokens, reservation: reservation)
        async let imageRows = service.embed(pixels: pixels, reservation: reservation)
        var rows = [[Float]](repeating: [], count: body.input.count)
        for (i, row) in zip(textPositions, try await textRows) { rows[i] = row }
        for (i, row) in zip(imagePositions, try await imageRows) { rows[i] = row }

        let used = tokens.reduce(0) { $0 + $1.filter { $0 != 0 }.count }
        let data = rows.enumerated().map { i, row in
            EmbeddingsResponse.Datum(index: i, embedding: base64 ? .base64(littleEndianBase64(row)) : .floats(row))
        }
        return try jsonResponse(EmbeddingsResponse(data: data, model: service.modelName,
                                                   usage: .init(promptTokens: used, totalTokens: used)))
    }

    /// float32 little-endian bytes in base64: OpenAI's `encoding_format: "base64"` (the Python client's default).
    static func littleEndianBase64(_ v: [Float]) -> String {
        var bytes = [UInt8]()
        bytes.reserveCapacity(v.count * 4)
        for x in v { withUnsafeBytes(of: x.bitPattern.littleEndian) { bytes += $0 } }
        return Data(bytes).base64EncodedString()
    }

    // MARK: Classification

    struct ClassifyRequest: Decodable {
        var images: [String]
        var labels: [String]
        var templates: [String]?
    }

    struct ClassifyResponse: Encodable {
        struct Result: Encodable {
            var image: Int
            var labels: [String]
            var probs: [Float]
        }
        var object = "list"
        var model: String
        var data: [Result]
    }

    static func classify(_ request: Request, _ state: ServerState) async throws -> Response {
        let reservation = try state.admit(request)
        let body = try await state.json(request, as: ClassifyRequest.self)
        let service = state.service
        guard !body.images.isEmpty else { throw RequestError("\"images\" is empty") }
        guard !body.labels.isEmpty else { throw RequestError("\"labels\" is empty") }
        guard body.images.count <= service.maxInputsPerRequest, body.labels.count <= 1000 else {
            throw RequestError("at most \(service.maxInputsPerRequest) images and 1000 labels per request")
        }
        for (i, t) in (body.templates ?? []).enumerated() where !PromptTemplates.isValid(t) {
            throw RequestError("templates[\(i)]: \(t.debugDescription) must contain exactly one {} (or be \(PromptTemplates.ensembleNamesPhrase(quote: "\"")))")
        }
        let templates = PromptTemplates.expand(body.templates ?? [])
        try reservation.grow(to: body.images.count)
        let pixels = try await state.pixels(base64: body.images) { "images[\($0)]" }.map(\.pixels)
        async let rows = service.embed(pixels: pixels, reservation: reservation)
        let classifier = try await service.classifier(labels: body.labels, templates: templates, reservation: reservation) { prompts in
            try await state.tokens(prompts, truncate: true) { "prompt \(prompts[$0].debugDescription)" }
        }
        let embeddings = try await rows
        let probs = try classifier.probabilities(Tensor(shape: [embeddings.count, service.dimension], scalars: embeddings.flatMap { $0 }))
        let n = body.labels.count
        let data = (0..<embeddings.count).map { i in
            ClassifyResponse.Result(image: i, labels: body.labels, probs: Array(probs.scalars[i * n..<(i + 1) * n]))
        }
        return try jsonResponse(ClassifyResponse(model: service.modelName, data: data))
    }
}
