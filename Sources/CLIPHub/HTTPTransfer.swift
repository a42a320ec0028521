import Foundation
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

/// The two exchanges a model download needs, over URLSession (FoundationNetworking on Linux: libcurl), synchronous
/// because model loading is: a HEAD that reads a redirect's own headers (the Hub puts the file's hash and size on
/// the redirect to its CDN), and a GET that streams into a file and resumes it with a Range request. URLSession's
/// download tasks were used before; they cannot resume into a file of ours and left their temporary file in /tmp
/// when the answer was an error.
enum HTTPTransfer {
    /// HEAD `url`. Redirects to another host are not followed (their Location is the reply's); a relative one (the
    /// Hub's answer for a renamed repository) is, as `huggingface_hub` does.
    static func head(_ url: URL, headers: [String: String], timeout: TimeInterval = 10) throws(TransferError) -> HTTPReply {
        try following(url, headers: headers, tokenFor: url, relativeOnly: true) { (u, h) throws(TransferError) in
            var request = Self.request(u, h, timeout: timeout)
            request.httpMethod = "HEAD"
            return try TransferDelegate(file: nil, offset: 0, progress: nil).run(request)
        }
    }

    /// GET `url` into the file at `path`, appending from `offset` (its current size) with a Range request; a server
    /// that ignores the range starts the file over. Redirects are followed. An Authorization header goes only to
    /// the host of `tokenFor` (default `url`): a token for the Hub is not the business of the CDN it sends
    /// downloads to. Non-2xx answers write nothing.
    static func get(_ url: URL, headers: [String: String], tokenFor origin: URL? = nil, into path: String, offset: Int,
                    timeout: TimeInterval = 60, progress: DownloadProgress?) throws(TransferError) -> HTTPReply {
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw TransferError(reason: "cannot open \(path) for writing")
        }
        defer { try? handle.close() }
        return try following(url, headers: headers, tokenFor: origin ?? url, relativeOnly: false) { (u, h) throws(TransferError) in
            var request = Self.request(u, h, timeout: timeout)
            if offset > 0 { request.setValue("bytes=\(offset)-", forHTTPHeaderField: "Range") }
            return try TransferDelegate(file: handle, offset: offset, progress: progress).run(request)
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

/// One request's callbacks; `run` blocks until the task completes.
private final class TransferDelegate: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    // @unchecked: URLSession calls the delegate on its serial delegate queue; `run` reads the results only after
    // `done` has been signalled.
    private let file: FileHandle?
    private let progress: DownloadProgress?
    private let done = DispatchSemaphore(value: 0)
    private var reply: HTTPReply?
    private var failure: String?
    private var written: Int
    private var expected: Int?
    private var writing = false

    init(file: FileHandle?, offset: Int, progress: DownloadProgress?) {
        self.file = file
        self.written = offset
        self.progress = progress
    }

    func run(_ request: URLRequest) throws(TransferError) -> HTTPReply {
        let session = URLSession(configuration: .ephemeral, delegate: self, delegateQueue: nil)
        defer { session.finishTasksAndInvalidate() }
        session.dataTask(with: request).resume()
        done.wait()
        progress?.end()
        if let failure { throw TransferError(reason: failure, bytesWritten: written) }
        guard let reply else { throw TransferError(reason: "no HTTP answer", bytesWritten: written) }
        if writing, let expected, written < expected {
            throw TransferError(reason: "the connection closed after \(written) of \(expected) bytes", bytesWritten: written)
        }
        return reply
    }

    /// Never followed by URLSession: `HTTPTransfer` follows them itself, choosing the headers each hop gets.
    func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                    newRequest request: URLRequest, completionHandler: @escaping (URLRequest?) -> Void) {
        completionHandler(nil)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                    completionHandler: @escaping (URLSession.ResponseDisposition) -> Void) {
        guard let http = response as? HTTPURLResponse, let url = dataTask.currentRequest?.url ?? dataTask.originalRequest?.url else {
            failure = "not an HTTP answer"
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
        let length = r["content-length"].flatMap { Int($0) }
        if r.status == 200 {
            // A full answer (the server ignored the Range, or none was sent): the file starts over.
            do { try file.truncate(atOffset: 0) } catch {
                failure = "cannot truncate the download: \(error.localizedDescription)"
                completionHandler(.cancel)
                return
            }
            written = 0
            expected = length
        } else {
            let start = r["content-range"].flatMap(Self.rangeStart)
            guard start == written else {
                failure = "the server answered the range bytes=\(written)- with Content-Range \(r["content-range"] ?? "(none)")"
                completionHandler(.cancel)
                return
            }
            expected = length.map { $0 + written }
        }
        do { try file.seekToEnd() } catch {
            failure = "cannot write the download: \(error.localizedDescription)"
            completionHandler(.cancel)
            return
        }
        writing = true
        completionHandler(.allow)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        guard writing, failure == nil, let file else { return }
        do {
            try file.write(contentsOf: data)
            written += data.count
            progress?.draw(written, of: expected)
        } catch {
            failure = "cannot write the download (is the disk full?): \(error.localizedDescription)"
            dataTask.cancel()
        }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        if let error, failure == nil {
            // A cancel of ours after an error status is not a failure: the status is the answer.
            let cancelled = (error as NSError).code == NSURLErrorCancelled
            if !(cancelled && reply != nil && !writing) { failure = error.localizedDescription }
        }
        done.signal()
    }

    /// The first byte of a `bytes a-b/n` Content-Range.
    static func rangeStart(_ value: String) -> Int? {
        guard value.hasPrefix("bytes ") else { return nil }
        return Int(value.dropFirst(6).prefix { $0.isNumber })
    }
}
