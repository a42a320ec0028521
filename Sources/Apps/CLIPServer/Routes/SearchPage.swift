import CLIPFiles
import CLIPImage
import CLIPIndex
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import HTTPTypes
import Hummingbird
import Synchronization

/// The search page for people (`GET /`): a query box with `clip search`'s `+`/`-`/`N:` terms, a grid of
/// thumbnails with scores, "more like this" on every hit. Three static files and two JSON/PNG routes, no build step.
enum SearchPage {
    static func add(to router: Router<BasicRequestContext>, state: ServerState) {
        router.getAndHead("/") { _, _ in try asset("index.html", type: "text/html; charset=utf-8") }
        router.getAndHead("/index.html") { _, _ in try asset("index.html", type: "text/html; charset=utf-8") }
        router.getAndHead("/static/app.js") { _, _ in try asset("app.js", type: "text/javascript; charset=utf-8") }
        router.getAndHead("/static/style.css") { _, _ in try asset("style.css", type: "text/css; charset=utf-8") }
        router.getAndHead("/api/search") { request, _ in try await search(request, state) }
        router.post("/api/search") { request, _ in try await search(request, state, postedImage: true) }
        router.getAndHead("/api/library") { _, _ in try await library(state) }
        router.getAndHead("/favicon.svg") { _, _ in try asset("favicon.svg", type: "image/svg+xml") }
        router.getAndHead("/favicon.ico") { _, _ in try asset("favicon.svg", type: "image/svg+xml") }
        router.getAndHead("/thumbnails/:id") { request, context in try await thumbnail(request, context, state) }
        router.getAndHead("/files/:id") { request, context in try await original(request, context, state) }
        router.getAndHead("/previews/:id") { request, context in try await preview(request, context, state) }
    }

