import CLIPIndex
import CLIPKit
@testable import CLIPServer
import CLIPTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The classes of issue 30 that a test can hold in-process; Scripts/fuzz/hostile_server.py runs the same against a
/// built `clip serve`, with a monitor on /healthz and the process's memory.
@Suite("clip serve: hostile clients")
struct HostileClientTests {
    let service = makeService()

    // MARK: Limits

    @Test("every limit has a ceiling and a floor, checked before the server starts", arguments: [
        "header timeout", "body timeout", "idle timeout", "body limit", "image pixel limit", "request pixel limit",
        "decoding budget", "text limit", "form part limit", "linger", "port",
    ])
    func limitsAreBounded(name: String) throws {
        try ServerOptions().validate()
        var o = ServerOptions()
        switch name {
        case "header timeout": o.headerTimeout = .seconds(4_611_686_018_427_387_904)
        case "body timeout": o.bodyTimeout = .seconds(3601)
        case "idle timeout": o.idleTimeout = .seconds(0)
        case "body limit": o.maxBodyBytes = (1 << 30) + 1
        case "image pixel limit": o.maxImagePixels = 178_956_971
        case "request pixel limit": o.maxRequestPixels = 0
        case "decoding budget": o.decodingPixels = o.maxImagePixels - 1
        case "text limit": o.maxTextBytes = (16 << 20) + 1
        case "form part limit": o.maxFormParts = 1025
        case "linger": o.lingerTimeout = .seconds(61)
        default: o.port = 65536
        }
        #expect(throws: RequestError.self, "\(name)") { try o.validate() }
        do { try o.validate() } catch { #expect(error.description.contains(name), "\(error)") }
    }

    @Test("a duration past Int64's nanoseconds saturates instead of trapping")
    func saturatingNanoseconds() {
        #expect(Duration.seconds(4_611_686_018_427_387_904).saturatingNanoseconds == .max)
        #expect(Duration.seconds(-4_611_686_018_427_387_904).saturatingNanoseconds == .min)
        #expect(Duration.milliseconds(1500).saturatingNanoseconds == 1_500_000_000)
    }

    // MARK: Disclosure

    @Test("only files that decoded as images, inside the indexed folders after resolving links, are served")
    func disclosure() async throws {
        let dir = try scratchDirectory("disclosure")
        let lib = "\(dir)/lib"
        try FileManager.default.createDirectory(atPath: lib, withIntermediateDirectories: true)
        for name in ["blue-star.png", "red-heart.png"] {
            try FileManager.default.copyItem(atPath: "\(examplesFolder)/\(name)", toPath: "\(lib)/\(name)")
        }
        try Data("TOP SECRET password=hunter2\n".utf8).write(to: URL(fileURLWithPath: "\(lib)/secret.jpg"))
        let outside = "\(dir)/outside.png"
        try FileManager.default.copyItem(atPath: "\(examplesFolder)/blue-star.png", toPath: outside)
        symlink("/etc/hostname", "\(lib)/system.jpg")
        symlink(outside, "\(lib)/outside-link.png")
        let index = try PhotoIndex(path: "\(dir)/index.sqlite")
        let model = try ModelFingerprint.indexedModel(pipeline, name: "default", in: index, registering: true)
        let report = try Indexer(index: index, pipeline: pipeline, model: model).run(folders: [lib], options: IndexingOptions())
        #expect(report.failed.count == 3, "\(report.failed)")
        // What the index keeps of a failed file says what it looks like, never its bytes.
        let errors = report.failed.map(\.reason).joined(separator: " | ")
        #expect(errors.contains("looks like text") && !errors.contains("SECRET") && !errors.contains("54 4f"), "\(errors)")
        #expect(errors.contains("outside the indexed folders"))
        let served = ServedIndex(name: "lib", search: try PhotoSearch(index: index, model: model))
        try await makeApp(service, index: served).test(.router) { client in
            var ok: [Int] = []
            for id in 1...6 {
                for route in ["/files/", "/thumbnails/"] {
                    try await client.execute(uri: "\(route)\(id)", method: .get) { response in
                        #expect(!String(buffer: response.body).contains("SECRET"))
                        if response.status == .ok && route == "/files/" { ok.append(id) }
                        #expect(response.status == .ok || response.status == .notFound)
                    }
                }
            }
            #expect(ok.count == 2, "served \(ok)")
            // A served file later replaced by a link out of the library is not served any more.
            let star = "\(lib)/blue-star.png"
            try FileManager.default.removeItem(atPath: star)
            symlink("/etc/hostname", star)
            let after = try await (1...6).asyncMap { id in
                try await client.execute(uri: "/files/\(id)", method: .get) { $0.status }
            }
            #expect(after.filter { $0 == .ok }.count == 1)
            // The metadata route says nothing of failed rows either.
            try await client.execute(uri: "/metadata", method: .post, body: jsonBody(["ids": [1, 2, 3, 4, 5, 6]])) { response in
                let items = try #require(json(response.body) as? [[String: Any]])
                #expect(items.filter { !($0["metadata"] is NSNull) }.count == 2)
            }
        }
    }

    // MARK: Requests

    @Test("a vector that cannot be normalised is a 400; one of tiny values is normalised in double precision")
    func knnVectors() async throws {
        try await makeApp(service).test(.router) { client in
            let d = service.dimension
            try await client.execute(uri: "/knn-service", method: .post, body: jsonBody(["embedding_input": [Double](repeating: 0, count: d)])) { response in
                #expect(response.status == .badRequest && errorMessage(response.body).contains("all zeros"))
            }
            try await client.execute(uri: "/knn-service", method: .post, body: jsonBody(["embedding_input": [Double](repeating: 1e-45, count: d)])) { response in
                #expect(response.status == .ok, "\(String(buffer: response.body))")
                let hits = try #require(json(response.body) as? [[String: Any]])
                #expect(hits.allSatisfy { ($0["similarity"] as? NSNumber)?.floatValue.isFinite == true })
            }
        }
    }

    @Test("texts, form parts and images past their limits are 413 before any work", arguments: ["text", "label", "query", "parts", "image", "request pixels"])
    func requestLimits(what: String) async throws {
        var options = ServerOptions()
        options.maxTextBytes = 1000
        options.maxFormParts = 4
        options.maxImagePixels = 200 * 150
        options.decodingPixels = 200 * 150
        options.maxRequestPixels = 3 * 200 * 150
        let star = base64("\(examplesFolder)/blue-star.png")  // 256 × 256
        let small = base64("\(imageDirectory)/jpeg_420_photo.jpg")  // 200 × 150
        try await makeApp(service, options: options).test(.router) { client in
            let long = String(repeating: "a cat ", count: 200)
            let response: TestResponse
            switch what {
            case "text":
                response = try await client.execute(uri: "/v1/embeddings", method: .post, body: jsonBody(["input": ["a dog", long], "truncate": true]))
            case "label":
                response = try await client.execute(uri: "/v1/classify", method: .post, body: jsonBody(["images": [small], "labels": ["dog", long]]))
            case "query":
                response = try await client.execute(uri: "/api/search?q=" + String(repeating: "cat+", count: 300), method: .get)
            case "parts":
                let boundary = "b0undary"
                var form = ""
                for i in 0..<10 { form += "--\(boundary)\r\nContent-Disposition: form-data; name=\"p\(i)\"\r\n\r\nx\r\n" }
                form += "--\(boundary)--\r\n"
                response = try await client.execute(uri: "/predict", method: .post,
                                                    headers: [.contentType: "multipart/form-data; boundary=\(boundary)"],
                                                    body: ByteBuffer(string: form))
            case "image":
                response = try await client.execute(uri: "/v1/embeddings", method: .post, body: jsonBody(["input": [["image": star]]]))
            default:
                response = try await client.execute(uri: "/v1/embeddings", method: .post,
                                                    body: jsonBody(["input": [["image": small], ["image": small], ["image": small], ["image": small]]]))
            }
            #expect(response.status == .contentTooLarge, "\(what): \(response.status) \(String(buffer: response.body))")
            #expect(errorMessage(response.body).contains("clip serve --") || what == "request pixels", "\(errorMessage(response.body))")
        }
    }

    // MARK: Connections

    @Test("connections: a dripping keep-alive request is closed; a body sent before reading sees its 413; a chunked body over the limit is 413")
    func connections() async throws {
        var options = ServerOptions()
        options.port = 0
        options.headerTimeout = .seconds(2)
        options.bodyTimeout = .seconds(10)
        options.maxBodyBytes = 4096
        let app = CLIPServer.application(service: service, index: nil, options: options, logger: .init(label: "test"))
        try await app.test(.live) { client in
            let port = try #require(client.port)
            // Blocking socket calls run on a thread of their own: on Swift's cooperative threads (two, on two
            // cores) they would hold back the server under test, which answers on those threads.
            func step(_ name: String, _ body: @escaping @Sendable () throws -> Void) async {
                do { try await blocking(body) } catch { Issue.record("\(name): \(error)") }
            }
            await step("a second request dripped on a kept-alive connection") {
                let socket = try RawConnection(port: port)
                try socket.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                #expect(try socket.receive().hasPrefix("HTTP/1.1 200"))
                let start = ContinuousClock.now
                var closed = false
                for byte in "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".utf8 {
                    guard (try? socket.send([byte])) != nil else { closed = true; break }
                    if socket.closedByPeer(waiting: 0.3) { closed = true; break }
                }
                #expect(closed && start.duration(to: .now) < .seconds(8), "closed: \(closed) after \(start.duration(to: .now))")
            }
            await step("Python's urllib: Connection: close, the whole body sent before the answer is read") {
                let body = String(repeating: "x", count: 1 << 20)
                let urllib = try RawConnection(port: port)
                try urllib.send("POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body)
                let answer = try urllib.receive()
                #expect(answer.hasPrefix("HTTP/1.1 413") && answer.lowercased().contains("connection: close"), "\(answer.prefix(200))")
            }
            await step("a client that waits for 100 Continue gets the 413 at once and the connection ends") {
                let waiting = try RawConnection(port: port)
                try waiting.send("POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n")
                #expect(try waiting.receive().hasPrefix("HTTP/1.1 413"))
                #expect(waiting.closedByPeer(waiting: 5))
            }
            await step("pipelined requests, the second asking to close: both answered, then closed") {
                let pipelined = try RawConnection(port: port)
                try pipelined.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                var answers = ""
                while !pipelined.closedByPeer(waiting: 3) { answers += try pipelined.receive() }
                #expect(answers.components(separatedBy: "HTTP/1.1 200").count - 1 == 2, "\(answers)")
            }
            await step("chunked past the limit") {
                let chunked = try RawConnection(port: port)
                try chunked.send("POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + String(repeating: "400\r\n" + String(repeating: "a", count: 1024) + "\r\n", count: 8) + "0\r\n\r\n")
                #expect(try chunked.receive().hasPrefix("HTTP/1.1 413"))
            }
            await step("a chunk size no body can have") {
                let huge = try RawConnection(port: port)
                try huge.send("POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2386F26FC10000\r\n" + String(repeating: "a", count: 8192))
                let status = try huge.receive().prefix(12)
                #expect(status == "HTTP/1.1 413" || status == "HTTP/1.1 400", "\(status)")
            }
        }
    }

    // MARK: The decoding budget

    @Test("the pixel budget admits in order, lets waiters in as room comes back, and gives up after its wait")
    func pixelBudget() async throws {
        let budget = PixelBudget(100)
        #expect(await budget.acquire(60, within: .seconds(1)))
        async let second = budget.acquire(60, within: .seconds(5))
        try await Task.sleep(for: .milliseconds(100))
        #expect(await budget.acquire(30, within: .milliseconds(200)) == false, "a later small request does not overtake")
        budget.release(60)
        #expect(await second)
        #expect(await budget.acquire(1000, within: .milliseconds(100)) == false, "more than the capacity waits for all of it")
        budget.release(60)
        #expect(await budget.acquire(1000, within: .milliseconds(100)))
    }
}

/// Runs blocking work (socket reads with timeouts) on a dispatch thread, not a cooperative one.
func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
    }
}

/// A blocking TCP connection to the server under test.
final class RawConnection {
    let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { close(fd); throw POSIXError(.ECONNREFUSED) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    deinit { close(fd) }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw POSIXError(.EPIPE) }
            sent += n
        }
    }

    /// What arrives until the answer's headers and Content-Length body are in, or the peer closes.
    func receive() throws -> String {
        var out = [UInt8](), buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            out += buffer[0..<n]
            let text = String(decoding: out, as: UTF8.self)
            if let end = text.range(of: "\r\n\r\n") {
                let head = text[..<end.lowerBound].lowercased()
                let length = head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
                    .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
                if text.utf8.count - text[..<end.upperBound].utf8.count >= length { break }
            }
        }
        guard !out.isEmpty else { throw POSIXError(.ECONNRESET) }
        return String(decoding: out, as: UTF8.self)
    }

    /// Whether the peer closed the connection within `seconds` (nothing else arriving).
    func closedByPeer(waiting seconds: Double) -> Bool {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, Int32(seconds * 1000)) > 0 else { return false }
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, Int32(MSG_PEEK)) <= 0
    }
}

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        for e in self { out.append(try await transform(e)) }
        return out
    }
}
