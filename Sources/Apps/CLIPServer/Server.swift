import CLIPFiles
import CLIPIndex
import CLIPKit
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// An index served next to the model (clip-retrieval's routes, the search page).
package struct ServedIndex: Sendable {
    /// The name clients select it by (clip-retrieval's `indice_name`).
    package let name: String
    private let live: LiveSearch

    /// The search over the index as it is now: `clip index` runs while the server runs show up within
    /// `recheckInterval`.
    package var search: PhotoSearch { live.current() }

    package init(name: String, search: PhotoSearch) {
        self.init(name: name, search: search, recheckInterval: .milliseconds(500))
    }

    package init(name: String, search: PhotoSearch, recheckInterval: Duration) {
        self.name = name
        live = LiveSearch(search, recheckInterval: recheckInterval)
    }
}

/// The served search, reopened when the index changed (a `clip index` run in another process). At most once per
/// `recheckInterval` a request starts a check in the background and goes on with the search it has; the check (one
/// SQLite read when nothing changed; otherwise the vector cache takes in the changed rows, which may wait for
/// another process's lock or rewrite the cache) swaps the new search in when it is done. Requests never wait for it.
final class LiveSearch: Sendable {
    private struct State {
        var search: PhotoSearch
        var checked: ContinuousClock.Instant
        var checking = false
        var failing: String?
    }
    private let state: Mutex<State>
    private let recheckInterval: Duration
    private let logger = Logger(label: "clip-serve.index")

    init(_ search: PhotoSearch, recheckInterval: Duration) {
        state = Mutex(State(search: search, checked: .now))
        self.recheckInterval = recheckInterval
    }

    func current() -> PhotoSearch {
        let (search, start) = state.withLock { s -> (PhotoSearch, Bool) in
            guard !s.checking, ContinuousClock.now - s.checked >= recheckInterval else { return (s.search, false) }
            s.checking = true
            return (s.search, true)
        }
        if start {
            Thread.detachNewThread { [self] in recheck(search) }
        }
        return search
    }

    private func recheck(_ search: PhotoSearch) {
        let outcome = Result { () throws(IndexError) -> PhotoSearch in try search.current() }
        state.withLock { s in
            s.checking = false
            s.checked = .now
            switch outcome {
            case .success(let next):
                s.search = next
                if s.failing != nil { logger.notice("the index can be read again; serving it as it is now") }
                s.failing = nil
            case .failure(let error):
                // The vectors already open stay served (a database being restored, a disk gone for a moment);
                // said once, not per check.
                if s.failing != error.description {
                    logger.error("cannot reopen the index; serving its vectors as they were", metadata: ["error": "\(error)"])
                }
                s.failing = error.description
            }
        }
    }
}

/// Everything a route needs.
struct ServerState: Sendable {
    let service: EmbeddingService
    let index: ServedIndex?
    let options: ServerOptions
    let startedAt: ContinuousClock.Instant
    let work: RequestWork
    let thumbnails: Thumbnails

    init(service: EmbeddingService, index: ServedIndex?, options: ServerOptions, startedAt: ContinuousClock.Instant) {
        (self.service, self.index, self.options, self.startedAt) = (service, index, options, startedAt)
        work = RequestWork(options: options)
        thumbnails = Thumbnails(work: work)
    }
}

