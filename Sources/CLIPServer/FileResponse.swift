import CLIPFiles
import Foundation
import HTTPTypes
import Hummingbird

/// A library file as an HTTP response, streamed from its open descriptor in chunks (a video of gigabytes is never
/// held in memory), with the single byte ranges a `<video>` element asks for to seek (RFC 9110 §14).
enum FileResponse {
    /// Bytes read and written at a time.
    static let chunk = 256 << 10

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

    /// `file` as `type`, whole or the range `rangeHeader` asks for. The file stays open until the body is written.
    static func response(_ file: RegularFile, type: String, rangeHeader: String?, work: RequestWork) -> Response {
        var headers: HTTPFields = [.contentType: type, .acceptRanges: "bytes", .cacheControl: "private, max-age=3600"]
        headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        let size = file.size
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
                let bytes = try await work.run { try file.read(at: at, count: n) }
                // A file cut since it was opened ends the body short: the connection closes rather than pad.
                guard bytes.count == n else { throw RequestError("the file changed while it was sent", status: 500) }
                try await writer.write(ByteBuffer(bytes: bytes))
                offset += n
            }
            try await writer.finish(nil)
        }
        return Response(status: status, headers: headers, body: body)
    }
}
