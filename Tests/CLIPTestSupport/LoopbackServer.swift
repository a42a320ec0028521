import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A minimal HTTP/1.0 server on 127.0.0.1 for download tests: answers from fixed routes or a handler, records
/// every request, and can cut a body short (a dropped connection) or stall it (a connection that stops moving).
/// One connection at a time; it runs until the test process exits.
package final class LoopbackServer: @unchecked Sendable {
    // @unchecked: `handler` is fixed at init; `log` is guarded by `lock`.
    package struct Request: Sendable {
        package let method: String
        package let path: String
        /// Header names lowercased.
        package let headers: [String: String]
    }
    package struct Response {
        package var status: Int
        package var headers: [String: String] = [:]
        package var body: [UInt8] = []
        /// Send only this many body bytes, then close (Content-Length still says the whole).
        package var cutAfter: Int? = nil
        /// Send only this many body bytes, then wait, the connection open, until the client goes away.
        package var stallAfter: Int? = nil
        /// A hostile server: send the head (and body) one byte every this many seconds.
        package var drip: Double? = nil
        /// A hostile server: after the head (and `body`), send bytes without end until the client goes away.
        package var endless = false

        package init(status: Int, headers: [String: String] = [:], body: [UInt8] = [], cutAfter: Int? = nil,
                     stallAfter: Int? = nil, drip: Double? = nil, endless: Bool = false) {
            (self.status, self.headers, self.body, self.cutAfter, self.stallAfter) = (status, headers, body, cutAfter, stallAfter)
            (self.drip, self.endless) = (drip, endless)
        }
    }
    private let handler: @Sendable (Request) -> Response
    private let lock = NSLock()
    private var log: [Request] = []
    private let fd: Int32
    package let port: Int

    package convenience init(routes: [String: Response]) throws {
        try self.init { routes[$0.path] ?? Response(status: 404, body: Array("not found".utf8)) }
    }

    package init(handler: @escaping @Sendable (Request) -> Response) throws {
        self.handler = handler
        let sock = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(sock, $0, len) } }
        guard bound == 0, listen(sock, 8) == 0 else { close(sock); throw POSIXError(.EADDRINUSE) }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(sock, $0, &len) } }
        fd = sock
        port = Int(UInt16(bigEndian: addr.sin_port))
        let thread = Thread { [self] in self.serve() }
        thread.start()
    }

    deinit { close(fd) }

    package var baseURL: String { "http://127.0.0.1:\(port)" }

    /// Requests for `path` so far.
    package func requests(_ path: String) -> Int { lock.lock(); defer { lock.unlock() }; return log.filter { $0.path == path }.count }

    /// Every request so far, in order.
    package var received: [Request] { lock.lock(); defer { lock.unlock() }; return log }

    private func serve() {
        while true {
            let c = accept(fd, nil, nil)
            if c < 0 { return }
            var request = [UInt8]()
            var chunk = [UInt8](repeating: 0, count: 4096)
            while !request.suffix(4).elementsEqual([13, 10, 13, 10]) && request.count < 65536 {
                let n = read(c, &chunk, chunk.count)
                if n <= 0 { break }
                request += chunk[0..<n]
            }
            let lines = String(decoding: request, as: UTF8.self).components(separatedBy: "\r\n")
            let first = lines.first?.split(separator: " ") ?? []
            var headers: [String: String] = [:]
            for line in lines.dropFirst() {
                guard let colon = line.firstIndex(of: ":") else { continue }
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
            let r = Request(method: first.first.map(String.init) ?? "GET", path: first.count > 1 ? String(first[1]) : "/",
                            headers: headers)
            lock.lock(); log.append(r); lock.unlock()
            let answer = handler(r)
            var head = "HTTP/1.0 \(answer.status) X\r\n"
            var fields = answer.headers
            if fields["Content-Length"] == nil && !answer.endless { fields["Content-Length"] = "\(answer.body.count)" }
            if fields["Content-Type"] == nil { fields["Content-Type"] = "application/octet-stream" }
            for (k, v) in fields { head += "\(k): \(v)\r\n" }
            head += "\r\n"
            let limit = answer.stallAfter ?? answer.cutAfter ?? answer.body.count
            let body = r.method == "HEAD" ? [] : Array(answer.body.prefix(limit))
            let out = Array(head.utf8) + body
            // MSG_NOSIGNAL: a client that went away is an error here, not a SIGPIPE for the test process.
            #if canImport(Glibc)
            let flags = Int32(MSG_NOSIGNAL)
            #else
            let flags: Int32 = 0
            #endif
            func transmit(_ bytes: ArraySlice<UInt8>) -> Bool {
                var sent = bytes.startIndex
                while sent < bytes.endIndex {
                    let n = bytes[sent...].withUnsafeBytes { send(c, $0.baseAddress, $0.count, flags) }
                    if n <= 0 { return false }
                    sent += n
                }
                return true
            }
            if let drip = answer.drip {
                for i in out.indices {
                    guard transmit(out[i...i]) else { break }
                    usleep(UInt32(drip * 1_000_000))
                }
            } else if transmit(out[...]), answer.endless, r.method != "HEAD" {
                let filler = [UInt8](repeating: 0x61, count: 65536)
                while transmit(filler[...]) {}
            }
            if answer.stallAfter != nil && r.method != "HEAD" {
                // Hold the connection until the client closes it (or is killed).
                while read(c, &chunk, chunk.count) > 0 {}
            }
            close(c)
        }
    }
}