/// Builds the HTTP application of `clip serve`.
package enum CLIPServer {
    /// The application: routes, middleware (errors, auth, limits, metrics, logs, CORS) and the server's timeouts.
    /// The batcher must be started (`service.batcher.start()`) and is shut down by the caller after the
    /// application returns (in-flight requests finish first).
    package static func application(service: EmbeddingService, index: ServedIndex?, options: ServerOptions,
                                   logger: Logger) -> some ApplicationProtocol {
        let router = makeRouter(service: service, index: index, options: options)
        let limits = ConnectionGuard.Limits(options)
        return Application(
            router: router,
            server: .http1(configuration: .init(additionalChannelHandlers: [ConnectionGuard(limits)],
                                                idleTimeout: .nanoseconds(options.idleTimeout.saturatingNanoseconds))),
            configuration: .init(address: .hostname(options.host, port: options.port), serverName: "clip-serve"),
            onServerRunning: { channel in
                // With --port 0 this line is how a script learns the port.
                let port = channel.localAddress?.port ?? options.port
                logger.notice("listening", metadata: ["url": "http://\(options.host):\(port)"])
                FileHandle.standardOutput.write(Data("clip serve: listening on http://\(options.host):\(port)\n".utf8))
            },
            logger: logger)
    }

    /// The router alone (the tests drive it without sockets).
    package static func makeRouter(service: EmbeddingService, index: ServedIndex?, options: ServerOptions) -> Router<BasicRequestContext> {
        let state = ServerState(service: service, index: index, options: options, startedAt: .now)
        let router = Router(context: BasicRequestContext.self)
        // Per request at debug (--log-level debug): at info a busy server or a scraper would drown the rest.
        router.add(middleware: LogRequestsMiddleware(.debug))
        router.add(middleware: RequestMetricsMiddleware())
        // clip-retrieval's front end and browser clients of the API run on other origins.
        router.add(middleware: CORSMiddleware(allowOrigin: .all, allowHeaders: [.accept, .authorization, .contentType, .origin],
                                              allowMethods: [.get, .post, .options]))
        router.add(middleware: ErrorMiddleware())
        router.add(middleware: MethodMiddleware())
        router.add(middleware: AuthMiddleware(keys: options.apiKeys))
        OperationsRoutes.add(to: router, state: state)
        OpenAIRoutes.add(to: router, state: state)
        ImmichRoutes.add(to: router, state: state)
        RetrievalRoutes.add(to: router, state: state)
        SearchPage.add(to: router, state: state)
        return router
    }
}

// MARK: - Shared request handling

extension ServerState {
    /// The request's body, at most `maxBodyBytes`: 413 at once when Content-Length says more, or as soon as more
    /// has arrived.
    func body(_ request: Request) async throws -> ByteBuffer {
        let limit = options.maxBodyBytes
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > limit {
            throw HTTPError(.contentTooLarge, message: "the body is \(length) bytes; this server takes at most \(limit) (clip serve --max-body-bytes)")
        }
        var request = request
        do {
            return try await request.collectBody(upTo: limit)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw HTTPError(.contentTooLarge, message: "the body is larger than \(limit) bytes, the most this server takes (clip serve --max-body-bytes)")
        } catch is NIOTooManyBytesError {
            // A chunked body has no Content-Length to refuse it by; it is refused when it passes the limit.
            throw HTTPError(.contentTooLarge, message: "the body is larger than \(limit) bytes, the most this server takes (clip serve --max-body-bytes)")
        }
    }

    /// The body as JSON of type `T`; a body that is not gets 400 naming what is wrong and where. Decoded on the
    /// request-work pool: 32 MiB of JSON takes a while.
    func json<T: Decodable & Sendable>(_ request: Request, as type: T.Type) async throws -> T {
        let buffer = try await body(request)
        return try await work.run {
            do {
                return try JSONDecoder().decode(T.self, from: Data(buffer: buffer))
            } catch let error as DecodingError {
                throw RequestError("the JSON body is not valid: \(describe(error))")
            }
        }
    }

    /// Token ids of each text (see `EmbeddingService.tokens`), made on the request-work pool; a text of more than
    /// `maxTextBytes` is refused before any work.
    func tokens(_ texts: [String], truncate: Bool, names: @escaping @Sendable (Int) -> String) async throws -> [[Int]] {
        let limit = options.maxTextBytes
        for (i, text) in texts.enumerated() where text.utf8.count > limit {
            throw RequestError("\(names(i)): the text is \(text.utf8.count) bytes; this server reads at most \(limit) (clip serve --max-text-bytes; the model reads \(service.pipeline.model.configuration.text.contextLength) tokens)", status: 413)
        }
        let service = self.service
        return try await work.run { try service.tokens(texts, truncate: truncate, names: names) }
    }

