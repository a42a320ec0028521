import CLIPImage
import CLIPIndex
import CLIPKit
@testable import CLIPServer
import CLIPTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

/// scenes.mp4 (red 0–2 s, colour bars 2–4.5 s, blue 4.5–6 s) and a photo, indexed once.
private let library: (served: ServedIndex, video: String) = {
    let dir = try! scratchDirectory("serve-video")
    try! FileManager.default.createDirectory(atPath: "\(dir)/library", withIntermediateDirectories: true)
    let video = "\(dir)/library/scenes.mp4"
    try! FileManager.default.copyItem(atPath: "\(videoDirectory)/scenes.mp4", toPath: video)
    try! FileManager.default.copyItem(atPath: "\(examplesFolder)/red-heart.png", toPath: "\(dir)/library/red-heart.png")
    // An ISO media file too, with a brand of its own: served as the image it is.
    try! FileManager.default.copyItem(atPath: testsDirectory.appendingPathComponent("CLIPImageTests/Fixtures/heif/heic_rgb.heic").path,
                                      toPath: "\(dir)/library/photo.heic")
    let index = try! PhotoIndex(path: "\(dir)/index.sqlite")
    let model = try! ModelFingerprint.indexedModel(pipeline, name: "default", in: index, registering: true)
    _ = try! Indexer(index: index, pipeline: pipeline, model: model).run(folders: ["\(dir)/library"])
    return (ServedIndex(name: "videos", search: try! PhotoSearch(index: index, model: model)), video)
}()

@Suite("clip serve: videos on the search page")
struct VideoServingTests {
    let service = makeService()

