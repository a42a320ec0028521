import ArgumentParser
import CLIPCommandSupport
import CLIPFiles
import CLIPIndex
import CLIPKit
import CLIPServer
import Dispatch
import Foundation
import Logging

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the model over HTTP: OpenAI-style embeddings, immich's /predict, clip-retrieval's back end, and a search page.",
        discussion: """
            Routes: POST /v1/embeddings, POST /v1/classify, GET /v1/models; POST /predict and GET /ping (immich's \
            machine-learning API); with --index, GET /indices-list, POST /knn-service, POST /metadata \
            (clip-retrieval) and the search page at /. GET /healthz, GET /metrics (Prometheus), GET /openapi.json. \
            Requests are batched across clients (--max-batch, --max-wait-ms); a full queue answers 503 with \
            Retry-After at once. SIGINT or SIGTERM stop taking connections and finish what was accepted. \
            docs/serve.md has the details.
            """)

    @OptionGroup var model: ModelOptions
    @OptionGroup var orientation: OrientationOption

    @Option(help: "An index from `clip index` to search (clip-retrieval's routes and the search page).")
    var index: String?

    @Option(help: "The address to listen on. Anything but loopback needs --api-key-file or --no-auth.")
    var host = "127.0.0.1"

    @Option(help: "The port to listen on (0: any free port, printed at start).")
    var port = 8080

    @Option(help: "Inputs per model call at most.")
    var maxBatch = 32

    @Option(help: "How long a partial batch waits for more inputs, in milliseconds.")
    var maxWaitMs = 5.0

    @Option(help: "Inputs waiting at most (besides the batch being run): the queue's memory bound. Default: 1024, at least --max-batch.")
    var queueCapacity: Int?

    @Option(help: "The longest predicted wait, in seconds, a request is admitted to (less when the client says it waits less, as the OpenAI SDK's X-Stainless-Timeout does); beyond, 503 with Retry-After at once. 0.1...3600.")
    var maxQueueWait = 30.0

    @Option(help: "Texts or images per request at most (OpenAI's API takes 2048).")
    var maxInputs = 2048

    @Option(help: "Request bodies larger than this many bytes get 413.")
    var maxBodyBytes = 32 << 20

    @Option(help: "Seconds a client has to send a request's headers (from the connection's start, or a later request's first byte); 1...3600.")
    var headerTimeout = 10

    @Option(help: "Seconds a client has to send a request's body; 1...3600.")
    var bodyTimeout = 60

    @Option(help: "Seconds an idle keep-alive connection stays open; 1...3600.")
    var idleTimeout = 60

    @Option(help: "Pixels (from the header) one request image may have; more is 413 before decoding. At most 178956970.")
    var maxImagePixels = ServerOptions().maxImagePixels

    @Option(help: "Pixels all images of one request may have together.")
    var maxRequestPixels = ServerOptions().maxRequestPixels

    @Option(help: "Pixels of request images decoded at once; a request waits its turn (then 503), other routes do not. At least --max-image-pixels.")
    var decodingPixels = ServerOptions().decodingPixels

    @Option(help: "UTF-8 bytes one text may have (an input, a label, a form field, a query); more is 413.")
    var maxTextBytes = ServerOptions().maxTextBytes

    @Option(help: "Parts a multipart form (immich's /predict) may have.")
    var maxFormParts = ServerOptions().maxFormParts

    @Option(help: "A file of API keys, one per line: requests must send Authorization: Bearer KEY.")
    var apiKeyFile: String?

    @Flag(help: "Serve without authentication on an address other than loopback (immich's server sends no key).")
    var noAuth = false

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be within 0...65535") }
        guard (0.1...3600).contains(maxQueueWait) else { throw ValidationError("--max-queue-wait must be within 0.1...3600 seconds") }
        guard maxBatch >= 1, (queueCapacity ?? 1) >= 1, maxInputs >= 1 else {
            throw ValidationError("--max-batch, --queue-capacity and --max-inputs must be at least 1")
        }
        guard maxWaitMs >= 0, maxWaitMs <= 10_000 else { throw ValidationError("--max-wait-ms must be within 0...10000") }
        guard maxBatch <= 4096, (queueCapacity ?? 1) <= 1 << 20, maxInputs <= 1 << 16 else {
            throw ValidationError("--max-batch is at most 4096, --queue-capacity at most 1048576 and --max-inputs at most 65536")
        }
        do { try options().validate() } catch { throw ValidationError(error.description) }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level \(logLevel) is not a swift-log level") }
        if apiKeyFile == nil && !noAuth && !ServerOptions.isLoopback(host) {
            throw ValidationError("--host \(host) accepts connections from other machines: give --api-key-file FILE, or --no-auth to serve without authentication")
        }
    }

    func run() async throws {
        var options = options()
        if let apiKeyFile { options.apiKeys = try Self.keys(apiKeyFile) }

        var logger = Logger(label: "clip.serve")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        let started = ContinuousClock.now
        let clip: CLIPPipeline
        var served: ServedIndex?
        if let index {
            guard FileManager.default.fileExists(atPath: index) else {
                throw CLIError.input(subject: index, reason: "no index here; build one with clip index FOLDER --db \(index)")
            }
            let photoIndex = try PhotoIndex(path: index)
            let (pipeline, indexed) = try indexedModel(model, orientation: orientation.applyOrientation, index: photoIndex,
                                                       registering: false)
            clip = pipeline
            let name = ((index as NSString).lastPathComponent as NSString).deletingPathExtension
            served = ServedIndex(name: name, search: try PhotoSearch(index: photoIndex, model: indexed))
        } else {
            clip = try model.pipeline().orientingImages(orientation.applyOrientation)
        }
        let loadSeconds = started.duration(to: .now).inSeconds
        let name = ModelHubNames.display(model.spec, pretrained: model.pretrained)
        let service = EmbeddingService(pipeline: clip, modelName: name, maxBatch: maxBatch,
                                       maxWait: .microseconds(Int64(maxWaitMs * 1000)),
                                       queueCapacity: queueCapacity ?? max(1024, maxBatch),
                                       maxQueueWait: .milliseconds(Int64(maxQueueWait * 1000)), maxInputsPerRequest: maxInputs,
                                       observer: CLIPServer.batchMetrics(modelLoadSeconds: loadSeconds))
        logger.info("model loaded", metadata: ["model": "\(name)", "seconds": "\(String(format: "%.2f", loadSeconds))",
                                               "index": "\(served.map { "\($0.name) (\($0.search.vectors.count) vectors)" } ?? "none")"])
        service.batcher.start()
        let app = CLIPServer.application(service: service, index: served, options: options, logger: logger)
        var failure: (any Error)?
        do { try await app.runService() } catch { failure = error }
        logger.info("stopping: no new connections; finishing the requests accepted", metadata: ["queued": "\(service.batcher.depth)"])
        service.batcher.shutdown()
        if let failure { throw CLIError.unavailable("the server stopped: \(failure)") }
        logger.info("stopped", metadata: ["uptime_seconds": "\(Int(started.duration(to: .now).inSeconds))"])
    }

    /// The server's options from the flags (the API keys are read in `run`).
    func options() -> ServerOptions {
        var options = ServerOptions()
        options.host = host
        options.port = port
        options.maxBodyBytes = maxBodyBytes
        // Seconds as given: a value past Int64's nanoseconds is refused by `validate`, not wrapped.
        options.headerTimeout = .seconds(headerTimeout)
        options.bodyTimeout = .seconds(bodyTimeout)
        options.idleTimeout = .seconds(idleTimeout)
        options.maxImagePixels = maxImagePixels
        options.maxRequestPixels = maxRequestPixels
        options.decodingPixels = decodingPixels
        options.maxTextBytes = maxTextBytes
        options.maxFormParts = maxFormParts
        return options
    }

    /// Keys, one per line; blank lines and #-comments ignored. A file with none is an error (it would lock
    /// everyone out, or, read wrongly, let everyone in).
    static func keys(_ path: String) throws -> Set<String> {
        // A key file is a few lines: 1 MiB at most, keys of printable ASCII up to 4 KiB (as a header carries them).
        let bytes = try readSmallFile(path, limit: 1 << 20, what: "the API key file")
        guard let text = String(validating: bytes, as: UTF8.self) else { throw CLIError.settings(path: path, reason: "the API key file is not UTF-8 text") }
        var keys = Set<String>()
        // By newline characters: "\r\n" is one Character, so a split on "\n" would not split a CRLF file.
        for (n, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let key = line.trimmingCharacters(in: .whitespaces)
            guard !key.isEmpty, !key.hasPrefix("#") else { continue }
            guard key.utf8.count <= 4096, key.unicodeScalars.allSatisfy({ (0x21...0x7E).contains($0.value) }) else {
                throw CLIError.settings(path: path, reason: "line \(n + 1): an API key is printable ASCII without spaces, at most 4096 characters")
            }
            keys.insert(key)
        }
        guard !keys.isEmpty else { throw CLIError.settings(path: path, reason: "no API keys in the file (one per line)") }
        return keys
    }
}

enum ModelHubNames {
    /// The name a served model goes by: the shipped model's own name rather than "default".
    /// With `--pretrained`, immich's spelling `ARCH__TAG`, so the name immich sends can be compared with it.
    /// A checkpoint file or folder goes by its name, not its path: the path says where the server's files are,
    /// which is nobody's business over HTTP.
    static func display(_ spec: String, pretrained: String? = nil) -> String {
        if let pretrained { return "\(spec.replacingOccurrences(of: "/", with: "-"))__\(pretrained)" }
        if spec == "default" { return "swift-clip-shapes" }
        var isFolder: ObjCBool = false
        if !spec.hasPrefix("hf-hub:"), FileManager.default.fileExists(atPath: spec, isDirectory: &isFolder) {
            let name = (spec as NSString).lastPathComponent
            // A folder's name is its name (x.v2 stays x.v2); a file's loses its extension.
            let stem = isFolder.boolValue ? name : (name as NSString).deletingPathExtension
            return stem.isEmpty ? name : stem
        }
        return spec
    }
}
