import CLIPIndex
import CLIPKit
@testable import CLIPServer
import CLIPTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

/// The shipped model (in the package's resources: no network), shared by every test.
let pipeline: CLIPPipeline = { try! CLIPPipeline.load("default", showProgress: false) }()

/// The two example images indexed once into a scratch folder.
let examples: ServedIndex = {
    let dir = try! scratchDirectory("serve")
    let index = try! PhotoIndex(path: "\(dir)/examples.sqlite")
    let model = try! ModelFingerprint.indexedModel(pipeline, name: "default", in: index, registering: true)
    let examples = testsDirectory.deletingLastPathComponent().appendingPathComponent("Examples").path
    _ = try! Indexer(index: index, pipeline: pipeline, model: model).run(folders: [examples], options: IndexingOptions())
    return ServedIndex(name: "examples", search: try! PhotoSearch(index: index, model: model))
}()

let examplesFolder = testsDirectory.deletingLastPathComponent().appendingPathComponent("Examples").path
let fixtures = testsDirectory.appendingPathComponent("CLIPServerTests/Fixtures").path

/// A started service; batches of at most `maxBatch`, waiting `maxWait` for company.
func makeService(maxBatch: Int = 8, maxWait: Duration = .milliseconds(2), capacity: Int = 64,
                 observer: BatchObserver? = nil) -> EmbeddingService {
    let service = EmbeddingService(pipeline: pipeline, modelName: "swift-clip-shapes", maxBatch: maxBatch, maxWait: maxWait,
                                   queueCapacity: capacity, maxInputsPerRequest: 16, observer: observer)
    service.batcher.start()
    return service
}

func makeApp(_ service: EmbeddingService, index: ServedIndex? = examples, options: ServerOptions = ServerOptions()) -> some ApplicationProtocol {
    Application(router: CLIPServer.makeRouter(service: service, index: index, options: options))
}

func json(_ buffer: ByteBuffer) -> Any? { try? JSONSerialization.jsonObject(with: Data(buffer: buffer)) }

func jsonBody(_ object: Any) -> ByteBuffer { ByteBuffer(bytes: try! JSONSerialization.data(withJSONObject: object)) }

func base64(_ path: String) -> String { try! Data(contentsOf: URL(fileURLWithPath: path)).base64EncodedString() }

func errorMessage(_ buffer: ByteBuffer) -> String {
    ((json(buffer) as? [String: Any])?["error"] as? [String: Any])?["message"] as? String ?? String(buffer: buffer)
}

/// The largest relative difference between two embeddings.
func maxRelative(_ a: [Float], _ b: [Float]) -> Double { relativeError(a, b) }

func floats(_ any: Any?) -> [Float] { (any as? [Any])?.compactMap { ($0 as? NSNumber)?.floatValue } ?? [] }

@Suite("clip serve: the OpenAI-style routes")
struct OpenAIRouteTests {
    let service = makeService()

    /// LangChain's OpenAIEmbeddings sends 1,000 texts per request by default; OpenAI takes 2,048.
    @Test("2048 texts in one request are embedded; 2049 are refused naming the limit")
    func manyInputs() async throws {
        // The defaults clip serve runs with.
        let service = EmbeddingService(pipeline: pipeline, modelName: "swift-clip-shapes")
        service.batcher.start()
        defer { service.batcher.shutdown() }
        try await makeApp(service).test(.router) { client in
            let texts = (0..<2048).map { "photo number \($0)" }
            try await client.execute(uri: "/v1/embeddings", method: .post, body: jsonBody(["input": texts])) { response in
                #expect(response.status == .ok, "\(errorMessage(response.body))")
                let data = ((json(response.body) as? [String: Any])?["data"] as? [[String: Any]]) ?? []
                #expect(data.count == 2048 && data.last?["index"] as? Int == 2047)
            }
            try await client.execute(uri: "/v1/embeddings", method: .post, body: jsonBody(["input": texts + ["one more"]])) { response in
                #expect(response.status == .badRequest && errorMessage(response.body).contains("at most 2048"))
            }
        }
    }