    @Test("a video's hit carries its best moment; its thumbnail is that frame; the file is served in byte ranges")
    func videoHits() async throws {
        let original = [UInt8](try Data(contentsOf: URL(fileURLWithPath: library.video)))
        try await makeApp(service, index: library.served).test(.router) { client in
            var hit: [String: Any] = [:]
            try await client.execute(uri: "/api/search?q=a+blue+circle&top=5", method: .get) { response in
                let hits = try #require((json(response.body) as? [String: Any])?["hits"] as? [[String: Any]])
                #expect(hits.count == 3, "\(hits)")
                hit = try #require(hits.first { ($0["path"] as? String)?.hasSuffix(".mp4") == true })
            }
            let time = try #require((hit["time"] as? NSNumber)?.doubleValue)
            #expect((4.5...6).contains(time))
            let id = try #require(hit["id"] as? Int)
            #expect(hit["thumbnail"] as? String == "/thumbnails/\(id)?t=\(time)")
            #expect(hit["file"] as? String == "/files/\(id)")
            try await client.execute(uri: "/api/search?q=a+blue+circle&top=10&moments=all", method: .get) { response in
                let hits = (json(response.body) as? [String: Any])?["hits"] as? [[String: Any]] ?? []
                #expect(hits.count == 6 && hits.filter { $0["time"] != nil }.count == 4, "\(hits)")
            }

            // The thumbnail at the moment is blue; the poster (t=0) is red.
            @Sendable func centre(_ uri: String) async throws -> [UInt8] {
                try await client.execute(uri: uri, method: .get) { response in
                    #expect(response.status == .ok && response.headers[.contentType] == "image/png", "\(uri)")
                    let image = try decodeImage([UInt8](Data(buffer: response.body)), name: uri)
                    let o = (image.height / 2 * image.width + image.width / 2) * 3
                    return Array(image.pixels[o..<(o + 3)])
                }
            }
            let blue = try await centre("/thumbnails/\(id)?t=\(time)&size=32")
            let red = try await centre("/thumbnails/\(id)?size=32")
            #expect(blue[2] > 200 && blue[0] < 50, "\(blue)")
            #expect(red[0] > 200 && red[2] < 50, "\(red)")

            var etag = ""
            try await client.execute(uri: "/files/\(id)", method: .get) { response in
                #expect(response.status == .ok && response.headers[.contentType] == "video/mp4")
                #expect(response.headers[.acceptRanges] == "bytes")
                #expect([UInt8](Data(buffer: response.body)) == original)
                etag = response.headers[.eTag] ?? ""
                #expect(response.headers[.lastModified]?.hasSuffix(" GMT") == true)
            }
            // HEAD says what GET would send; a tag the client holds gets 304; a range of another version, the whole.
            try await client.execute(uri: "/files/\(id)", method: .head) { response in
                #expect(response.status == .ok && response.headers[.contentLength] == "\(original.count)")
                #expect(response.body.readableBytes == 0)
            }
            try await client.execute(uri: "/files/\(id)", method: .get, headers: [.ifNoneMatch: etag]) { response in
                #expect(response.status == .notModified && response.body.readableBytes == 0, "\(etag)")
            }
            try await client.execute(uri: "/files/\(id)", method: .get, headers: [.range: "bytes=0-9", .ifRange: etag]) { response in
                #expect(response.status == .partialContent && response.body.readableBytes == 10)
            }
            try await client.execute(uri: "/files/\(id)", method: .get, headers: [.range: "bytes=0-9", .ifRange: "\"other\""]) { response in
                #expect(response.status == .ok && response.body.readableBytes == original.count)
            }
            try await client.execute(uri: "/api/search?q=a+photo&top=10", method: .get) { response in
                let hits = (json(response.body) as? [String: Any])?["hits"] as? [[String: Any]] ?? []
                let heic = try #require(hits.first { ($0["path"] as? String)?.hasSuffix(".heic") == true })
                try await client.execute(uri: "/files/\(heic["id"] as? Int ?? 0)", method: .get) { response in
                    #expect(response.status == .ok && response.headers[.contentType] == "image/heic")
                }
                // Browsers other than Safari do not show HEIC: the page links a PNG preview, turned as shown.
                let heicID = heic["id"] as? Int ?? 0
                #expect(heic["view"] as? String == "/previews/\(heicID)")
                try await client.execute(uri: "/previews/\(heicID)?size=64", method: .get) { response in
                    #expect(response.status == .ok && response.headers[.contentType] == "image/png")
                    let image = try decodeImage([UInt8](Data(buffer: response.body)), name: "preview")
                    let w = (heic["width"] as? Int) ?? 0, h = (heic["height"] as? Int) ?? 0
                    #expect(max(image.width, image.height) == min(64, max(w, h)), "\(image.width)x\(image.height) of \(w)x\(h)")
                    #expect(abs(Double(image.width) / Double(image.height) - Double(w) / Double(h)) < 0.1)
                }
                let png = try #require(hits.first { ($0["path"] as? String)?.hasSuffix(".png") == true })
                #expect(png["view"] as? String == "/files/\(png["id"] as? Int ?? 0)")
                let video = try #require(hits.first { $0["time"] != nil })
                #expect(video["view"] as? String == video["file"] as? String)
                try await client.execute(uri: "/previews/\(video["id"] as? Int ?? 0)", method: .get) { response in
                    #expect(response.status == .badRequest)
                }
                for size in ["8", "99999", "x"] {
                    try await client.execute(uri: "/previews/\(heicID)?size=\(size)", method: .get) { response in
                        #expect(response.status == .badRequest, "size \(size)")
                    }
                }
            }
            let n = original.count
            for (range, expected) in [("bytes=0-99", 0..<100), ("bytes=100-", 100..<n), ("bytes=-10", (n - 10)..<n),
                                      ("bytes=5-999999", 5..<n)] {
                try await client.execute(uri: "/files/\(id)", method: .get, headers: [.range: range]) { response in
                    #expect(response.status == .partialContent, "\(range)")
                    #expect(response.headers[.contentRange] == "bytes \(expected.lowerBound)-\(expected.upperBound - 1)/\(n)", "\(range)")
                    #expect([UInt8](Data(buffer: response.body)) == Array(original[expected]), "\(range)")
                }
            }
            try await client.execute(uri: "/files/\(id)", method: .get, headers: [.range: "bytes=\(n)-"]) { response in
                #expect(response.status == .rangeNotSatisfiable && response.headers[.contentRange] == "bytes */\(n)")
            }
            // Several ranges, another unit or nonsense: the whole file, as a server may answer.
            for range in ["bytes=0-1,5-6", "items=0-1", "bytes=9-3", "bytes=1e3-", "bytes=99999999999999999999-"] {
                try await client.execute(uri: "/files/\(id)", method: .get, headers: [.range: range]) { response in
                    #expect(response.status == .ok && response.body.readableBytes == n, "\(range)")
                }
            }
            for (uri, status) in [("/thumbnails/\(id)?t=-1", 400), ("/thumbnails/\(id)?t=nan", 400), ("/thumbnails/\(id)?t=1e99", 400),
                                  ("/thumbnails/\(id)?t=9999", 200), ("/api/search?q=a&moments=some", 400)] {
                try await client.execute(uri: uri, method: .get) { response in
                    #expect(response.status.code == status, "\(uri): \(String(buffer: response.body))")
                }
            }
        }
    }

