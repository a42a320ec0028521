import Foundation
import Hummingbird

/// Health, metrics and the API's own description.
enum OperationsRoutes {
    static func add(to router: Router<BasicRequestContext>, state: ServerState) {
        router.getAndHead("/healthz") { _, _ in
            try jsonResponse(Health(status: "ok", model: state.service.modelName, dimension: state.service.dimension,
                                    queueDepth: state.service.batcher.depth, queueCapacity: state.service.batcher.capacity,
                                    index: state.index?.name, vectors: state.index?.search.vectors.count,
                                    uptimeSeconds: Int(state.startedAt.duration(to: .now).components.seconds)))
        }
        router.getAndHead("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(bytes: ServerMetrics.exposition())))
        }
        router.getAndHead("/openapi.json") { _, _ in
            guard let url = Bundle.module.url(forResource: "openapi", withExtension: "json", subdirectory: "Resources"),
                  let data = try? Data(contentsOf: url) else {
                throw HTTPError(.internalServerError, message: "the OpenAPI document is missing from this build")
            }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
        // OpenAI clients list models before they use one.
        router.getAndHead("/v1/models") { _, _ in
            try jsonResponse(ModelList(data: [.init(id: state.service.modelName)]))
        }
    }

    struct Health: Encodable {
        var status: String
        var model: String
        var dimension: Int
        var queueDepth: Int
        var queueCapacity: Int
        var index: String?
        var vectors: Int?
        var uptimeSeconds: Int

        enum CodingKeys: String, CodingKey {
            case status, model, dimension, index, vectors
            case queueDepth = "queue_depth", queueCapacity = "queue_capacity", uptimeSeconds = "uptime_seconds"
        }
    }

    struct ModelList: Encodable {
        struct Model: Encodable {
            var id: String
            var object = "model"
            var created = 0
            var ownedBy = "swift-clip"
            enum CodingKeys: String, CodingKey { case id, object, created, ownedBy = "owned_by" }
        }
        var object = "list"
        var data: [Model]
    }
}
