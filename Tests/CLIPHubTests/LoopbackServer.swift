import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A minimal HTTP/1.0 server on 127.0.0.1 for download tests: serves fixed responses by path and counts requests.
/// It handles one connection at a time and runs until the test process exits.
final class LoopbackServer: @unchecked Sendable {
    // @unchecked: `routes` is fixed at init; `counts` is guarded by `lock`.
    struct Response { let status: Int; let body: [UInt8] }
    private let routes: [String: Response]
    private let lock = NSLock()
    private var counts: [String: Int] = [:]
    private let fd: Int32
    let port: Int

    init(routes: [String: Response]) throws {
        self.routes = routes
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

    var baseURL: String { "http://127.0.0.1:\(port)" }

    func requests(_ path: String) -> Int { lock.lock(); defer { lock.unlock() }; return counts[path] ?? 0 }

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
            let line = String(decoding: request.prefix { $0 != 13 }, as: UTF8.self).split(separator: " ")
            let path = line.count > 1 ? String(line[1]) : "/"
            lock.lock(); counts[path, default: 0] += 1; lock.unlock()
            let r = routes[path] ?? Response(status: 404, body: Array("not found".utf8))
            let head = "HTTP/1.0 \(r.status) X\r\nContent-Length: \(r.body.count)\r\nContent-Type: application/octet-stream\r\n\r\n"
            let out = Array(head.utf8) + r.body
            var sent = 0
            while sent < out.count {
                let n = out[sent...].withUnsafeBytes { write(c, $0.baseAddress, $0.count) }
                if n <= 0 { break }
                sent += n
            }
            close(c)
        }
    }
}
