@testable import CLIPServer
import CLIPTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

/// docs/serve.md's rule for texts longer than the context: the embeddings API refuses them unless asked to
/// truncate; queries and labels are cut.
@Suite("clip serve: texts longer than the context")
struct TextLengthTests {
    let service = makeService()
    /// 100 words: 101 tokens with the start and end marks, past CLIP's 77.
    static let long = Array(repeating: "cat", count: 100).joined(separator: " ")

    @Test("refused by /v1/embeddings unless truncate is asked, cut everywhere a person queries",
          arguments: ["embeddings", "embeddings truncated", "classify", "search", "knn", "immich"])
    func rule(_ route: String) async throws {
        try await makeApp(service).test(.router) { client in
            let response: TestResponse
            switch route {
            case "embeddings":
                response = try await client.execute(uri: "/v1/embeddings", method: .post, body: jsonBody(["input": [Self.long]]))
                #expect(response.status == .badRequest && errorMessage(response.body).contains("input[0]"), "\(errorMessage(response.body))")
                return
            case "embeddings truncated":
                response = try await client.execute(uri: "/v1/embeddings", method: .post, body: jsonBody(["input": [Self.long], "truncate": true]))
            case "classify":
                let image = base64("\(examplesFolder)/blue-star.png")
                response = try await client.execute(uri: "/v1/classify", method: .post, body: jsonBody(["images": [image], "labels": ["star", Self.long]]))
            case "search":
                response = try await client.execute(uri: "/api/search?q=" + Self.long.replacingOccurrences(of: " ", with: "+"), method: .get)
            case "knn":
                response = try await client.execute(uri: "/knn-service", method: .post,
                                                    body: jsonBody(["text": Self.long, "indice_name": "examples", "num_images": 2]))
            default:
                let boundary = "b0undary"
                let form = "--\(boundary)\r\nContent-Disposition: form-data; name=\"entries\"\r\n\r\n{\"clip\": {\"textual\": {\"modelName\": \"swift-clip-shapes\"}}}\r\n"
                    + "--\(boundary)\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\n\(Self.long)\r\n--\(boundary)--\r\n"
                response = try await client.execute(uri: "/predict", method: .post,
                                                    headers: [.contentType: "multipart/form-data; boundary=\(boundary)"],
                                                    body: ByteBuffer(string: form))
            }
            #expect(response.status == .ok, "\(route): \(errorMessage(response.body))")
        }
    }
}
