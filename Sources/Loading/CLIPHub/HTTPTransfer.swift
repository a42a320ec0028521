import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// What a server answered: the status, the headers (names lowercased) and the URL that answered.
struct HTTPReply: Sendable {
    let status: Int
    let headers: [String: String]
    let url: URL

    init(_ response: HTTPURLResponse, url: URL) {
        status = response.statusCode
        var h: [String: String] = [:]
        for (k, v) in response.allHeaderFields {
            if let k = k as? String, let v = v as? String { h[k.lowercased()] = v }
        }
        headers = h
        self.url = response.url ?? url
    }

    subscript(_ name: String) -> String? { headers[name.lowercased()] }
}

/// Why an exchange did not complete: no answer, or an answer cut short.
struct TransferError: Error {
    let reason: String
    /// Bytes the file held when it stopped (a resumable download keeps them).
    var bytesWritten: Int = 0
}

/// The bounds every transfer keeps, whatever the server does. URLSession's timeout only bounds the wait for the
/// next byte, so a server dripping a byte a second would hold a download for ever; these bound the whole.
package struct TransferLimits: Sendable {
    /// A HEAD must be answered within this long, all of it.
    package var headDeadline: Duration = .seconds(30)
    /// After `grace`, a download that has averaged fewer bytes per second than this since its start is stopped
    /// (what it wrote is kept for the next attempt): a deadline that grows with the file's size.
    package var minimumBytesPerSecond = 50_000
    package var grace: Duration = .seconds(30)
    /// A size announced above this is refused before anything is written: no model file is this large.
    package var maximumFileBytes = 1 << 40
    /// Free space left on the cache's file system after a download; one that would leave less is refused first.
    package var reserveBytes = 256 << 20
    /// Test hook: how long the redirect callback waits before it answers, standing for a busy delegate queue.
    package var redirectAnswerDelay: Duration = .zero

    package init() {}

    /// Whether `written` bytes after `elapsed` is too slow.
    func tooSlow(written: Int, elapsed: Duration) -> Bool {
        let counted = elapsed - grace
        guard counted > .zero else { return false }
        return Double(written) < Double(minimumBytesPerSecond) * counted.seconds
    }

    /// An error when `bytes` more would not fit on the file system of `folder`, keeping `reserveBytes` free.
    func checkRoom(for bytes: Int, in folder: String) -> String? {
        var fs = statvfs()
        guard statvfs(folder, &fs) == 0 else { return nil }
        let free = Int(clamping: UInt64(fs.f_bavail).multipliedReportingOverflow(by: UInt64(fs.f_frsize)).partialValue)
        guard bytes > free - reserveBytes else { return nil }
        return "it needs \(megabytes(bytes)) and \(folder) has \(megabytes(free)) free (\(megabytes(reserveBytes)) are kept free)"
    }
}

func megabytes(_ bytes: Int) -> String { String(format: "%.1f MB", Double(bytes) / 1e6) }

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}

/// The two exchanges a model download needs, over URLSession (FoundationNetworking on Linux: libcurl), synchronous
/// because model loading is: a HEAD that reads a redirect's own headers (the Hub puts the file's hash and size on
/// the redirect to its CDN), and a GET that streams into a file and resumes it with a Range request. URLSession's
/// download tasks were used before; they cannot resume into a file of ours and left their temporary file in /tmp
/// when the answer was an error.
enum HTTPTransfer {
    /// HEAD `url`. Redirects to another host are not followed (their Location is the reply's); a relative one (the
    /// Hub's answer for a renamed repository) is, as `huggingface_hub` does.
    static func head(_ url: URL, headers: [String: String], limits: TransferLimits,
                     timeout: TimeInterval = 10) throws(TransferError) -> HTTPReply {
        let deadline = ContinuousClock.now + limits.headDeadline
        return try following(url, headers: headers, tokenFor: url, relativeOnly: true) { (u, h) throws(TransferError) in
            var request = Self.request(u, h, timeout: timeout)
            request.httpMethod = "HEAD"
            return try TransferDelegate(file: nil, offset: 0, progress: nil, limits: limits, expectedSize: nil,
                                        folder: nil, headDeadline: deadline).run(request)
        }
    }

