import CLIPIndex
import CLIPKit
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOHTTP1
import NIOHTTPTypes

/// Turns every error a route throws into a JSON answer `{"error": {"message", "type"}}` (OpenAI's error shape)
/// with the status it deserves: a client's mistake 4xx naming it, overload 503 with Retry-After, the model's
/// failure 500. Errors become responses here, so the CORS headers and the request metrics outside see them.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            let (status, message, headers) = Self.classify(error)
            if status.code >= 500 && status != .serviceUnavailable {
                context.logger.error("\(request.method) \(request.uri.path): \(message)")
            }
            var response = try jsonResponse(ErrorBody(error: .init(message: message, type: Self.type(status))), status: status)
            response.headers.append(contentsOf: headers)
            return response
        }
    }

    static func classify(_ error: any Error) -> (HTTPResponse.Status, String, HTTPFields) {
        switch error {
        case let e as RequestError:
            return (HTTPResponse.Status(code: e.status), e.description, [:])
        case let e as HTTPError:
            return (e.status, e.body ?? e.status.reasonPhrase, e.headers)
        case let e as HTTPParserError:
            // Met while a route reads the body (a chunk size that overflows, bytes that are not HTTP): the client's.
            return (.badRequest, "the request is not valid HTTP: \(e)", [.connection: "close"])
        case is NIOTooManyBytesError:
            return (.contentTooLarge, "the body is larger than this server takes (clip serve --max-body-bytes)", [:])
        case BatcherError.overloaded(let seconds):
            return (.serviceUnavailable, BatcherError.overloaded(retryAfter: seconds).description, [.retryAfter: "\(seconds)"])
        case BatcherError.shuttingDown:
            return (.serviceUnavailable, BatcherError.shuttingDown.description, [.retryAfter: "5"])
        default:
            return (.internalServerError, "\(error)", [:])
        }
    }

    static func type(_ status: HTTPResponse.Status) -> String {
        switch status.code {
        case 401: return "authentication_error"
        case 404: return "not_found_error"
        case 413: return "request_too_large"
        case 429, 503: return "overloaded_error"
        case 400..<500: return "invalid_request_error"
        default: return "server_error"
        }
    }

    struct ErrorBody: Encodable {
        struct Detail: Encodable { var message: String; var type: String }
        var error: Detail
    }
}

/// Bearer-token authentication (`clip serve --api-key-file`). Health checks (`/healthz`, immich's `/ping`), CORS
/// preflights and the search page's static files stay open; the page sends the key it asks for as a cookie, since
/// an `<img>` cannot send headers.
struct AuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let keys: [[UInt8]]

    init(keys: Set<String>) { self.keys = keys.map { Array($0.utf8) } }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard !keys.isEmpty, request.method != .options, !openPaths.contains(request.uri.path) else {
            return try await next(request, context)
        }
        var presented: [UInt8]?
        if let header = request.headers[.authorization], header.lowercased().hasPrefix("bearer ") {
            presented = Array(header.dropFirst(7).trimmingCharacters(in: .whitespaces).utf8)
        } else if let cookies = request.headers[.cookie] {
            for part in cookies.split(separator: ";") {
                let kv = part.trimmingCharacters(in: .whitespaces)
                // The page stores the key percent-encoded (a base64 key's + / = would not survive a cookie).
                if kv.hasPrefix("clip_api_key=") {
                    let raw = String(kv.dropFirst("clip_api_key=".count))
                    presented = Array((raw.removingPercentEncoding ?? raw).utf8)
                }
            }
        }
        guard let presented, keys.contains(where: { constantTimeEqual($0, presented) }) else {
            throw HTTPError(.unauthorized, headers: [.wwwAuthenticate: "Bearer"],
                            message: presented == nil ? "this server needs an API key: send Authorization: Bearer KEY"
                                                      : "the API key is not one this server accepts")
        }
        return try await next(request, context)
    }

    /// Compares without leaking, through timing, how much of a key was right.
    func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in a.indices { diff |= a[i] ^ b[i] }
        return diff == 0
    }
}

/// Paths served without a key: health checks, the page's static files, the API description.
let openPaths: Set<String> = ["/healthz", "/ping", "/", "/index.html", "/static/app.js", "/static/style.css", "/openapi.json", "/favicon.svg",
                            "/favicon.ico"]

/// Methods by route, as /openapi.json documents them: a documented route asked with another method gets 405 with
/// `Allow` instead of 404. (The router decides the route before middleware runs, so HEAD is routed by
/// `getAndHead`, not here.)
struct MethodMiddleware<Context: RequestContext>: RouterMiddleware {
    /// Path templates (`/thumbnails/{id}`) split into segments, with their methods.
    let routes: [(segments: [Substring], methods: Set<HTTPRequest.Method>)]

    init() { routes = Self.documentedRoutes }

    static var documentedRoutes: [(segments: [Substring], methods: Set<HTTPRequest.Method>)] {
        guard let url = Bundle.module.url(forResource: "openapi", withExtension: "json", subdirectory: "Resources"),
              let data = try? Data(contentsOf: url),
              let paths = try? JSONDecoder().decode(OpenAPIPaths.self, from: data).paths else {
            return []
        }
        return paths.map { path, operations in
            (path.split(separator: "/", omittingEmptySubsequences: false),
             Set(operations.keys.compactMap { HTTPRequest.Method($0.uppercased()) }))
        }
    }

    func methods(for path: String) -> Set<HTTPRequest.Method>? {
        // As the router matches: a trailing slash makes no other route.
        var parts = path.split(separator: "/", omittingEmptySubsequences: false)
        while parts.count > 2, parts.last == "" { parts.removeLast() }
        return routes.first { route in
            route.segments.count == parts.count
                && zip(route.segments, parts).allSatisfy { $0.hasPrefix("{") || $0 == $1 }
        }?.methods
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard request.method != .options, let documented = methods(for: request.uri.path) else {
            return try await next(request, context)
        }
        // Every GET route answers HEAD too (`Router.getAndHead`).
        let allowed = documented.contains(.get) ? documented.union([.head]) : documented
        guard !allowed.contains(request.method) else { return try await next(request, context) }
        let allow = allowed.map(\.rawValue).sorted().joined(separator: ", ")
        throw HTTPError(.methodNotAllowed, headers: [.allow: allow],
                        message: "\(request.uri.path) answers \(allow), not \(request.method.rawValue)")
    }
}

extension Router {
    /// GET, and HEAD answered by the same handler with the body left out (what load balancers and uptime checks
    /// send).
    @discardableResult
    func getAndHead(_ path: RouterPath, use handler: @escaping @Sendable (Request, Context) async throws -> some ResponseGenerator) -> Self {
        get(path, use: handler)
        head(path) { request, context in
            var response = try await handler(request, context).response(from: request, context: context)
            // The length GET would send (RFC 9110 §9.3.2): a player asks it before it asks for ranges.
            let length = response.body.contentLength
            response.body = .init()
            if let length { response.headers[.contentLength] = "\(length)" }
            return response
        }
        return self
    }
}

/// The part of `/openapi.json` the method check reads: each path's operations, by method name.
private struct OpenAPIPaths: Decodable {
    /// Anything, read and dropped.
    struct Operation: Decodable { init(from decoder: any Decoder) throws {} }
    var paths: [String: [String: Operation]]
}