    @Test("the page's library summary, folder and date filters, a search by a posted photo, the icon")
    func pageRoutes() async throws {
        let folder = (library.video as NSString).deletingLastPathComponent
        let heart = try Data(contentsOf: URL(fileURLWithPath: "\(examplesFolder)/red-heart.png"))
        try await makeApp(service, index: library.served).test(.router) { client in
            try await client.execute(uri: "/api/library", method: .get) { response in
                let body = try #require(json(response.body) as? [String: Any])
                #expect(body["photos"] as? Int == 2 && body["videos"] as? Int == 1, "\(body)")
                #expect(body["folders"] as? [String] == [folder] && body["model"] as? String == "swift-clip-shapes")
            }
            @Sendable func names(_ uri: String, method: HTTPRequest.Method = .get, body: ByteBuffer? = nil) async throws -> [String] {
                try await client.execute(uri: uri, method: method, headers: [.contentType: "image/png"], body: body) { response in
                    #expect(response.status == .ok, "\(uri): \(String(buffer: response.body))")
                    let hits = (json(response.body) as? [String: Any])?["hits"] as? [[String: Any]] ?? []
                    return hits.compactMap { ($0["path"] as? String).map { ($0 as NSString).lastPathComponent } }
                }
            }
            #expect(try await names("/api/search?q=a+photo&top=10&folder=\(folder)/").count == 3)
            // Modified today (the copies were made now): a range around today holds them, one in the past none.
            let today = ISO8601DateFormatter.string(from: Date(), timeZone: TimeZone(identifier: "UTC")!, formatOptions: [.withFullDate])
            #expect(try await names("/api/search?q=a+photo&from=\(today)&to=\(today)").count == 3)
            #expect(try await names("/api/search?q=a+photo&to=2001-01-01").isEmpty)
            // A posted photo is a term of its own: the heart finds itself first, also with a text beside it.
            #expect(try await names("/api/search?top=3", method: .post, body: ByteBuffer(data: heart)).first == "red-heart.png")
            #expect(try await names("/api/search?q=red&top=3", method: .post, body: ByteBuffer(data: heart)).first == "red-heart.png")
            for (uri, method, status) in [("/api/search?q=a&folder=/etc", HTTPRequest.Method.get, 400), ("/api/search?q=a&from=2024-13-01", .get, 400),
                                          ("/api/search?q=a&from=2024-02-02&to=2024-01-01", .get, 400), ("/api/search?q=a&to=yesterday", .get, 400),
                                          ("/api/search", .post, 400), ("/favicon.svg", .get, 200)] {
                try await client.execute(uri: uri, method: method, body: method == .post ? ByteBuffer(string: "not an image") : nil) { response in
                    #expect(response.status.code == status, "\(uri): \(String(buffer: response.body))")
                }
            }
        }
    }

