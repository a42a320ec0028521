import Foundation

/// How `clip serve` listens and protects itself (batching is the `EmbeddingService`'s). Every limit has a floor and a
/// ceiling that `validate()` checks before the server starts: a value outside them is refused at start-up, never
/// discovered on the first connection (a timeout of 2^62 seconds overflows the event loop's nanoseconds).
package struct ServerOptions: Sendable {
    package var host = "127.0.0.1"
    package var port = 8080
    /// Request bodies larger than this get 413 (before they are read, when Content-Length says so).
    package var maxBodyBytes = 32 << 20
    /// A connection must send a request's headers within this long (from its first byte, for a request after the
    /// first on a keep-alive connection), and its body within `bodyTimeout`.
    package var headerTimeout: Duration = .seconds(10)
    package var bodyTimeout: Duration = .seconds(60)
    /// An idle keep-alive connection is closed after this long.
    package var idleTimeout: Duration = .seconds(60)
    /// Bearer tokens accepted; empty means no authentication.
    package var apiKeys: Set<String> = []
    /// Pixels (width × height, from the header) one image in a request may have; more is a 413 before decoding.
    package var maxImagePixels = 64 << 20
    /// Pixels of all the images of one request; more is a 413 before anything is decoded.
    package var maxRequestPixels = 1 << 30
    /// Pixels of all request images being decoded at once; a request waits (other routes do not) until its image
    /// fits, at most `decodeWait`, then gets 503.
    package var decodingPixels = 64 << 20
    /// How long a request waits for room to decode its images before it is answered 503.
    package var decodeWait: Duration = .seconds(30)
    /// UTF-8 bytes one text may have (a JSON input, a form field, a query); CLIP reads 77 tokens, about 300
    /// characters.
    package var maxTextBytes = 64 << 10
    /// Parts a multipart form (immich's `/predict`) may have; immich sends two.
    package var maxFormParts = 16
    /// After a response that did not read the whole request (a 413), the rest of the body is read and dropped for at
    /// most this long and this many bytes before the connection closes, so a client that sends its body before it
    /// reads sees the answer instead of a reset (nginx's lingering close).
    package var lingerTimeout: Duration = .seconds(5)
    package var lingerBytes = 256 << 20

    package init() {}

    /// Whether `host` only accepts connections from this machine.
    package static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    /// The bounds `validate()` enforces, by option, as `clip serve --help` and docs/robustness.md state them.
    package enum Bounds {
        package static let timeoutSeconds = 1...3600
        package static let bodyBytes = 1024...(1 << 30)
        package static let imagePixels = 1...178_956_970
        package static let requestPixels = 1...(1 << 36)
        package static let decodingPixels = 1...(1 << 31)
        package static let decodeWaitSeconds = 0...600
        package static let textBytes = 64...(16 << 20)
        package static let formParts = 2...1024
        package static let lingerSeconds = 0...60
        package static let lingerBytes = 0...(4 << 30)
    }

    /// Checks every limit against `Bounds`; the error names the setting and its range.
    package func validate() throws(RequestError) {
        func check(_ value: Int, _ range: ClosedRange<Int>, _ name: String) throws(RequestError) {
            guard range.contains(value) else {
                throw RequestError("\(name) must be within \(range.lowerBound)...\(range.upperBound); it is \(value)")
            }
        }
        func seconds(_ d: Duration, _ range: ClosedRange<Int>, _ name: String) throws(RequestError) {
            let s = d.components.seconds, fraction = d.components.attoseconds
            guard s >= Int64(range.lowerBound), s < Int64(range.upperBound) || (s == Int64(range.upperBound) && fraction == 0) else {
                throw RequestError("\(name) must be within \(range.lowerBound)...\(range.upperBound) seconds; it is \(d)")
            }
        }
        try check(port, 0...65535, "the port")
        try check(maxBodyBytes, Bounds.bodyBytes, "the body limit (--max-body-bytes)")
        try seconds(headerTimeout, Bounds.timeoutSeconds, "the header timeout (--header-timeout)")
        try seconds(bodyTimeout, Bounds.timeoutSeconds, "the body timeout (--body-timeout)")
        try seconds(idleTimeout, Bounds.timeoutSeconds, "the idle timeout (--idle-timeout)")
        try check(maxImagePixels, Bounds.imagePixels, "the image pixel limit (--max-image-pixels)")
        try check(maxRequestPixels, Bounds.requestPixels, "the request pixel limit (--max-request-pixels)")
        try check(decodingPixels, Bounds.decodingPixels, "the decoding budget (--decoding-pixels)")
        guard decodingPixels >= maxImagePixels else {
            throw RequestError("the decoding budget (--decoding-pixels \(decodingPixels)) must be at least the image pixel limit (--max-image-pixels \(maxImagePixels)), or the largest image would never be decoded")
        }
        try seconds(decodeWait, Bounds.decodeWaitSeconds, "the decoding wait")
        try check(maxTextBytes, Bounds.textBytes, "the text limit (--max-text-bytes)")
        try check(maxFormParts, Bounds.formParts, "the form part limit (--max-form-parts)")
        try seconds(lingerTimeout, Bounds.lingerSeconds, "the linger timeout")
        try check(lingerBytes, Bounds.lingerBytes, "the linger byte limit")
    }
}

extension Duration {
    /// The duration in whole nanoseconds, saturating at Int64's range (a `TimeAmount` for NIO's timers).
    package var saturatingNanoseconds: Int64 {
        let (s, a) = components
        let (whole, overflow) = s.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return s < 0 ? .min : .max }
        let (sum, overflow2) = whole.addingReportingOverflow(a / 1_000_000_000)
        return overflow2 ? (s < 0 ? .min : .max) : sum
    }
}