    /// GET `url` into the file at `path`, appending from `offset` (its current size) with a Range request; a server
    /// that ignores the range starts the file over. Redirects are followed. An Authorization header goes only to
    /// the host of `tokenFor` (default `url`): a token for the Hub is not the business of the CDN it sends
    /// downloads to. Non-2xx answers write nothing.
    ///
    /// `expectedSize` (the Hub's announced size) bounds the file: a server that sends more is cut off. Without it,
    /// the answer's Content-Length does, and without that, `limits.maximumFileBytes` and the free space.
    static func get(_ url: URL, headers: [String: String], tokenFor origin: URL? = nil, into path: String, offset: Int,
                    expectedSize: Int? = nil, limits: TransferLimits, timeout: TimeInterval = 60,
                    progress: DownloadProgress?) throws(TransferError) -> HTTPReply {
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw TransferError(reason: "cannot open \(path) for writing")
        }
        defer { try? handle.close() }
        let folder = (path as NSString).deletingLastPathComponent
        return try following(url, headers: headers, tokenFor: origin ?? url, relativeOnly: false) { (u, h) throws(TransferError) in
            var request = Self.request(u, h, timeout: timeout)
            if offset > 0 { request.setValue("bytes=\(offset)-", forHTTPHeaderField: "Range") }
            return try TransferDelegate(file: handle, offset: offset, progress: progress, limits: limits,
                                        expectedSize: expectedSize, folder: folder, headDeadline: nil).run(request)
        }
    }

    /// A request with `headers`, uncompressed (the sizes the Hub gives are of the file itself).
    private static func request(_ url: URL, _ headers: [String: String], timeout: TimeInterval) -> URLRequest {
        var request = URLRequest(url: url, timeoutInterval: timeout)
        for (k, v) in headers { request.setValue(v, forHTTPHeaderField: k) }
        request.setValue("identity", forHTTPHeaderField: "Accept-Encoding")
        return request
    }

    /// Redirects followed here rather than by URLSession, which carries every header to the next host: at most
    /// ten hops, http(s) only; `Authorization` is sent only while the request goes to the host and port of `origin`.
    private static func following(_ url: URL, headers: [String: String], tokenFor origin: URL, relativeOnly: Bool,
                                  _ send: (URL, [String: String]) throws(TransferError) -> HTTPReply) throws(TransferError) -> HTTPReply {
        var current = url
        for _ in 0..<10 {
            var h = headers
            if current.host != origin.host || current.port != origin.port { h["Authorization"] = nil }
            let reply = try send(current, h)
            guard [301, 302, 303, 307, 308].contains(reply.status), let location = reply["location"] else { return reply }
            let relative = location.hasPrefix("/") && !location.hasPrefix("//")
            if relativeOnly && !relative { return reply }
            guard let next = URL(string: location, relativeTo: current)?.absoluteURL,
                  next.scheme == "http" || next.scheme == "https" else {
                throw TransferError(reason: "\(current) redirects to '\(location)', which is not an http(s) URL")
            }
            current = next
        }
        throw TransferError(reason: "more than ten redirects from \(url)")
    }
}

/// A progress bar on standard error for one file.
final class DownloadProgress: @unchecked Sendable {
    // @unchecked: drawn from URLSession's serial delegate queue only.
    let label: String
    private var lastDrawn = Date.distantPast
    private var drewAny = false

    init?(label: String, enabled: Bool) {
        guard enabled, isatty(2) != 0 else { return nil }
        self.label = label
    }

    func draw(_ written: Int, of total: Int?) {
        guard Date().timeIntervalSince(lastDrawn) > 0.1 || written == total else { return }
        lastDrawn = Date()
        drewAny = true
        var line = String(format: "\r%@ %.1f MiB", label, Double(written) / 1_048_576)
        if let total, total > 0 {
            let f = min(Double(written) / Double(total), 1)
            let bar = String(repeating: "#", count: Int(f * 30)) + String(repeating: " ", count: 30 - Int(f * 30))
            line += String(format: " / %.1f MiB [%@] %3.0f%%", Double(total) / 1_048_576, bar, f * 100)
        }
        FileHandle.standardError.write(Data(line.utf8))
    }

    func end() { if drewAny { FileHandle.standardError.write(Data("\n".utf8)) } }
}

