import CLIPIndex
import Foundation
import HTTPTypes
import Hummingbird

/// clip-retrieval's back end (`clip back`, clip_back.py) over an index from `clip index`: `GET /indices-list`,
/// `POST /knn-service`, `POST /metadata`, so its front end (clip-front) and clip_client work against this server.
/// Hits carry `url` (this server's thumbnail of the file), `image_path` and `caption` (the file name).
enum RetrievalRoutes {
    static func add(to router: Router<BasicRequestContext>, state: ServerState) {
        router.getAndHead("/indices-list") { _, _ in try jsonResponse([try state.requireIndex().name]) }
        router.post("/knn-service") { request, _ in try await knn(request, state) }
        router.post("/metadata") { request, _ in try await metadata(request, state) }
    }

    struct KnnRequest: Decodable {
        var text: String?
        var image: String?
        var imageURL: String?
        var embeddingInput: [Float]?
        var modality: String?
        var numImages: Int?
        var numResultIds: Int?
        var indiceName: String?
        var deduplicate: Bool?
        var useMclip: Bool?

        enum CodingKeys: String, CodingKey {
            case text, image, modality, deduplicate, useMclip = "use_mclip"
            case imageURL = "image_url", embeddingInput = "embedding_input", numImages = "num_images"
            case numResultIds = "num_result_ids", indiceName = "indice_name"
        }
    }

    struct Hit: Encodable {
        var id: Int64
        var similarity: Float
        var url: String
        var imagePath: String
        var caption: String
        enum CodingKeys: String, CodingKey { case id, similarity, url, caption, imagePath = "image_path" }
    }

    static func knn(_ request: Request, _ state: ServerState) async throws -> Response {
        let reservation = try state.admit(request)
        let body = try await state.json(request, as: KnnRequest.self)
        let index = try state.requireIndex()
        if let name = body.indiceName, !name.isEmpty, name != index.name {
            throw RequestError("no index named \(name.debugDescription); this server has \(index.name.debugDescription) (GET /indices-list)", status: 404)
        }
        if let modality = body.modality, modality != "image" {
            throw RequestError("modality \(modality.debugDescription): this index holds image embeddings only; use \"image\"")
        }
        if body.useMclip == true {
            throw RequestError("use_mclip: multilingual CLIP is not served here; the query would be read by \(state.service.modelName)'s English text tower")
        }
        let numImages = body.numImages ?? 40
        guard (1...10_000).contains(numImages) else { throw RequestError("num_images must be within 1...10000") }
        let numResults = max(numImages, min(body.numResultIds ?? numImages, 10_000))
        let service = state.service
        let query: [Float]
        if let text = body.text, !text.isEmpty {
            let tokens = try await state.tokens([text], truncate: true) { _ in "text" }
            query = try await service.embed(tokens: tokens, reservation: reservation)[0]
        } else if let image = body.image, !image.isEmpty {
            let pixels = try await state.pixels(base64: [image]) { _ in "image" }[0].pixels
            query = try await service.embed(pixels: [pixels], reservation: reservation)[0]
        } else if let embedding = body.embeddingInput {
            guard embedding.count == service.dimension, embedding.allSatisfy(\.isFinite) else {
                throw RequestError("embedding_input has \(embedding.count) values; the index's model has \(service.dimension) finite ones")
            }
            // In double precision: the squares of values near Float's smallest would vanish in single precision.
            let norm = embedding.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            guard norm > 0 else { throw RequestError("embedding_input is all zeros: it has no direction to search along") }
            query = embedding.map { Float(Double($0) / norm) }
        } else if body.imageURL != nil {
            throw RequestError("image_url is not fetched by this server (it would fetch any address for anyone); send the image itself as base64 in \"image\"")
        } else {
            throw RequestError("must fill one of text, image and embedding_input")
        }
        let deduplicate = body.deduplicate ?? false
        // Each hit is compared with those kept: bounded so a request stays a fraction of a second.
        guard !deduplicate || numImages <= 1000 else { throw RequestError("num_images must be within 1...1000 with deduplicate") }
        let search = index.search
        let hits = try await state.work.run { () throws -> [SearchHit] in
            let found = try search.search(query, top: numResults)
            return deduplicate ? deduplicated(found, keeping: numImages, search: search) : found
        }
        let base = baseURL(request)
        return try jsonResponse(hits.prefix(numImages).map { hit in
            Hit(id: hit.id, similarity: hit.score, url: "\(base)/thumbnails/\(hit.id)", imagePath: hit.path,
                caption: (hit.path as NSString).lastPathComponent)
        })
    }

    /// Drops a hit whose embedding is within cosine 0.94 of a better one (clip back's threshold): bursts of the
    /// same shot show once.
    static func deduplicated(_ hits: [SearchHit], keeping limit: Int, search: PhotoSearch) -> [SearchHit] {
        let vectors = search.vectors(fileIDs: Set(hits.map(\.id)))
        var kept: [SearchHit] = [], keptVectors: [[Float]] = []
        for hit in hits where kept.count < limit {
            guard let v = vectors[hit.id] else { kept.append(hit); continue }
            let duplicate = keptVectors.contains { k in zip(k, v).reduce(Float(0)) { $0 + $1.0 * $1.1 } >= 0.94 }
            if !duplicate { kept.append(hit); keptVectors.append(v) }
        }
        return kept
    }

    struct MetadataRequest: Decodable {
        var ids: [Int64]
        var indiceName: String?
        enum CodingKeys: String, CodingKey { case ids, indiceName = "indice_name" }
    }

    struct MetadataItem: Encodable {
        struct Fields: Encodable {
            var url: String
            var caption: String
            var imagePath: String
            var width: Int?
            var height: Int?
            enum CodingKeys: String, CodingKey { case url, caption, width, height, imagePath = "image_path" }
        }
        var id: Int64
        var metadata: Fields?

        // An id the index does not hold gets an explicit null, so a client sees every id it asked for.
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(id, forKey: .id)
            try c.encode(metadata, forKey: .metadata)
        }
        enum CodingKeys: String, CodingKey { case id, metadata }
    }

    static func metadata(_ request: Request, _ state: ServerState) async throws -> Response {
        let body = try await state.json(request, as: MetadataRequest.self)
        let index = try state.requireIndex()
        guard body.ids.count <= 10_000 else { throw RequestError("at most 10000 ids per request") }
        let base = baseURL(request)
        var items: [MetadataItem] = []
        for id in body.ids {
            let file = try index.search.file(id: id)
            items.append(MetadataItem(id: id, metadata: file.map {
                .init(url: "\(base)/thumbnails/\(id)", caption: ($0.path as NSString).lastPathComponent, imagePath: $0.path,
                      width: $0.width, height: $0.height)
            }))
        }
        return try jsonResponse(items)
    }

    /// This server as the client reached it (front ends on other origins need absolute URLs).
    static func baseURL(_ request: Request) -> String {
        let host = request.head.authority ?? "localhost"
        let scheme = request.headers[HTTPField.Name("X-Forwarded-Proto")!] == "https" ? "https" : "http"
        return "\(scheme)://\(host)"
    }
}
