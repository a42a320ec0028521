import CLIPFiles
import CLIPIndex
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import HTTPTypes
import Hummingbird

/// A library file as an HTTP response, streamed from its open descriptor in chunks (a video of gigabytes is never
/// held in memory), with the single byte ranges a `<video>` element asks for to seek (RFC 9110 §14) and the
/// validators that keep a browser from joining ranges of two versions of a file.
enum FileResponse {
    /// Bytes read and written at a time.
    static let chunk = 256 << 10

    /// Reads run on a queue of their own: on the request-work pool they would wait behind the thumbnails a results
    /// page asks for, and a playing video would stall.
    private static let io: OperationQueue = {
        let q = OperationQueue()
        q.name = "clip.file-io"
        q.maxConcurrentOperationCount = 4
        return q
    }()

    /// Runs `body` on the file-reading queue.
    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            io.addOperation { continuation.resume(with: Result { try body() }) }
        }
    }

    /// Where a `Range` header asks to start and end (exclusive) in a file of `size` bytes: nil for the whole file
    /// (no header, a unit other than bytes, several ranges, or one that does not parse: a server may ignore them),
    /// `.unsatisfiable` for a range that lies past the end.
    enum Requested: Equatable {
        case whole
        case part(Range<Int>)
        case unsatisfiable
    }

    static func range(_ header: String?, size: Int) -> Requested {
        guard let header, header.hasPrefix("bytes="), !header.contains(",") else { return .whole }
        let spec = header.dropFirst("bytes=".count).trimmingCharacters(in: .whitespaces)
        let parts = spec.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return .whole }
        // Digits only, and no more of them than an Int holds: "1e3", "+5" or a 40-digit number are not ranges.
        func number(_ s: Substring) -> Int? {
            guard !s.isEmpty, s.count <= 18, s.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
            return Int(s)
        }
        if parts[0].isEmpty {
            // The last N bytes.
            guard let n = number(parts[1]) else { return .whole }
            guard n > 0, size > 0 else { return .unsatisfiable }
            return .part(max(0, size - n)..<size)
        }
        guard let first = number(parts[0]) else { return .whole }
        let last: Int
        if parts[1].isEmpty { last = size - 1 } else {
            guard let l = number(parts[1]), l >= first else { return .whole }
            last = min(l, size - 1)
        }
        guard first < size else { return .unsatisfiable }
        return .part(first..<(last + 1))
    }

    /// `file` as `type`, whole or the range the request asks for. The file stays open until the body is written.
    static func response(_ file: RegularFile, type: String, request: Request) -> Response {
        var headers: HTTPFields = [.contentType: type, .acceptRanges: "bytes", .cacheControl: "private, no-cache"]
        headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        let size = file.size
        // The size and modification time (nanoseconds) of the open file: a file replaced since gets another tag.
        var st = stat()
        let modified = fstat(file.descriptor, &st) == 0 ? modificationNanoseconds(st) : 0
        let etag = "\"\(String(size, radix: 16))-\(String(modified, radix: 16))\""
        headers[.eTag] = etag
        headers[.lastModified] = httpDate(seconds: modified / 1_000_000_000)
        if let match = request.headers[.ifNoneMatch], match.split(separator: ",").contains(where: {
            $0.trimmingCharacters(in: .whitespaces) == etag || $0.trimmingCharacters(in: .whitespaces) == "*"
        }) {
            return Response(status: .notModified, headers: headers)
        }
        // A range of the version the client holds: of another version, the whole file instead.
        var rangeHeader = request.headers[.range]
        if let ifRange = request.headers[.ifRange], ifRange != etag { rangeHeader = nil }
        let span: Range<Int>
        let status: HTTPResponse.Status
        switch range(rangeHeader, size: size) {
        case .whole:
            (span, status) = (0..<size, .ok)
        case .part(let r):
            (span, status) = (r, .partialContent)
            headers[.contentRange] = "bytes \(r.lowerBound)-\(r.upperBound - 1)/\(size)"
        case .unsatisfiable:
            headers[.contentRange] = "bytes */\(size)"
            return Response(status: .rangeNotSatisfiable, headers: headers)
        }
        let body = ResponseBody(contentLength: span.count) { writer in
            var offset = span.lowerBound
            while offset < span.upperBound {
                let n = min(chunk, span.upperBound - offset)
                let at = offset
                // A file cut since it was opened fails the read: the body ends short and the connection closes,
                // rather than padding it.
                let bytes = try await run { try file.read(at: at, count: n) }
                try await writer.write(ByteBuffer(bytes: bytes))
                offset += n
            }
            try await writer.finish(nil)
        }
        return Response(status: status, headers: headers, body: body)
    }
}

/// An HTTP date (RFC 9110 §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
func httpDate(seconds: Int64) -> String {
    var t = time_t(seconds)
    var parts = tm()
    gmtime_r(&t, &parts)
    var out = [CChar](repeating: 0, count: 64)
    let n = strftime(&out, out.count, "%a, %d %b %Y %H:%M:%S GMT", &parts)
    return String(decoding: out.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