    /// Preprocessed pixels of encoded images (JPEG, PNG, WebP, HEIC, AVIF, GIF, BMP or TIFF bytes) with their sizes, decoded on the request-work
    /// pool within its pixel limits.
    func pixels(_ images: [[UInt8]], names: @escaping @Sendable (Int) -> String) async throws -> [(pixels: [Float], width: Int, height: Int)] {
        try await work.pixels(images, names: names, preprocessor: service.pipeline.preprocessor)
    }

    /// The same for images sent as base64 (plain or data URLs), decoded from base64 on the pool too.
    func pixels(base64 encoded: [String], names: @escaping @Sendable (Int) -> String) async throws -> [(pixels: [Float], width: Int, height: Int)] {
        let images = try await work.run {
            try encoded.enumerated().map { (i, text) throws(RequestError) in try ServerState.imageBytes(text, name: names(i)) }
        }
        return try await pixels(images, names: names)
    }

    static let clientTimeout = HTTPField.Name("X-Stainless-Timeout")!

    /// Room in the queue for a request that will run the model: 503 at once when the server is full, or when the
    /// queue would outlast the client's own timeout (the OpenAI SDKs send it as `X-Stainless-Timeout`, seconds).
    func admit(_ request: Request) throws -> InferenceBatcher.Reservation {
        var deadline: Duration?
        if let text = request.headers[Self.clientTimeout], let seconds = Double(text), seconds.isFinite, seconds > 0, seconds < 1e6 {
            deadline = .milliseconds(Int64(seconds * 1000))
        }
        return try service.batcher.admit(deadline: deadline)
    }

    /// The index, or 404 naming the flag that serves one.
    func requireIndex() throws -> ServedIndex {
        guard let index else { throw RequestError("this server has no index; start it with clip serve --index DB", status: 404) }
        return index
    }

    /// Decodes base64 (plain or a data URL, as browsers and OpenAI clients send images).
    static func imageBytes(_ text: String, name: String) throws(RequestError) -> [UInt8] {
        var payload = Substring(text)
        if payload.hasPrefix("data:") {
            guard let comma = payload.firstIndex(of: ","), payload[..<comma].hasSuffix(";base64") else {
                throw RequestError("\(name): a data URL must be base64 (data:image/…;base64,…)")
            }
            payload = payload[payload.index(after: comma)...]
        }
        guard let data = Data(base64Encoded: String(payload), options: .ignoreUnknownCharacters), !data.isEmpty else {
            throw RequestError("\(name): not valid base64")
        }
        return [UInt8](data)
    }
}

/// A DecodingError as one line: what, and at which key path.
func describe(_ error: DecodingError) -> String {
    func path(_ keys: [any CodingKey]) -> String {
        keys.isEmpty ? "the top level" : keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            .trimmingCharacters(in: CharacterSet(charactersIn: "."))
    }
    switch error {
    case .typeMismatch(let type, let c): return "\(path(c.codingPath)): expected \(type)"
    case .valueNotFound(let type, let c): return "\(path(c.codingPath)): expected \(type), found null"
    case .keyNotFound(let key, let c):
        return "missing \"\(key.stringValue)\"" + (c.codingPath.isEmpty ? "" : " in \(path(c.codingPath))")
    case .dataCorrupted(let c):
        let underlying = (c.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String
        return "\(path(c.codingPath)): \(underlying ?? c.debugDescription)"
    @unknown default: return "\(error)"
    }
}

/// JSON responses with sorted keys (stable output) and no escaped slashes.
func jsonResponse<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
    Response(status: status, headers: [.contentType: "application/json"],
             body: .init(byteBuffer: ByteBuffer(bytes: try JSONOutput.encode(value))))
}