    @Test("the folder filter keeps a folder's files and not its sibling's whose name it starts; few or many files admitted")
    func folderFilter() async throws {
        let dir = try scratchDirectory("serve-filter")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (sub, name) in [("sub", "red-heart.png"), ("subway", "blue-star.png")] {
            try FileManager.default.createDirectory(atPath: "\(dir)/library/\(sub)", withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: "\(examplesFolder)/\(name)", toPath: "\(dir)/library/\(sub)/\(name)")
        }
        let index = try PhotoIndex(path: "\(dir)/index.sqlite")
        let model = try ModelFingerprint.indexedModel(pipeline, name: "default", in: index, registering: true)
        _ = try Indexer(index: index, pipeline: pipeline, model: model).run(folders: ["\(dir)/library"])
        let search = try PhotoSearch(index: index, model: model)
        let query = try PhotoSearch.queryVector([QueryTerm(.text("a blue star"))], pipeline: pipeline)
        let sub = try search.search(query, top: 5, filter: .init(folder: "\(dir)/library/sub"))
        #expect(sub.map { ($0.path as NSString).lastPathComponent } == ["red-heart.png"], "\(sub)")
        #expect(try search.search(query, top: 5, filter: .init(folder: "\(dir)/library/nope")).isEmpty)
        #expect(try search.search(query, top: 5, filter: .init(modified: 0...1)).isEmpty)
        let all = try search.search(query, top: 5, filter: .init(folder: "\(dir)/library", modified: 0...4e9))
        #expect(all.map { ($0.path as NSString).lastPathComponent } == ["blue-star.png", "red-heart.png"], "\(all)")
        // The same answers from the scan that skips what the filter leaves out (taken when many files are admitted).
        for filter in [PhotoSearch.Filter(folder: "\(dir)/library/sub"), .init(folder: "\(dir)/library", modified: 0...4e9), .init(modified: 0...1)] {
            #expect(try search.search(query, top: 5, everyMoment: false, filter: filter, scoredOneByOne: 0).map(\.path)
                    == search.search(query, top: 5, filter: filter).map(\.path))
        }
        #expect(try search.search(query, top: 5).map(\.path) == all.map(\.path))
        let served = ServedIndex(name: "f", search: search)
        try await makeApp(service, index: served).test(.router) { client in
            try await client.execute(uri: "/api/library", method: .get) { response in
                let body = try #require(json(response.body) as? [String: Any])
                #expect(body["subfolders"] as? [String] == ["\(dir)/library/sub", "\(dir)/library/subway"], "\(body)")
            }
            // 2024-02-31 is no day; a day in the browser's zone (tz minutes, UTC - local).
            for (uri, status) in [("/api/search?q=a&from=2024-02-31", 400), ("/api/search?q=a&from=2024-02-29&tz=300", 200),
                                  ("/api/search?q=a&from=2024-01-01&tz=9999", 400)] {
                try await client.execute(uri: uri, method: .get) { response in
                    #expect(response.status.code == status, "\(uri): \(String(buffer: response.body))")
                }
            }
        }
    }

    @Test("a video replaced by other bytes after indexing is served only while it is still a video")
    func replacedVideo() async throws {
        let dir = try scratchDirectory("serve-video-replaced")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: "\(dir)/library", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "\(videoDirectory)/scenes.webm", toPath: "\(dir)/library/clip.webm")
        let index = try PhotoIndex(path: "\(dir)/index.sqlite")
        let model = try ModelFingerprint.indexedModel(pipeline, name: "default", in: index, registering: true)
        _ = try Indexer(index: index, pipeline: pipeline, model: model).run(folders: ["\(dir)/library"])
        let served = ServedIndex(name: "r", search: try PhotoSearch(index: index, model: model))
        try await makeApp(service, index: served).test(.router) { client in
            try await client.execute(uri: "/files/1", method: .get) { response in
                #expect(response.status == .ok && response.headers[.contentType] == "video/webm")
            }
            try Data("#!/bin/sh\necho hi\n".utf8).write(to: URL(fileURLWithPath: "\(dir)/library/clip.webm"))
            try await client.execute(uri: "/files/1", method: .get) { response in
                #expect(response.status == .notFound, "\(String(buffer: response.body))")
            }
        }
    }
}