    static func asset(_ name: String, type: String) throws -> Response {
        guard let url = Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Resources/page"),
              let data = try? Data(contentsOf: url) else {
            throw HTTPError(.internalServerError, message: "the page's \(name) is missing from this build")
        }
        return Response(status: .ok, headers: [.contentType: type, .cacheControl: "no-cache"],
                        body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    struct Hit: Encodable {
        var id: Int64
        var path: String
        var score: Float
        var width: Int?
        var height: Int?
        /// A video's best moment, in seconds (the page plays it from there); absent for a photo.
        var time: Double?
        var thumbnail: String
        var file: String
        /// What a browser shows: the file itself when browsers show its format, else a preview decoded here.
        var view: String
        /// Modification time, seconds since 1970.
        var modified: Double?
    }

    struct Library: Encodable, Sendable {
        var name: String
        var model: String
        var photos: Int
        var videos: Int
        var folders: [String]
        var subfolders: [String]
    }

    /// The last summary made, by index and generation: a page load does not count a large index again.
    static let libraryCache = Mutex<(key: String, value: Library)?>(nil)

    /// `GET /api/library`: what the index holds (the page's empty state and folder filter).
    static func library(_ state: ServerState) async throws -> Response {
        let index = try state.requireIndex()
        let search = index.search
        let key = "\(search.index.path) \(search.vectors.generation) \(search.vectors.rows)"
        if let cached = libraryCache.withLock({ $0 }), cached.key == key { return try jsonResponse(cached.value) }
        let summary = try await state.work.run { try search.library() }
        let value = Library(name: index.name, model: state.service.modelName, photos: summary.photos,
                            videos: summary.videos, folders: summary.folders, subfolders: summary.subfolders)
        libraryCache.withLock { $0 = (key, value) }
        return try jsonResponse(value)
    }

    /// The `folder`, `from` and `to` (YYYY-MM-DD, inclusive, UTC) parameters as a search filter; nil when none.
    static func filter(_ request: Request, index: ServedIndex) throws -> PhotoSearch.Filter? {
        var filter = PhotoSearch.Filter()
        if var folder = formParameter(request, "folder"), !folder.isEmpty {
            while folder.count > 1 && folder.hasSuffix("/") { folder.removeLast() }
            // A folder the index was built from, or one inside it; never a way to name other paths.
            let absolute = folder.hasPrefix("/") ? folder : index.search.index.absolutePath(folder)
            guard !absolute.contains("/../"), !absolute.hasSuffix("/.."),
                  try index.search.index.indexedFolders().contains(where: { isPath(absolute, inside: $0) || absolute == $0 }) else {
                throw RequestError("folder=\(folder): not a folder of this index")
            }
            filter.folder = absolute
        }
        // The page's days are the browser's: `tz` is its offset in minutes (JavaScript's getTimezoneOffset, UTC −
        // local), so a day runs from local midnight to local midnight.
        let tz = formParameter(request, "tz").map { Int($0) } ?? 0
        guard let tz, (-900...900).contains(tz) else { throw RequestError("tz must be a number of minutes within -900...900") }
        func day(_ name: String, end: Bool) throws -> Double? {
            guard let text = formParameter(request, name), !text.isEmpty else { return nil }
            let parts = text.split(separator: "-").compactMap { Int($0) }
            guard parts.count == 3, text.count == 10, (1...9999).contains(parts[0]), (1...12).contains(parts[1]), (1...31).contains(parts[2]) else {
                throw RequestError("\(name)=\(text): a date is YYYY-MM-DD")
            }
            var c = DateComponents()
            (c.year, c.month, c.day) = (parts[0], parts[1], parts[2])
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = TimeZone(identifier: "UTC")!
            // 2024-02-31 is not a day (Calendar would make it 2 March).
            guard let date = calendar.date(from: c),
                  calendar.dateComponents([.year, .month, .day], from: date) == DateComponents(year: parts[0], month: parts[1], day: parts[2]) else {
                throw RequestError("\(name)=\(text): not a date")
            }
            return date.timeIntervalSince1970 + Double(tz * 60) + (end ? 86_400 - 0.001 : 0)
        }
        let from = try day("from", end: false), to = try day("to", end: true)
        if from != nil || to != nil {
            let lower = from ?? -Double.greatestFiniteMagnitude, upper = to ?? Double.greatestFiniteMagnitude
            guard lower <= upper else { throw RequestError("from is after to") }
            filter.modified = lower...upper
        }
        return filter == PhotoSearch.Filter() ? nil : filter
    }

    struct Results: Encodable {
        var query: String
        var vectors: Int
        var milliseconds: Double
        var hits: [Hit]
    }

    /// `GET /api/search?q=TERMS&like=ID&top=N&folder=F&from=D&to=D&moments=best|all`: the terms as `clip search`
    /// reads them (texts only: a web query never names a file on the server), plus the embedding of indexed file ID
    /// when `like` is given, among the files under folder F modified within the dates. `POST` with an image as the
    /// body (a photo dropped on the page) adds that image's embedding.
    static func search(_ request: Request, _ state: ServerState, postedImage: Bool = false) async throws -> Response {
        let started = ContinuousClock.now
        let reservation = try state.admit(request)
        // Read once admitted: an overloaded server refuses before it buffers a body.
        let image = postedImage ? try await state.body(request) : nil
        let index = try state.requireIndex()
        let q = formParameter(request, "q") ?? ""
        let top = formParameter(request, "top").map { Int($0) } ?? 60
        guard let top, (1...1000).contains(top) else { throw RequestError("top must be a number within 1...1000") }
        let moments = formParameter(request, "moments")
        guard moments == nil || moments == "best" || moments == "all" else { throw RequestError("moments must be best or all") }
        let filter = try filter(request, index: index)
        var weighted: [(weight: Float, vector: ArraySlice<Float>)] = []
        if let like = formParameter(request, "like") {
            guard let id = Int64(like), let v = index.search.vector(fileID: id) else {
                throw RequestError("like=\(like): no indexed file has this id", status: 404)
            }
            weighted.append((1, v[...]))
        }
        if let image {
            guard image.readableBytes > 0 else { throw RequestError("the body is empty: POST an image (JPEG, PNG, WebP, HEIC, AVIF, GIF, BMP, TIFF)") }
            let decoded = try await state.pixels([[UInt8](buffer: image)]) { _ in "the image" }[0]
            let row = try await state.service.embed(pixels: [decoded.pixels], reservation: reservation)[0]
            weighted.append((1, row[...]))
        }
        let words = q.split(whereSeparator: \.isWhitespace).map(String.init)
        if !words.isEmpty {
            let terms: [QueryTerm]
            do { terms = try QueryTerm.parse(words, isImageFile: { _ in false }) } catch { throw RequestError("\(error)") }
            // Each term is one input to the model, as an item of /v1/embeddings is.
            guard terms.count <= state.service.maxInputsPerRequest else {
                throw RequestError("the query has \(terms.count) terms; at most \(state.service.maxInputsPerRequest) (clip serve --max-inputs)")
            }
            let texts = terms.map { term -> String in if case .text(let t) = term.source { return t } else { return "" } }
            let tokens = try await state.tokens(texts, truncate: true) { texts[$0].debugDescription }
            let rows = try await state.service.embed(tokens: tokens, reservation: reservation)
            for (term, row) in zip(terms, rows) { weighted.append((term.weight, row[...])) }
        }
        guard !weighted.isEmpty else { throw RequestError("type something to search for (q=…), or pick an image (like=ID, or POST one)") }
        let query: [Float]
        do { query = try PhotoSearch.combine(weighted) } catch { throw RequestError("\(error)") }
        let search = index.search
        let hits = try await state.work.run { try search.search(query, top: top, everyMoment: moments == "all", filter: filter) }
        let photos = search.index
        let results = Results(query: q, vectors: search.vectors.count,
                              milliseconds: started.duration(to: .now).inSeconds * 1000,
                              hits: hits.map {
                                  Hit(id: $0.id, path: photos.storedPath($0.path), score: $0.score, width: $0.width,
                                      height: $0.height, time: $0.time,
                                      thumbnail: "/thumbnails/\($0.id)" + ($0.time.map { "?t=\($0)" } ?? ""),
                                      file: "/files/\($0.id)",
                                      view: $0.time != nil || ImageFormat.isBrowserViewable($0.path) ? "/files/\($0.id)" : "/previews/\($0.id)",
                                      modified: $0.modified)
                              })
        return try jsonResponse(results)
    }

    /// A query parameter as a form encodes it (`+` is a space, `%2B` a plus), which the `+`/`-` terms need.
    static func formParameter(_ request: Request, _ name: String) -> String? {
        guard let query = request.uri.query else { return nil }
        func decode(_ s: Substring) -> String? { s.replacingOccurrences(of: "+", with: " ").removingPercentEncoding }
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            if decode(parts[0]) == name { return parts.count > 1 ? decode(parts[1]) : "" }
        }
        return nil
    }

    /// The real path of indexed file ID, if it may be served: a row that decoded as an image or a video (not one the
    /// index recorded as failed), present, whose path after resolving links lies inside a folder the index was built
    /// from. Anything else is 404, saying no more than that. `isVideo`: whether the index took it for a video (by
    /// the name it was found under, which a link's target need not share).
    static func servable(_ context: BasicRequestContext, _ state: ServerState) throws -> (path: String, isVideo: Bool) {
        let index = try state.requireIndex()
        guard let raw = context.parameters.get("id"), let id = Int64(raw) else { throw RequestError("the file id must be a number") }
        let notServed = RequestError("no indexed image has id \(id)", status: 404)
        guard let file = try index.search.file(id: id), let resolved = realpath(file.path, nil) else { throw notServed }
        let real = String(cString: resolved)
        free(resolved)
        guard PhotoIndex.isInside(real, folders: try index.search.index.indexedFolders()) else { throw notServed }
        return (real, VideoReader.hasVideoExtension(file.path))
    }

    /// `GET /thumbnails/ID?size=S&t=T`: a PNG S pixels square (default 256); of a video, its frame at T seconds
    /// (default 0: the poster).
    static func thumbnail(_ request: Request, _ context: BasicRequestContext, _ state: ServerState) async throws -> Response {
        let (path, isVideo) = try servable(context, state)
        let size = formParameter(request, "size").map { Int($0) } ?? 256
        guard let size, (16...1024).contains(size) else { throw RequestError("size must be a number within 16...1024") }
        var time: Double?
        if isVideo {
            let t = formParameter(request, "t").map { Double($0) } ?? 0
            guard let t, t.isFinite, (0...1e7).contains(t) else { throw RequestError("t must be a number of seconds within 0...10000000") }
            // Whole milliseconds, rounded down: a key for the cache rather than a float a client can vary without
            // end, and never past the frame the time names (the first frame at or after it is shown).
            time = (t * 1000).rounded(.down) / 1000
        }
        guard let png = try await state.thumbnails.png(path, side: size, time: time) else {
            throw RequestError("\((path as NSString).lastPathComponent) cannot be decoded any more (changed or removed since it was indexed)", status: 404)
        }
        return Response(status: .ok, headers: [.contentType: "image/png", .cacheControl: "max-age=3600"],
                        body: .init(byteBuffer: ByteBuffer(bytes: png)))
    }

    /// `GET /previews/ID?size=S`: an indexed photo as a PNG, turned as shown, its longer side at most S (default
    /// 2048, never enlarged): for the formats browsers do not show (HEIC, TIFF, RAW).
    static func preview(_ request: Request, _ context: BasicRequestContext, _ state: ServerState) async throws -> Response {
        let (path, isVideo) = try servable(context, state)
        guard !isVideo else { throw RequestError("a video has no preview; /files/ID plays it and /thumbnails/ID?t= shows a moment") }
        let size = formParameter(request, "size").map { Int($0) } ?? 2048
        guard let size, (64...4096).contains(size) else { throw RequestError("size must be a number within 64...4096") }
        guard let png = try await state.work.preview(path, longest: size) else {
            throw RequestError("\((path as NSString).lastPathComponent) cannot be decoded any more (changed or removed since it was indexed)", status: 404)
        }
        return Response(status: .ok, headers: [.contentType: "image/png", .cacheControl: "private, max-age=3600"],
                        body: .init(byteBuffer: ByteBuffer(bytes: png)))
    }

    /// `GET /files/ID`: the indexed file itself (only files the index holds, by id: no path ever comes from the
    /// request), streamed, with byte ranges (a video seeks by them).
    static func original(_ request: Request, _ context: BasicRequestContext, _ state: ServerState) async throws -> Response {
        let (path, _) = try servable(context, state)
        let opened: (RegularFile, [UInt8])
        do {
            opened = try await FileResponse.run {
                let file = try RegularFile(path: path)
                return (file, try file.read(at: 0, count: min(file.size, 4096)))
            }
        } catch {
            throw RequestError("\((path as NSString).lastPathComponent) cannot be read any more", status: 404)
        }
        let (file, head) = opened
        // The file may have changed since it was indexed: only image and video bytes leave, typed by what they are.
        // Images first: HEIC, AVIF and CR3 are ISO media files too.
        let type: String
        if head.withUnsafeBytes({ ImageFormat.sniff($0) }) == nil, let video = VideoReader.mediaType(head) {
            type = video
        } else {
            type = try imageType(head, path: path)
        }
        return FileResponse.response(file, type: type, request: request)
    }

    /// The media type of an image by its first bytes, or 404 when they are no longer an image.
    static func imageType(_ bytes: [UInt8], path: String) throws -> String {
        let format = bytes.withUnsafeBytes { ImageFormat.sniff($0) }
        let type: String
        switch format {
        case .png: type = "image/png"
        case .webp: type = "image/webp"
        case .jpeg: type = "image/jpeg"
        case .heif: type = ImageFormat.isAVIF(bytes) ? "image/avif" : "image/heic"
        case .gif: type = "image/gif"
        case .bmp: type = "image/bmp"
        case .tiff: type = "image/tiff"
        case .cameraRaw: type = "application/octet-stream"
        case nil: throw RequestError("\((path as NSString).lastPathComponent) is no longer an image or a video", status: 404)
        }
        return type
    }
}