    @Test("embeddings of texts and images equal the pipeline's, in input order, as floats and as base64")
    func embeddings() async throws {
        let star = "\(examplesFolder)/blue-star.png"
        let expectedText = try pipeline.textEmbeddings(["a blue star", "a red heart"])
        let expectedImage = try pipeline.imageEmbeddings(files: [star])
        let d = pipeline.model.configuration.embedDim
        try await makeApp(service).test(.router) { client in
            let request: [String: Any] = ["model": "swift-clip-shapes",
                                          "input": ["a blue star", ["image": "data:image/png;base64," + base64(star)], ["text": "a red heart"]]]
            try await client.execute(uri: "/v1/embeddings", method: .post, body: jsonBody(request)) { response in
                #expect(response.status == .ok)
                let body = try #require(json(response.body) as? [String: Any])
                #expect(body["object"] as? String == "list")
                #expect(body["model"] as? String == "swift-clip-shapes")
                let data = try #require(body["data"] as? [[String: Any]])
                #expect(data.map { $0["index"] as? Int } == [0, 1, 2])
                #expect(data.allSatisfy { $0["object"] as? String == "embedding" })
                let rows = data.map { floats($0["embedding"]) }
                #expect(maxRelative(rows[0], Array(expectedText.scalars[0..<d])) <= 1e-5)
                #expect(maxRelative(rows[1], Array(expectedImage.scalars)) <= 1e-5)
                #expect(maxRelative(rows[2], Array(expectedText.scalars[d..<2 * d])) <= 1e-5)
                let usage = try #require(body["usage"] as? [String: Int])
                // "a blue star" and "a red heart": 3 tokens each plus start and end.
                #expect(usage["prompt_tokens"] == 10 && usage["total_tokens"] == 10)
            }
            // OpenAI's Python client asks for base64: little-endian float32.
            try await client.execute(uri: "/v1/embeddings", method: .post,
                                     body: jsonBody(["input": "a blue star", "encoding_format": "base64"])) { response in
                let body = try #require(json(response.body) as? [String: Any])
                let encoded = try #require(((body["data"] as? [[String: Any]])?.first?["embedding"]) as? String)
                let bytes = try #require(Data(base64Encoded: encoded))
                let values = bytes.withUnsafeBytes { raw in
                    (0..<raw.count / 4).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
                }
                #expect(maxRelative(values, Array(expectedText.scalars[0..<d])) <= 1e-5)
            }
        }
    }

