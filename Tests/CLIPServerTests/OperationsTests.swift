import CLIPKit
@testable import CLIPServer
import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension Result {
    var failure: Failure? { if case .failure(let e) = self { return e } else { return nil } }
}

/// Records batch sizes.
final class SizeRecorder: BatchObserver, @unchecked Sendable {
    private let lock = NSLock()
    private var recorded: [Int] = []
    var sizes: [Int] { lock.withLock { recorded } }
    func batch(lane: InferenceBatcher.Lane, size: Int, seconds: Double, queueSeconds: Double) { lock.withLock { recorded.append(size) } }
    func depth(_ depth: Int) {}
    func rejected() {}
}

/// A gate the test opens: a runner waiting on it holds its batch.
final class Gate: @unchecked Sendable {
    private let semaphore = DispatchSemaphore(value: 0)
    func wait() { semaphore.wait() }
    func open(_ times: Int = 1) { for _ in 0..<times { semaphore.signal() } }
}

/// Each input's first value, doubled: a runner whose results say which input they belong to.
func doubling(_ lane: InferenceBatcher.Lane, _ inputs: [InferenceBatcher.Input]) -> [[Float]] {
    inputs.map { if case .pixels(let p) = $0 { return [p[0] * 2] } else { return [] } }
}

@Suite("clip serve: batching and admission")
struct BatcherTests {
    @Test("concurrent requests share batches and each gets its own result")
    func sharing() async throws {
        let sizes = SizeRecorder()
        let batcher = InferenceBatcher(maxBatch: 8, maxWait: .milliseconds(200), capacity: 64, observer: sizes) { lane, inputs in
            doubling(lane, inputs)
        }
        batcher.start()
        defer { batcher.shutdown() }
        let results = try await withThrowingTaskGroup(of: (Int, [Float]).self) { group in
            for i in 0..<16 {
                group.addTask {
                    let reservation = try batcher.admit()
                    return (i, try await reservation.run(.image, [.pixels([Float(i)])])[0])
                }
            }
            return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
        #expect((0..<16).allSatisfy { results[$0] == [Float($0 * 2)] })
        #expect(sizes.sizes.reduce(0, +) == 16)
        #expect(sizes.sizes.count <= 4, "16 concurrent inputs with batches of 8 waiting 200 ms: \(sizes.sizes)")
        #expect(batcher.depth == 0)
    }

    @Test("a full queue refuses at once, and everything it accepted is answered")
    func overload() async throws {
        let gate = Gate()
        let batcher = InferenceBatcher(maxBatch: 1, maxWait: .zero, capacity: 4) { lane, inputs in
            gate.wait()
            return doubling(lane, inputs)
        }
        batcher.start()
        defer { batcher.shutdown() }
        func submit(_ i: Int) throws -> Task<[Float], any Error> {
            let reservation = try batcher.admit()
            return Task { try await reservation.run(.image, [.pixels([Float(i)])])[0] }
        }
        // The first input holds the batching thread on the gate; four more fill the queue.
        var accepted = [try submit(0)]
        while batcher.depth > 0 { try await Task.sleep(for: .milliseconds(2)) }
        for i in 1...4 { accepted.append(try submit(i)) }
        #expect(batcher.depth == 4)
        // A full queue: the refusal comes without waiting, whatever the model is doing.
        let refusal = Result { () throws(BatcherError) in _ = try batcher.admit() }
        guard case .overloaded(let seconds)? = refusal.failure else { Issue.record("\(refusal)"); return }
        #expect((1...2).contains(seconds), "a drain time under 1 s spread over 0.5-1.5 s: \(seconds)")
        gate.open(5)
        for (i, task) in accepted.enumerated() { #expect(try await task.value == [Float(i * 2)]) }
        #expect(batcher.depth == 0)
    }

    @Test("shutdown answers what was queued, then refuses new work")
    func shutdown() async throws {
        let gate = Gate()
        let batcher = InferenceBatcher(maxBatch: 1, maxWait: .zero, capacity: 8) { lane, inputs in
            gate.wait()
            return doubling(lane, inputs)
        }
        batcher.start()
        let queued = (0..<3).map { i in
            Task { () throws -> [Float] in try await batcher.admit().run(.image, [.pixels([Float(i)])])[0] }
        }
        while batcher.depth < 2 { try await Task.sleep(for: .milliseconds(5)) }
        let stopped = Task.detached { batcher.shutdown() }
        try await Task.sleep(for: .milliseconds(20))
        #expect(throws: BatcherError.shuttingDown) { _ = try batcher.admit() }
        gate.open(3)
        await stopped.value
        for (i, task) in queued.enumerated() { #expect(try await task.value == [Float(i * 2)]) }
    }

    @Test("a request that never runs gives its room back")
    func abandoned() throws {
        let batcher = InferenceBatcher(maxBatch: 4, maxWait: .zero, capacity: 2) { doubling($0, $1) }
        do {
            let a = try batcher.admit()
            try a.grow(to: 2)
            #expect(batcher.depth == 2)
            #expect(throws: BatcherError.self) { _ = try batcher.admit() }
        }
        #expect(batcher.depth == 0)
        _ = try batcher.admit()
    }

    @Test("a request larger than the queue is served when the server is idle")
    func largeRequestAtIdle() async throws {
        let batcher = InferenceBatcher(maxBatch: 4, maxWait: .zero, capacity: 2) { doubling($0, $1) }
        batcher.start()
        defer { batcher.shutdown() }
        let reservation = try batcher.admit()
        try reservation.grow(to: 10)
        let rows = try await reservation.run(.text, (0..<10).map { .tokens([$0]) })
        #expect(rows.count == 10)
    }

    @Test("admission follows the queue's predicted drain time against the deadline, the client's when shorter")
    func admissionByPredictedWait() async throws {
        let gate = Gate()
        let batcher = InferenceBatcher(maxBatch: 2, maxWait: .zero, capacity: 1000, maxQueueWait: .seconds(30)) { lane, inputs in
            if case .pixels(let p) = inputs[0], p == [-1] { usleep(200_000) } else { gate.wait() }
            return doubling(lane, inputs)
        }
        batcher.start()
        defer { batcher.shutdown() }
        // One batch of 0.2 s teaches the batcher the image lane's pace.
        _ = try await batcher.admit().run(.image, [.pixels([-1])])
        // The next holds the thread; ten more inputs queue: about 6 batches of 0.2 s ahead.
        var tasks: [Task<[[Float]], any Error>] = []
        let first = try batcher.admit()
        tasks.append(Task { try await first.run(.image, [.pixels([0])]) })
        while batcher.depth > 0 { try await Task.sleep(for: .milliseconds(2)) }
        let many = try batcher.admit()
        try many.grow(to: 10)
        tasks.append(Task { try await many.run(.image, (1...10).map { .pixels([Float($0)]) }) })
        while batcher.depth < 10 { try await Task.sleep(for: .milliseconds(2)) }
        _ = try batcher.admit(deadline: .seconds(5))
        #expect(throws: BatcherError.self, "a client that waits 0.5 s is refused at once") {
            _ = try batcher.admit(deadline: .milliseconds(500))
        }
        gate.open(100)
        for t in tasks { _ = try await t.value }
    }

    @Test("a request admitted on one input is refused when its body brings more than the queue can take")
    func growthIsAdmittedToo() throws {
        let batcher = InferenceBatcher(maxBatch: 4, maxWait: .zero, capacity: 200) { doubling($0, $1) }
        let alone = try batcher.admit()
        try alone.grow(to: 150)  // alone in the queue: served whatever its size
        let other = try batcher.admit()
        #expect(throws: BatcherError.self, "151 waiting, 59 more past a capacity of 200") { try other.grow(to: 60) }
        #expect(batcher.depth == 151, "the refused growth claimed nothing")
        try other.grow(to: 40)
    }

    @Test("Retry-After is spread over half to one and a half times the drain time")
    func retryAfterIsSpread() {
        let values = (0..<400).map { _ in InferenceBatcher.retryAfter(drain: 10) }
        #expect(values.allSatisfy { (5...15).contains($0) })
        #expect(Set(values).count >= 5, "\(Set(values).sorted())")
    }

    @Test("the queue gauge returns to 0 when an admitted request never runs")
    func depthGaugeAfterAbandonedRequest() async throws {
        let observer = DepthRecorder()
        let batcher = InferenceBatcher(maxBatch: 4, maxWait: .zero, capacity: 8, observer: observer) { doubling($0, $1) }
        do {
            let r = try batcher.admit()
            try r.grow(to: 3)
            #expect(observer.last == 3)
        }
        #expect(observer.last == 0)
    }
}

final class DepthRecorder: BatchObserver, @unchecked Sendable {
    private let lock = NSLock()
    private var value = -1
    var last: Int { lock.withLock { value } }
    func batch(lane: InferenceBatcher.Lane, size: Int, seconds: Double, queueSeconds: Double) {}
    func depth(_ depth: Int) { lock.withLock { value = depth } }
    func rejected() {}
}

@Suite("clip serve: limits, authentication, metrics and the API description")
struct ProtectionTests {
    @Test("HEAD is answered for GET routes, and a route asked with another method says which it answers")
    func methods() async throws {
        try await makeApp(makeService()).test(.router) { client in
            try await client.execute(uri: "/healthz", method: .head) { response in
                #expect(response.status == .ok && response.body.readableBytes == 0)
            }
            try await client.execute(uri: "/v1/embeddings", method: .get) { response in
                #expect(response.status == .methodNotAllowed && response.headers[.allow] == "POST")
                #expect(errorMessage(response.body).contains("POST"))
            }
            try await client.execute(uri: "/thumbnails/1", method: .delete) { response in
                #expect(response.status == .methodNotAllowed && response.headers[.allow] == "GET, HEAD")
            }
            try await client.execute(uri: "/v1/embeddings/", method: .get) { response in
                #expect(response.status == .methodNotAllowed && response.headers[.allow] == "POST")
            }
            try await client.execute(uri: "/no/such/route", method: .get) { response in #expect(response.status == .notFound) }
        }
    }

    @Test("a request admitted and refused before it runs (a text too long) leaves the queue gauge at 0")
    func gaugeAfterRefusedRequest() async throws {
        let gauge = DepthRecorder()
        let service = makeService(observer: gauge)
        try await makeApp(service).test(.router) { client in
            let long = String(repeating: "word ", count: 200)
            try await client.execute(uri: "/v1/embeddings", method: .post, body: jsonBody(["input": long])) { response in
                #expect(response.status == .badRequest)
            }
        }
        #expect(service.batcher.depth == 0 && gauge.last == 0, "the gauge says \(gauge.last)")
    }

    @Test("a full server answers 503 with Retry-After before reading the body")
    func overloaded() async throws {
        let service = makeService(capacity: 2)
        let held = try service.batcher.admit(2)
        try await makeApp(service).test(.router) { client in
            try await client.execute(uri: "/v1/embeddings", method: .post, body: jsonBody(["input": "a dog"])) { response in
                #expect(response.status == .serviceUnavailable)
                #expect(["1", "2"].contains(response.headers[.retryAfter] ?? ""), "spread over 0.5-1.5 s of a drain under 1 s")
                #expect(errorMessage(response.body).contains("at capacity"))
            }
            // Health checks are not queued.
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .ok)
                #expect((json(response.body) as? [String: Any])?["queue_depth"] as? Int == 2)
            }
        }
        _ = held
    }

    @Test("a body over the limit gets 413 naming the limit")
    func bodyLimit() async throws {
        var options = ServerOptions()
        options.maxBodyBytes = 1000
        try await makeApp(makeService(), options: options).test(.router) { client in
            let big = jsonBody(["input": String(repeating: "x", count: 2000)])
            try await client.execute(uri: "/v1/embeddings", method: .post, body: big) { response in
                #expect(response.status == .contentTooLarge)
                #expect(errorMessage(response.body).contains("1000"))
            }
        }
    }

    @Test("with API keys, requests need one; health checks, preflights and the page do not")
    func authentication() async throws {
        var options = ServerOptions()
        options.apiKeys = ["s3cret-key", "k+ey/with=chars"]
        try await makeApp(makeService(), options: options).test(.router) { client in
            // The page stores a key percent-encoded in its cookie: a base64-like key's + / = come back decoded.
            try await client.execute(uri: "/api/search?q=star", method: .get, headers: [.cookie: "clip_api_key=k%2Bey%2Fwith%3Dchars"]) { response in
                #expect(response.status == .ok, "\(errorMessage(response.body))")
            }
            let body = jsonBody(["input": "a dog"])
            try await client.execute(uri: "/v1/embeddings", method: .post, body: body) { response in
                #expect(response.status == .unauthorized && response.headers[.wwwAuthenticate] == "Bearer")
            }
            try await client.execute(uri: "/v1/embeddings", method: .post, headers: [.authorization: "Bearer s3cret-kez"], body: body) { response in
                #expect(response.status == .unauthorized && errorMessage(response.body).contains("not one this server accepts"))
            }
            try await client.execute(uri: "/v1/embeddings", method: .post, headers: [.authorization: "Bearer s3cret-key"], body: body) { response in
                #expect(response.status == .ok)
            }
            try await client.execute(uri: "/api/search?q=star", method: .get, headers: [.cookie: "theme=dark; clip_api_key=s3cret-key"]) { response in
                #expect(response.status == .ok)
            }
            for open in ["/healthz", "/ping", "/", "/static/app.js", "/openapi.json", "/favicon.svg"] {
                try await client.execute(uri: open, method: .get) { response in #expect(response.status == .ok, "\(open)") }
            }
            try await client.execute(uri: "/metrics", method: .get) { response in #expect(response.status == .unauthorized) }
            try await client.execute(uri: "/v1/embeddings", method: .options,
                                     headers: [.origin: "http://x.test", .accessControlRequestMethod: "POST"]) { response in
                #expect(response.status != .unauthorized)
            }
        }
    }

    @Test("metrics count requests per route and batch sizes")
    func metrics() async throws {
        let service = makeService(observer: CLIPServer.batchMetrics(modelLoadSeconds: 0.5))
        try await makeApp(service).test(.router) { client in
            try await client.execute(uri: "/v1/embeddings", method: .post, body: jsonBody(["input": ["a", "b"]])) { _ in }
            try await client.execute(uri: "/metrics", method: .get) { response in
                let text = String(buffer: response.body)
                #expect(response.headers[.contentType]?.hasPrefix("text/plain") == true)
                #expect(text.contains(#"hb_requests{http_route="/v1/embeddings",http_request_method="POST",http_response_status_code="200"}"#), "\(text)")
                #expect(text.contains(#"clip_batch_size_count{lane="text"}"#))
                #expect(text.contains("clip_queue_depth"))
                #expect(text.contains("clip_model_load_seconds"))
            }
        }
    }

    @Test("the OpenAPI document describes exactly the routes the server has")
    func openAPI() async throws {
        let router = CLIPServer.makeRouter(service: makeService(), index: examples, options: ServerOptions())
        let served = Set(router.routes.map { route -> String in
            let path = route.path.description.split(separator: "/", omittingEmptySubsequences: false)
                .map { $0.hasPrefix(":") ? "{\($0.dropFirst())}" : String($0) }.joined(separator: "/")
            return "\(route.method.rawValue) \(path.isEmpty ? "/" : path)"
        })
        try await Application(router: router).test(.router) { client in
            try await client.execute(uri: "/openapi.json", method: .get) { response in
                let doc = try #require(json(response.body) as? [String: Any])
                #expect(doc["openapi"] as? String == "3.0.3")
                let paths = try #require(doc["paths"] as? [String: [String: Any]])
                var described = Set(paths.flatMap { path, methods in methods.keys.map { "\($0.uppercased()) \(path)" } })
                // Every GET route answers HEAD (Router.getAndHead); the document leaves that implied.
                described.formUnion(described.filter { $0.hasPrefix("GET ") }.map { "HEAD " + $0.dropFirst(4) })
                #expect(described == served, "only described: \(described.subtracting(served)); only served: \(served.subtracting(described))")
            }
        }
    }
}

@Suite("clip serve: slow clients")
struct SlowClientTests {
    /// A TCP connection to the server that sends `bytes` and reports whether the server closed it within `seconds`.
    func closedAfterSending(_ bytes: String, port: Int, within seconds: Double) throws -> Bool {
        let answer = try reply(to: bytes, port: port, within: seconds)
        return answer.isEmpty || answer.contains("Connection: close")
    }

    /// What the server sends back on a new connection after `bytes` (empty when it closes without a word).
    func reply(to bytes: String, port: Int, within seconds: Double = 10) throws -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
        _ = bytes.withCString { send(fd, $0, strlen($0), 0) }
        var timeout = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 1024)
        let n = recv(fd, &buffer, buffer.count, 0)
        guard n >= 0 else { throw POSIXError(.ETIMEDOUT) }
        return String(decoding: buffer[0..<n], as: UTF8.self)
    }

    @Test("a client that stops mid-headers or mid-body is disconnected")
    func timeouts() async throws {
        var options = ServerOptions()
        options.port = 0
        options.headerTimeout = .seconds(1)
        options.bodyTimeout = .seconds(1)
        let service = makeService()
        let app = CLIPServer.application(service: service, index: nil, options: options, logger: .init(label: "test"))
        try await app.test(.live) { client in
            let port = try #require(client.port)
            // Off the cooperative threads, which the server under test answers on.
            try await blocking { [self] () throws -> Void in
                let partialHeaders = "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: appl"
                #expect(try closedAfterSending(partialHeaders, port: port, within: 4), "headers never finished")
                let partialBody = "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"input\": "
                #expect(try closedAfterSending(partialBody, port: port, within: 4), "body never finished")
                // A prompt client on the same server is served.
                let body = #"{"input": "a dog"}"#
                #expect(try reply(to: "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)", port: port)
                    .hasPrefix("HTTP/1.1 200"))
            }
        }
    }
}