/// One request's callbacks; `run` blocks until the task completes, watching the limits once a second.
private final class TransferDelegate: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    // @unchecked: URLSession calls the delegate on its serial delegate queue; the state both it and `run`'s watch
    // read (`written`, `failure`) is under `lock`; the rest is read by `run` only after `done` is signalled.
    private let file: FileHandle?
    private let progress: DownloadProgress?
    private let limits: TransferLimits
    /// The size the file must have at most (the Hub's announcement), when known before the answer.
    private let expectedSize: Int?
    private let folder: String?
    private let headDeadline: ContinuousClock.Instant?
    private let done = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var reply: HTTPReply?
    private var failure: String?
    private var written: Int
    /// Bytes received in this exchange (the rate is judged by them, whatever the file held before).
    private var received = 0
    private var expected: Int?
    private var writing = false
    /// Bytes written since the free space was last checked (a download of unknown size checks as it goes).
    private var sinceRoomCheck = 0

    init(file: FileHandle?, offset: Int, progress: DownloadProgress?, limits: TransferLimits, expectedSize: Int?,
         folder: String?, headDeadline: ContinuousClock.Instant?) {
        self.file = file
        self.written = offset
        self.progress = progress
        self.limits = limits
        self.expectedSize = expectedSize
        self.folder = folder
        self.headDeadline = headDeadline
    }

    func run(_ request: URLRequest) throws(TransferError) -> HTTPReply {
        let session = URLSession(configuration: .ephemeral, delegate: self, delegateQueue: nil)
        defer { session.finishTasksAndInvalidate() }
        let task = session.dataTask(with: request)
        let started = ContinuousClock.now
        task.resume()
        while done.wait(timeout: .now() + 1) == .timedOut {
            if let reason = overdue(since: started) {
                // The failure is set (under the lock) before the cancel: the redirect callback relies on it.
                fail(reason)
                task.cancel()
                // FoundationNetworking sometimes delivers a cancelled task's completion only at the request's own
                // timeout (a minute): the deadline is ours, so the wait for it is bounded. Callbacks arriving after
                // that see the failure and touch nothing (file operations happen under the lock, after the check).
                _ = done.wait(timeout: .now() + 3)
                break
            }
        }
        progress?.end()
        let (failure, written) = lock.withLock { (self.failure, self.written) }
        if let failure { throw TransferError(reason: failure, bytesWritten: written) }
        guard let reply else { throw TransferError(reason: "no HTTP answer", bytesWritten: written) }
        if writing, let expected, written < expected {
            throw TransferError(reason: "the connection closed after \(written) of \(expected) bytes", bytesWritten: written)
        }
        return reply
    }

    /// Why the transfer must stop now, if it must.
    private func overdue(since started: ContinuousClock.Instant) -> String? {
        if let headDeadline, ContinuousClock.now > headDeadline {
            return "no complete answer within \(Int(limits.headDeadline.seconds)) s"
        }
        let elapsed = started.duration(to: .now)
        let got = lock.withLock { received }
        guard file != nil, limits.tooSlow(written: got, elapsed: elapsed) else { return nil }
        return "the transfer is slower than \(limits.minimumBytesPerSecond / 1000) kB/s (\(got) bytes in \(Int(elapsed.seconds)) s)"
    }

    private func fail(_ reason: String) {
        lock.withLock { if failure == nil { failure = reason } }
    }

    /// Never followed by URLSession: `HTTPTransfer` follows them itself, choosing the headers each hop gets.
    ///
    /// FoundationNetworking traps ("Received callback for HTTP redirection, but we're not waiting for it") when the
    /// answer reaches a task cancelled meanwhile: its cancel leaves the waiting state, and the answer then finds
    /// none. So the answer is given only while nothing has failed, under the lock `fail` takes, and `run` records
    /// its failure before it cancels: either the answer is queued before the cancel (which then finds the task
    /// complete), or it is not given at all (and the cancel completes the task).
    func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                    newRequest request: URLRequest, completionHandler: @escaping (URLRequest?) -> Void) {
        if limits.redirectAnswerDelay > .zero { Thread.sleep(forTimeInterval: limits.redirectAnswerDelay.seconds) }
        lock.withLock {
            guard failure == nil else { return }
            completionHandler(nil)
        }
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                    completionHandler: @escaping (URLSession.ResponseDisposition) -> Void) {
        guard let http = response as? HTTPURLResponse, let url = dataTask.currentRequest?.url ?? dataTask.originalRequest?.url else {
            fail("not an HTTP answer")
            completionHandler(.cancel)
            return
        }
        let r = HTTPReply(http, url: url)
        reply = r
        guard let file, r.status == 200 || r.status == 206 else {
            // HEAD, or an error status: the headers are the answer, the body is not wanted.
            completionHandler(file == nil ? .allow : .cancel)
            return
        }
        let lengthHeader = r["content-length"]
        let length = lengthHeader.flatMap { Int($0) }
        if lengthHeader != nil && (length == nil || length! < 0) {
            fail("the answer's Content-Length '\(lengthHeader!)' is not a size")
            completionHandler(.cancel)
            return
        }
        var start = 0
        if r.status == 206 {
            let rangeStart = r["content-range"].flatMap(Self.rangeStart)
            guard rangeStart == written else {
                fail("the server answered the range bytes=\(written)- with Content-Range \(r["content-range"] ?? "(none)")")
                completionHandler(.cancel)
                return
            }
            start = written
        }
        // Judged before anything is truncated: a proxy's 200 of another size must not cost the bytes resumed so far.
        let total = length.map { $0.addingReportingOverflow(start).overflow ? Int.max : $0 + start }
        if let problem = sizeProblem(total: total, kept: start) {
            fail(problem)
            completionHandler(.cancel)
            return
        }
        // Under the lock and only while nothing has failed, as every write: a transfer `run` has given up on (and
        // whose file it may have closed) is not touched. A full answer (the server ignored the Range, or none was
        // sent) starts the file over; a partial one continues at its end.
        let positioned: Result<Void, any Error>? = lock.withLock {
            guard failure == nil else { return nil }
            do {
                if r.status == 200 { try file.truncate(atOffset: 0); written = 0 }
                try file.seekToEnd()
                return .success(())
            } catch { return .failure(error) }
        }
        switch positioned {
        case .success?: break
        case .failure(let error)?:
            fail("cannot write the download: \(error.localizedDescription)")
            completionHandler(.cancel)
            return
        case nil:
            completionHandler(.cancel)
            return
        }
        expected = total ?? expectedSize
        writing = true
        completionHandler(.allow)
    }

    /// Why a download of `total` bytes (nil: not announced) cannot be right or cannot fit.
    private func sizeProblem(total: Int?, kept: Int) -> String? {
        if let total, let expectedSize, total != expectedSize {
            return "the server announces \(total) bytes where the Hub said \(expectedSize)"
        }
        guard let size = total ?? expectedSize else { return nil }
        if size > limits.maximumFileBytes {
            return "the server announces \(size) bytes, more than any model file (\(megabytes(limits.maximumFileBytes)))"
        }
        if let folder, let problem = limits.checkRoom(for: size - kept, in: folder) {
            return "the download does not fit: \(problem)"
        }
        return nil
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        guard writing, let file, lock.withLock({ failure == nil }) else { return }
        let total = lock.withLock { written } + data.count
        // Never past the announced size, nor, unannounced, past the largest file or the disk's free space.
        if let limit = expected ?? (total > limits.maximumFileBytes ? limits.maximumFileBytes : nil), total > limit {
            fail("the server sent more than the \(limit) bytes it announced")
            dataTask.cancel()
            return
        }
        sinceRoomCheck += data.count
        if expected == nil, sinceRoomCheck >= 64 << 20, let folder {
            sinceRoomCheck = 0
            if let problem = limits.checkRoom(for: 0, in: folder) {
                fail("the download stopped before filling the disk: \(problem)")
                dataTask.cancel()
                return
            }
        }
        do {
            // Under the lock and only while nothing has failed: a transfer `run` has given up on writes nothing more.
            let wrote = try lock.withLock { () throws -> Bool in
                guard failure == nil else { return false }
                try file.write(contentsOf: data)
                written = total
                received += data.count
                return true
            }
            if wrote { progress?.draw(total, of: expected) }
        } catch {
            fail("cannot write the download (is the disk full?): \(error.localizedDescription)")
            dataTask.cancel()
        }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        if let error {
            // A cancel of ours after an error status is not a failure: the status is the answer.
            let cancelled = (error as NSError).code == NSURLErrorCancelled
            if !(cancelled && reply != nil && !writing) { fail(error.localizedDescription) }
        }
        done.signal()
    }

    /// The first byte of a `bytes a-b/n` Content-Range.
    static func rangeStart(_ value: String) -> Int? {
        guard value.hasPrefix("bytes ") else { return nil }
        return Int(value.dropFirst(6).prefix { $0.isNumber })
    }
}
