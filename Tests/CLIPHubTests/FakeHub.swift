@testable import CLIPHub
import CLIPFiles
import CLIPTestSupport
import Foundation

/// A loopback Hugging Face Hub that speaks the resolve protocol as huggingface.co does: a HEAD or GET of
/// `/ORG/NAME/resolve/REV/FILE` answers a small file itself (ETag = its git blob id) and redirects a large (LFS) one
/// to a CDN on another host name (`localhost` instead of `127.0.0.1`) with `X-Linked-Etag` = SHA-256 and
/// `X-Linked-Size`; every answer carries `X-Repo-Commit`; errors carry `X-Error-Code`. The CDN honours
/// `Range: bytes=N-`. Faults can be switched on: cut the next CDN bodies short, corrupt them.
final class FakeHub: @unchecked Sendable {
    // @unchecked: the fault switches are guarded by `lock`; repositories are fixed at init.
    struct Repository {
        let commit: String
        let files: [String: [UInt8]]
        /// Files stored with LFS (redirected to the CDN).
        let large: Set<String>
    }

    let repositories: [String: Repository]
    /// Old name → new name: answered with a relative 307, as the Hub does for renamed repositories.
    let renamed: [String: String]
    private let lock = NSLock()
    private var cutsLeft = 0
    private var cutAfter = 0
    private var corrupt = false
    private(set) var server: LoopbackServer!

    init(repositories: [String: Repository], renamed: [String: String] = [:]) throws {
        self.repositories = repositories
        self.renamed = renamed
        server = try LoopbackServer { [unowned self] in self.answer($0) }
    }

    var endpoint: String { server.baseURL }

    /// The next `count` CDN answers stop after `bytes` body bytes.
    func cutNext(_ count: Int, after bytes: Int) { lock.lock(); cutsLeft = count; cutAfter = bytes; lock.unlock() }
    func corruptDownloads(_ on: Bool) { lock.lock(); corrupt = on; lock.unlock() }

    /// A hub client that sees this server, a fresh cache and the given extra environment.
    func client(cache: String? = nil, _ env: [String: String] = [:]) -> HuggingFaceHub {
        var e = ["HF_ENDPOINT": endpoint, "HF_HUB_CACHE": cache ?? temporaryCache(), "HF_TOKEN": "hf_secret"]
        e.merge(env) { $1 }
        return HuggingFaceHub(environment: e, showProgress: false)
    }

    private func answer(_ r: LoopbackServer.Request) -> LoopbackServer.Response {
        if r.path.hasPrefix("/cdn/") { return cdn(r) }
        var parts = r.path.split(separator: "/", maxSplits: 4).map(String.init)
        // A repository named without an organisation (`bert-base-uncased`): NAME/resolve/REV/FILE.
        if parts.count >= 4, parts[1] == "resolve" {
            parts = [parts[0], ""] + r.path.split(separator: "/", maxSplits: 3).dropFirst().map(String.init)
        }
        guard parts.count == 5, parts[2] == "resolve" else { return .init(status: 404) }
        let id = parts[1].isEmpty ? parts[0] : parts[0] + "/" + parts[1]
        if let to = renamed[id] {
            return .init(status: 307, headers: ["Location": "/\(to)/resolve/\(parts[3])/\(parts[4])"])
        }
        guard let repo = repositories[id] else {
            return .init(status: 401, headers: ["X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"])
        }
        let revision = parts[3].removingPercentEncoding ?? parts[3]
        guard revision == "main" || revision == "v1" || revision == repo.commit else {
            return .init(status: 404, headers: ["X-Error-Code": "RevisionNotFound", "X-Error-Message": "Invalid rev id: \(revision)"])
        }
        let name = parts[4].removingPercentEncoding ?? parts[4]
        guard let bytes = repo.files[name] else {
            return .init(status: 404, headers: ["X-Error-Code": "EntryNotFound", "X-Repo-Commit": repo.commit,
                                                "X-Error-Message": "Entry not found"])
        }
        if repo.large.contains(name) {
            let sha = SHA256.hex(bytes)
            return .init(status: 302, headers: [
                "Location": "http://localhost:\(server.port)/cdn/\(sha)?name=\(name)", "X-Repo-Commit": repo.commit,
                "X-Linked-Etag": "\"\(sha)\"", "X-Linked-Size": "\(bytes.count)", "ETag": "\"\(gitBlobID(bytes))\""])
        }
        return .init(status: 200, headers: ["X-Repo-Commit": repo.commit, "ETag": "\"\(gitBlobID(bytes))\""], body: bytes)
    }

    private func cdn(_ r: LoopbackServer.Request) -> LoopbackServer.Response {
        let sha = String(r.path.dropFirst(5).prefix { $0 != "?" })
        guard var bytes = repositories.values.flatMap({ $0.files.values }).first(where: { SHA256.hex($0) == sha }) else {
            return .init(status: 404)
        }
        lock.lock()
        let cut = cutsLeft > 0 ? cutAfter : nil
        if cutsLeft > 0 { cutsLeft -= 1 }
        if corrupt { bytes[bytes.count / 2] ^= 0xff }
        lock.unlock()
        if let range = r.headers["range"], range.hasPrefix("bytes="), let start = Int(range.dropFirst(6).prefix { $0 != "-" }) {
            guard start < bytes.count else {
                return .init(status: 416, headers: ["Content-Range": "bytes */\(bytes.count)"])
            }
            return .init(status: 206, headers: ["Content-Range": "bytes \(start)-\(bytes.count - 1)/\(bytes.count)"],
                         body: Array(bytes[start...]), cutAfter: cut)
        }
        return .init(status: 200, body: bytes, cutAfter: cut)
    }
}

/// git's blob id of bytes in memory, computed here independently of the library's file-based one.
func gitBlobID(_ bytes: [UInt8]) -> String {
    var h = SHA1()
    (Array("blob \(bytes.count)\0".utf8) + bytes).withUnsafeBytes { h.update($0) }
    return h.finish()
}
