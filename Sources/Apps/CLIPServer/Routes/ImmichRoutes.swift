import CLIPHub
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Hummingbird
import Logging
import MultipartKit

/// immich's machine-learning service contract (immich_ml/main.py, server/src/repositories/
/// machine-learning.repository.ts): `GET /ping` answers "pong"; `POST /predict` takes multipart form data with
/// `entries` (JSON: `{"clip": {"textual"|"visual": {"modelName": …, "options": {…}}}}`) and `text` or an `image`
/// file, and answers `{"clip": "<embedding as a JSON array in a string>"}`, plus `imageHeight` and `imageWidth`
/// for an image. An immich server pointed at `clip serve` runs smart search unchanged; the embeddings are this
/// server's model's, so a library must be indexed and searched with the same one.
enum ImmichRoutes {
    static func add(to router: Router<BasicRequestContext>, state: ServerState) {
        router.getAndHead("/ping") { _, _ in "pong" }
        router.post("/predict") { request, context in try await predict(request, context, state) }
    }

    struct Form: Decodable {
        var entries: String?
        var text: String?
        var image: Data?
    }

    struct Entry: Decodable {
        var modelName: String
    }

    static func predict(_ request: Request, _ context: BasicRequestContext, _ state: ServerState) async throws -> Response {
        let reservation = try state.admit(request)
        guard let contentType = request.headers[.contentType],
              contentType.lowercased().hasPrefix("multipart/form-data") else {
            throw RequestError("POST /predict takes multipart/form-data (entries, and text or image), not \(request.headers[.contentType] ?? "a body without Content-Type")")
        }
        guard let boundary = multipartBoundary(contentType) else {
            throw RequestError("the multipart Content-Type has no boundary parameter")
        }
        let body = try await state.body(request)
        // MultipartKit's decoding costs far more per part than this count: 20,000 empty parts took seconds. Both
        // scans are memchr's, on the route's thread: the generic firstRange took a second per 30 MiB.
        let delimiters = occurrences(of: Array("--\(boundary)".utf8), in: body, atMost: state.options.maxFormParts + 2)
        guard delimiters <= state.options.maxFormParts + 1 else {
            throw RequestError("the form has more than \(state.options.maxFormParts) parts; immich sends two (clip serve --max-form-parts)", status: 413)
        }
        // MultipartKit passes over a part cut short; a body without its closing boundary is reported as such
        // rather than as a missing field.
        guard occurrences(of: Array("--\(boundary)--".utf8), in: body, atMost: 1) == 1 else {
            throw RequestError("the multipart body cannot be read: it ends before its closing boundary --\(boundary)-- (cut short?)")
        }
        let form: Form
        do {
            form = try await state.work.run { try FormDataDecoder().decode(Form.self, from: body, boundary: boundary) }
        } catch {
            throw RequestError("the multipart body cannot be read: \(error)")
        }
        guard let entriesText = form.entries else { throw RequestError("the form has no \"entries\" field", status: 422) }
        let entries: [String: [String: Entry]]
        do {
            entries = try JSONDecoder().decode([String: [String: Entry]].self, from: Data(entriesText.utf8))
        } catch let error as DecodingError {
            throw RequestError("\"entries\" is not valid: \(describe(error))", status: 422)
        }
        let tasks = Set(entries.keys)
        guard tasks == ["clip"], let types = entries["clip"], types.count == 1, let (type, entry) = types.first,
              type == "textual" || type == "visual" else {
            throw RequestError("clip serve answers CLIP only, one of {\"clip\": {\"textual\": …}} or {\"clip\": {\"visual\": …}}; asked for \(entriesText)", status: 422)
        }
        if entry.modelName != state.service.modelName {
            // Embeddings of another model would land in immich's index beside this one's and match nothing: when
            // both names say which weights they are, a mismatch is refused. A served file has no such name.
            let table = try? OpenCLIPPretrained.shared.get()
            if let served = table?.catalogName(state.service.modelName), let asked = table?.catalogName(entry.modelName),
               served != asked {
                throw RequestError("immich asked for \(entry.modelName) (open_clip's \(asked)), but this server serves \(served); start clip serve --model \(entry.modelName), or choose \(served.replacingOccurrences(of: "/", with: "__")) in immich", status: 422)
            }
            context.logger.debug("immich asked for \(entry.modelName); serving \(state.service.modelName)")
        }
        let service = state.service
        switch type {
        case "textual":
            guard let text = form.text else { throw RequestError("a textual request needs a \"text\" field") }
            let tokens = try await state.tokens([text], truncate: true) { _ in "text" }
            let row = try await service.embed(tokens: tokens, reservation: reservation)[0]
            return try jsonResponse(TextualResponse(clip: serialize(row)))
        default:
            guard let image = form.image else {
                throw RequestError(form.text == nil ? "Either image or text must be provided" : "a visual request needs an \"image\" file")
            }
            let decoded = try await state.pixels([[UInt8](image)]) { _ in "image" }[0]
            let row = try await service.embed(pixels: [decoded.pixels], reservation: reservation)[0]
            return try jsonResponse(VisualResponse(clip: serialize(row), imageHeight: decoded.height, imageWidth: decoded.width))
        }
    }

    struct TextualResponse: Encodable { var clip: String }
    struct VisualResponse: Encodable { var clip: String; var imageHeight: Int; var imageWidth: Int }

    /// The embedding as immich sends it on: a JSON array inside a string (its server stores it as pgvector text).
    static func serialize(_ v: [Float]) -> String {
        "[" + v.map { "\($0)" }.joined(separator: ",") + "]"
    }

    /// How many times `needle` occurs in `buffer` (not overlapping), counting no further than `atMost`.
    static func occurrences(of needle: [UInt8], in buffer: ByteBuffer, atMost: Int) -> Int {
        buffer.withUnsafeReadableBytes { haystack in
            needle.withUnsafeBytes { n in
                guard let base = haystack.baseAddress, let nb = n.baseAddress, n.count > 0 else { return 0 }
                // memchr for the first byte, memcmp for the rest (Glibc's memmem is not visible to Swift).
                var count = 0, offset = 0
                while count < atMost, offset + n.count <= haystack.count,
                      let hit = memchr(base + offset, Int32(needle[0]), haystack.count - offset - n.count + 1) {
                    let at = base.distance(to: UnsafeRawPointer(hit))
                    if memcmp(hit, nb, n.count) == 0 {
                        count += 1
                        offset = at + n.count
                    } else {
                        offset = at + 1
                    }
                }
                return count
            }
        }
    }

    /// The boundary parameter of a multipart Content-Type, quoted or not.
    static func multipartBoundary(_ contentType: String) -> String? {
        for parameter in contentType.split(separator: ";").dropFirst() {
            let kv = parameter.trimmingCharacters(in: .whitespaces)
            guard kv.lowercased().hasPrefix("boundary=") else { continue }
            var value = kv.dropFirst("boundary=".count)
            if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = value.dropFirst().dropLast() }
            return value.isEmpty || value.count > 200 ? nil : String(value)
        }
        return nil
    }
}