    @Test("classify gives the probabilities clip classify gives")
    func classify() async throws {
        let files = ["\(examplesFolder)/blue-star.png", "\(examplesFolder)/red-heart.png"]
        let labels = ["a red heart", "a blue star", "a green circle"]
        let classifier = try pipeline.zeroShotClassifier(labels: labels, templates: ["{}"])
        let expected = try classifier.probabilities(try pipeline.imageEmbeddings(files: files))
        try await makeApp(service).test(.router) { client in
            try await client.execute(uri: "/v1/classify", method: .post,
                                     body: jsonBody(["images": files.map(base64), "labels": labels, "templates": ["{}"]])) { response in
                #expect(response.status == .ok)
                let data = try #require((json(response.body) as? [String: Any])?["data"] as? [[String: Any]])
                #expect(data.count == 2)
                for (i, result) in data.enumerated() {
                    #expect(result["labels"] as? [String] == labels)
                    let probs = floats(result["probs"])
                    for (j, p) in probs.enumerated() { #expect(abs(p - expected.scalars[i * 3 + j]) <= 1e-5) }
                }
                #expect(floats(data[0]["probs"])[1] > 0.9 && floats(data[1]["probs"])[0] > 0.9)
            }
        }
    }

    struct Mistake: Sendable, CustomTestStringConvertible {
        let name: String
        let uri: String
        let body: String
        let status: Int
        let message: String
        var testDescription: String { name }
    }

    static let mistakes: [Mistake] = [
        .init(name: "not JSON", uri: "/v1/embeddings", body: "{input:", status: 400, message: "not valid JSON"),
        .init(name: "no input", uri: "/v1/embeddings", body: #"{"model":"x"}"#, status: 400, message: "missing \"input\""),
        .init(name: "empty input", uri: "/v1/embeddings", body: #"{"input":[]}"#, status: 400, message: "\"input\" is empty"),
        .init(name: "token ids", uri: "/v1/embeddings", body: #"{"input":[[1,2,3]]}"#, status: 400, message: "input[0]"),
        .init(name: "wrong type", uri: "/v1/embeddings", body: #"{"input":[true]}"#, status: 400, message: "input[0]: expected a string"),
        .init(name: "bad base64", uri: "/v1/embeddings", body: #"{"input":[{"image":"%%%"}]}"#, status: 400, message: "input[0].image: not valid base64"),
        .init(name: "not an image", uri: "/v1/embeddings", body: #"{"input":["a",{"image":"aGVsbG8gd29ybGQ="}]}"#, status: 400, message: "input[1].image: not a JPEG, PNG, WebP, HEIC, AVIF, GIF, BMP or TIFF"),
        .init(name: "truncated PNG", uri: "/v1/embeddings", body: #"{"input":[{"image":"iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB"}]}"#, status: 400, message: "input[0].image"),
        .init(name: "text too long", uri: "/v1/embeddings", body: #"{"input":["ok","\#(String(repeating: "word ", count: 100))"]}"#, status: 400, message: "input[1]"),
        .init(name: "too many inputs", uri: "/v1/embeddings", body: #"{"input":[\#(Array(repeating: "\"a\"", count: 17).joined(separator: ","))]}"#, status: 400, message: "at most 16"),
        .init(name: "other dimensions", uri: "/v1/embeddings", body: #"{"input":"a","dimensions":3}"#, status: 400, message: "\"dimensions\""),
        .init(name: "bad encoding", uri: "/v1/embeddings", body: #"{"input":"a","encoding_format":"int8"}"#, status: 400, message: "encoding_format"),
        .init(name: "classify without labels", uri: "/v1/classify", body: #"{"images":["aGk="],"labels":[]}"#, status: 400, message: "\"labels\" is empty"),
        .init(name: "classify bad template", uri: "/v1/classify", body: #"{"images":["aGk="],"labels":["a"],"templates":["no braces"]}"#, status: 400, message: "templates[0]"),
        .init(name: "knn without a query", uri: "/knn-service", body: #"{"modality":"image","num_images":3}"#, status: 400, message: "must fill one of"),
        .init(name: "knn of a URL", uri: "/knn-service", body: #"{"image_url":"http://169.254.169.254/","modality":"image","num_images":3}"#, status: 400, message: "image_url is not fetched"),
        .init(name: "knn multilingual", uri: "/knn-service", body: #"{"text":"un chat","modality":"image","num_images":3,"use_mclip":true}"#, status: 400, message: "use_mclip"),
        .init(name: "knn text modality", uri: "/knn-service", body: #"{"text":"a","modality":"text","num_images":3}"#, status: 400, message: "image embeddings only"),
        .init(name: "knn other index", uri: "/knn-service", body: #"{"text":"a","modality":"image","num_images":3,"indice_name":"laion5B"}"#, status: 404, message: "no index named"),
        .init(name: "knn wrong embedding", uri: "/knn-service", body: #"{"embedding_input":[1,2],"modality":"image","num_images":3}"#, status: 400, message: "embedding_input has 2 values"),
        .init(name: "metadata without ids", uri: "/metadata", body: #"{"indice_name":"examples"}"#, status: 400, message: "missing \"ids\""),
        .init(name: "predict as JSON", uri: "/predict", body: #"{"entries":"x"}"#, status: 400, message: "multipart/form-data"),
    ]

    @Test("a mistaken request gets a 4xx naming the mistake", arguments: mistakes)
    func mistaken(_ mistake: Mistake) async throws {
        try await makeApp(service).test(.router) { client in
            try await client.execute(uri: mistake.uri, method: .post, body: ByteBuffer(string: mistake.body)) { response in
                #expect(response.status.code == mistake.status, "\(String(buffer: response.body))")
                #expect(errorMessage(response.body).contains(mistake.message), "\(errorMessage(response.body))")
            }
        }
        #expect(service.batcher.depth == 0, "an answered request must give its room in the queue back")
    }
}

@Suite("clip serve: immich's machine-learning API")
struct ImmichTests {
    let service = makeService()

    func fixture(_ name: String) throws -> (ByteBuffer, String) {
        let body = try Data(contentsOf: URL(fileURLWithPath: "\(fixtures)/\(name).body"))
        let type = try String(contentsOfFile: "\(fixtures)/\(name).content-type", encoding: .utf8)
        return (ByteBuffer(bytes: body), type)
    }

    /// What immich's server does with the answer: `response.json()`, then the `clip` string parsed as a vector.
    func immichEmbedding(_ body: ByteBuffer) throws -> [Float] {
        let object = try #require(json(body) as? [String: Any])
        let text = try #require(object["clip"] as? String, "immich reads response['clip'] as a string")
        return floats(try JSONSerialization.jsonObject(with: Data(text.utf8)))
    }

    @Test("the visual and textual requests immich's server sends get the answers it parses")
    func predict() async throws {
        let image = "\(imageDirectory)/jpeg_progressive_mid.jpg"
        let expectedImage = Array(try pipeline.imageEmbeddings(files: [image]).scalars)
        let expectedText = Array(try pipeline.textEmbeddings(["a blue star"]).scalars)
        try await makeApp(service).test(.router) { client in
            try await client.execute(uri: "/ping", method: .get) { response in
                #expect(response.status == .ok && String(buffer: response.body) == "pong")
            }
            let (visual, visualType) = try fixture("immich_visual")
            try await client.execute(uri: "/predict", method: .post, headers: [.contentType: visualType], body: visual) { response in
                #expect(response.status == .ok, "\(String(buffer: response.body))")
                let embedding = try immichEmbedding(response.body)
                #expect(maxRelative(embedding, expectedImage) <= 1e-5)
                let object = try #require(json(response.body) as? [String: Any])
                #expect(object["imageWidth"] as? Int == 97 && object["imageHeight"] as? Int == 61)
            }
            let (textual, textualType) = try fixture("immich_textual")
            try await client.execute(uri: "/predict", method: .post, headers: [.contentType: textualType], body: textual) { response in
                #expect(response.status == .ok, "\(String(buffer: response.body))")
                let embedding = try immichEmbedding(response.body)
                #expect(maxRelative(embedding, expectedText) <= 1e-5)
                #expect((json(response.body) as? [String: Any])?["imageWidth"] == nil)
            }
        }
    }

    @Test("a model immich names that is not the one served is refused; the same weights by another name are not", arguments: [
        ("ViT-B-32__laion2b_s34b_b79k", 422), ("ViT-B/32", 200), ("ViT-B-32/openai", 200), ("swift-clip-shapes", 200),
    ])
    func modelNames(served: String, status: Int) async throws {
        let named = EmbeddingService(pipeline: pipeline, modelName: served, maxBatch: 4, maxWait: .milliseconds(2),
                                     queueCapacity: 8, maxInputsPerRequest: 4)
        named.batcher.start()
        defer { named.batcher.shutdown() }
        let (textual, textualType) = try fixture("immich_textual")  // asks for ViT-B-32__openai
        try await makeApp(named).test(.router) { client in
            try await client.execute(uri: "/predict", method: .post, headers: [.contentType: textualType], body: textual) { response in
                #expect(response.status.code == status, "\(served): \(String(buffer: response.body))")
                if status == 422 {
                    #expect(errorMessage(response.body).contains("this server serves ViT-B-32/laion2b_s34b_b79k"))
                }
            }
        }
    }

    @Test("immich's other tasks, broken forms and missing fields get 4xx naming the problem")
    func refusals() async throws {
        @Sendable func form(_ fields: [(String, String)]) -> (ByteBuffer, String) {
            let boundary = "----formdata-undici-000000000001"
            var body = ""
            for (name, value) in fields {
                body += "--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"\r\n\r\n\(value)\r\n"
            }
            body += "--\(boundary)--\r\n"
            return (ByteBuffer(string: body), "multipart/form-data; boundary=\(boundary)")
        }
        let cases: [([(String, String)], Int, String)] = [
            ([("entries", #"{"facial-recognition":{"detection":{"modelName":"buffalo_l","options":{"minScore":0.7}},"recognition":{"modelName":"buffalo_l"}}}"#)], 422, "CLIP only"),
            ([("entries", "{not json")], 422, "\"entries\" is not valid"),
            ([("text", "a dog")], 422, "no \"entries\""),
            ([("entries", #"{"clip":{"textual":{"modelName":"ViT-B-32__openai"}}}"#)], 400, "needs a \"text\""),
            ([("entries", #"{"clip":{"visual":{"modelName":"ViT-B-32__openai"}}}"#), ("image", "not an image")], 400, "image: not a JPEG"),
        ]
        try await makeApp(service).test(.router) { client in
            for (fields, status, message) in cases {
                let (body, type) = form(fields)
                try await client.execute(uri: "/predict", method: .post, headers: [.contentType: type], body: body) { response in
                    #expect(response.status.code == status, "\(fields)")
                    #expect(errorMessage(response.body).contains(message), "\(errorMessage(response.body))")
                }
            }
            try await client.execute(uri: "/predict", method: .post, headers: [.contentType: "multipart/form-data; boundary=x"],
                                     body: ByteBuffer(string: "--x\r\nContent-Disposition: form-data; name=\"entries\"\r\n\r\n{\"clip\"")) { response in
                #expect(response.status.code == 400 && errorMessage(response.body).contains("multipart body cannot be read"))
            }
        }
    }
}

@Suite("clip serve: clip-retrieval's back end and the search page")
struct RetrievalTests {
    let service = makeService()

    @Test("clip-front's requests (indices-list, knn-service, metadata) get what it renders")
    func clipFront() async throws {
        try await makeApp(service).test(.router) { client in
            try await client.execute(uri: "/indices-list", method: .get) { response in
                #expect(json(response.body) as? [String] == ["examples"])
            }
            // As clip-service.js's callClipService builds it.
            let knn: [String: Any] = ["text": "a blue star", "image": NSNull(), "image_url": NSNull(), "modality": "image",
                                      "num_images": 40, "indice_name": "examples", "num_result_ids": 40, "use_mclip": false,
                                      "deduplicate": true, "use_safety_model": false]
            var firstID = 0
            try await client.execute(uri: "/knn-service", method: .post, body: jsonBody(knn)) { response in
                #expect(response.status == .ok, "\(String(buffer: response.body))")
                let hits = try #require(json(response.body) as? [[String: Any]])
                #expect(hits.count == 2)
                #expect((hits[0]["image_path"] as? String)?.hasSuffix("blue-star.png") == true)
                #expect(hits[0]["caption"] as? String == "blue-star.png")
                firstID = try #require(hits[0]["id"] as? Int)
                let url = try #require(hits[0]["url"] as? String)
                #expect(url.hasPrefix("http://") && url.hasSuffix("/thumbnails/\(firstID)"), "\(url)")
                let scores = hits.compactMap { ($0["similarity"] as? NSNumber)?.floatValue }
                #expect(scores == scores.sorted(by: >))
            }
            try await client.execute(uri: "/metadata", method: .post, body: jsonBody(["ids": [firstID, 999], "indice_name": "examples"])) { response in
                let items = try #require(json(response.body) as? [[String: Any]])
                #expect(items.count == 2 && items[0]["id"] as? Int == firstID)
                #expect(((items[0]["metadata"] as? [String: Any])?["image_path"] as? String)?.hasSuffix("blue-star.png") == true)
                #expect(items[1]["metadata"] is NSNull)
            }
            // CORS: clip-front runs on another origin.
            try await client.execute(uri: "/knn-service", method: .options,
                                     headers: [.origin: "https://rom1504.github.io", .accessControlRequestMethod: "POST"]) { response in
                #expect(response.headers[.accessControlAllowOrigin] == "*")
            }
        }
    }

    @Test("a clip index run while the server runs shows in its results, its deletions too, without a restart")
    func indexRunWhileServing() async throws {
        let dir = try scratchDirectory("serve-live")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: "\(dir)/photos", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "\(examplesFolder)/blue-star.png", toPath: "\(dir)/photos/blue-star.png")
        let index = try PhotoIndex(path: "\(dir)/index.sqlite")
        let model = try ModelFingerprint.indexedModel(pipeline, name: "default", in: index, registering: true)
        let indexer = Indexer(index: index, pipeline: pipeline, model: model)
        _ = try indexer.run(folders: ["\(dir)/photos"])
        let served = ServedIndex(name: "live", search: try PhotoSearch(index: index, model: model), recheckInterval: .zero)
        @Sendable func names(_ client: some TestClientProtocol) async throws -> [String] {
            try await client.execute(uri: "/api/search?q=a+red+heart&top=5", method: .get) { response in
                let hits = (json(response.body) as? [String: Any])?["hits"] as? [[String: Any]] ?? []
                return hits.compactMap { ($0["path"] as? String).map { ($0 as NSString).lastPathComponent } }
            }
        }
        try await makeApp(service, index: served).test(.router) { client in
            @Sendable func eventually(_ expected: [String]) async throws -> [String] {
                var got: [String] = []
                for _ in 0..<500 {
                    got = try await names(client)
                    if got == expected { break }
                    try await Task.sleep(for: .milliseconds(10))
                }
                return got
            }
            var found = try await names(client)
            #expect(found == ["blue-star.png"])
            // Another process's index run, as far as the server can tell: through its own connections.
            let other = try PhotoIndex(path: "\(dir)/index.sqlite")
            let otherModel = try ModelFingerprint.indexedModel(pipeline, name: "default", in: other, registering: true)
            try FileManager.default.copyItem(atPath: "\(examplesFolder)/red-heart.png", toPath: "\(dir)/photos/red-heart.png")
            _ = try Indexer(index: other, pipeline: pipeline, model: otherModel).run(folders: ["\(dir)/photos"])
            // The check runs in the background: requests meanwhile get the search as it was, never wait.
            found = try await eventually(["red-heart.png", "blue-star.png"])
            #expect(found == ["red-heart.png", "blue-star.png"])
            try FileManager.default.removeItem(atPath: "\(dir)/photos/blue-star.png")
            _ = try Indexer(index: other, pipeline: pipeline, model: otherModel).run(folders: ["\(dir)/photos"])
            found = try await eventually(["red-heart.png"])
            #expect(found == ["red-heart.png"])
        }
    }

    @Test("the search page's API: composed terms, more like this, thumbnails and originals by id only")
    func page() async throws {
        try await makeApp(service).test(.router) { client in
            try await client.execute(uri: "/", method: .get) { response in
                #expect(response.status == .ok && String(buffer: response.body).contains("<form id=\"search-form\""))
            }
            var star: Int64 = 0
            // "a blue star" as the page's URLSearchParams sends it: spaces as +.
            try await client.execute(uri: "/api/search?q=a+blue+star&top=5", method: .get) { response in
                let body = try #require(json(response.body) as? [String: Any])
                #expect(body["query"] as? String == "a blue star")
                let hits = try #require(body["hits"] as? [[String: Any]])
                #expect((hits.first?["path"] as? String)?.hasSuffix("blue-star.png") == true)
                star = Int64(try #require(hits.first?["id"] as? Int))
            }
            // "- a blue star + a red heart": the + and - of clip search, percent-encoded as the page sends them.
            try await client.execute(uri: "/api/search?q=a+red+heart+%2B+a+heart+-+a+blue+star", method: .get) { response in
                let hits = try #require((json(response.body) as? [String: Any])?["hits"] as? [[String: Any]])
                #expect((hits.first?["path"] as? String)?.hasSuffix("red-heart.png") == true)
            }
            try await client.execute(uri: "/api/search?like=\(star)", method: .get) { response in
                let hits = try #require((json(response.body) as? [String: Any])?["hits"] as? [[String: Any]])
                #expect(hits.first?["id"] as? Int == Int(star))
                #expect(abs(((hits.first?["score"] as? NSNumber)?.floatValue ?? 0) - 1) < 1e-4)
            }
            try await client.execute(uri: "/thumbnails/\(star)?size=64", method: .get) { response in
                #expect(response.status == .ok && response.headers[.contentType] == "image/png")
                #expect(Array(Data(buffer: response.body).prefix(4)) == [0x89, 0x50, 0x4E, 0x47])
            }
            try await client.execute(uri: "/files/\(star)", method: .get) { response in
                let original = try Data(contentsOf: URL(fileURLWithPath: "\(examplesFolder)/blue-star.png"))
                #expect(Data(buffer: response.body) == original)
            }
            for (uri, status) in [("/thumbnails/12345", 404), ("/thumbnails/..%2Fetc", 400), ("/files/abc", 400),
                                  ("/api/search?like=777", 404), ("/api/search?q=", 400), ("/api/search?q=a&top=0", 400),
                                  ("/api/search?q=%2Fetc%2Fpasswd.png", 200)] {
                try await client.execute(uri: uri, method: .get) { response in
                    #expect(response.status.code == status, "\(uri): \(String(buffer: response.body))")
                }
            }
        }
    }

    @Test("without an index the index routes say how to serve one")
    func noIndex() async throws {
        try await makeApp(service, index: nil).test(.router) { client in
            try await client.execute(uri: "/api/search?q=a", method: .get) { response in
                #expect(response.status == .notFound && errorMessage(response.body).contains("--index"))
            }
            try await client.execute(uri: "/indices-list", method: .get) { response in
                #expect(response.status == .notFound && errorMessage(response.body).contains("--index"))
            }
        }
    }
}
