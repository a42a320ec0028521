import CLIPFiles
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Files of Hugging Face Hub model repositories, fetched with the Hub's resolve protocol into the cache layout
/// `huggingface_hub` uses, so a model downloaded by Python is not downloaded again here, and the reverse:
///
///     <cache>/models--ORG--NAME/blobs/<etag>                  the file's bytes, named by its hash
///     <cache>/models--ORG--NAME/snapshots/<commit>/<file>     a relative symbolic link to the blob
///     <cache>/models--ORG--NAME/refs/<revision>               the commit a branch or tag named at download
///     <cache>/models--ORG--NAME/.no_exist/<commit>/<file>     an empty marker: the repository has no such file
///
/// Downloads land in `blobs/<etag>.incomplete` and resume from there (Range requests, also after the process
/// was killed), are checked against the size and hash the Hub gives (SHA-256 for large files, the git blob id for
/// small ones) and are renamed into place only whole.
public struct HuggingFaceHub: Sendable {
    /// The Hub's address: `$HF_ENDPOINT` (a mirror), else https://huggingface.co.
    public var endpoint: String
    /// `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
    public var cacheDirectory: String
    /// Sent as a bearer token to the Hub (gated and private repositories): `$HF_TOKEN`, else the file at
    /// `$HF_TOKEN_PATH` or `$HF_HOME/token` that `hf auth login` writes.
    public var token: String?
    /// `$HF_HUB_OFFLINE` (1, ON, YES or TRUE): the cache only, no request at all.
    public var offline: Bool
    /// Draw a progress bar on standard error (only when it is a terminal).
    public var showProgress: Bool
    /// Deadlines, rates and sizes every transfer keeps.
    package var limits = TransferLimits()

    /// The Hub as `huggingface_hub` would see it with these environment variables.
    public init(environment env: [String: String] = ProcessInfo.processInfo.environment, showProgress: Bool = true) {
        let home = FileManager.default.homeDirectoryForCurrentUser.path
        let hfHome = env["HF_HOME"].map(Self.expandingTilde)
            ?? ((env["XDG_CACHE_HOME"] ?? home + "/.cache") + "/huggingface")
        endpoint = String((env["HF_ENDPOINT"] ?? "https://huggingface.co").reversed().drop { $0 == "/" }.reversed())
        cacheDirectory = (env["HF_HUB_CACHE"] ?? env["HUGGINGFACE_HUB_CACHE"]).map(Self.expandingTilde) ?? hfHome + "/hub"
        let truthy: Set<String> = ["1", "ON", "YES", "TRUE"]
        offline = [env["HF_HUB_OFFLINE"], env["TRANSFORMERS_OFFLINE"]].contains { $0.map { truthy.contains($0.uppercased()) } ?? false }
        if let t = env["HF_TOKEN"], !t.isEmpty {
            token = t
        } else {
            let path = env["HF_TOKEN_PATH"].map(Self.expandingTilde) ?? hfHome + "/token"
            let bytes = try? RegularFile.contents(of: path, limit: 4096)
            let t = bytes.map { String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) }
            token = t?.isEmpty == false ? t : nil
        }
        self.showProgress = showProgress
    }

    private static func expandingTilde(_ p: String) -> String {
        p.hasPrefix("~/") ? FileManager.default.homeDirectoryForCurrentUser.path + p.dropFirst(1) : p
    }

    /// The folder of one repository in the cache.
    public func storageFolder(_ repository: String) -> String {
        cacheDirectory + "/models--" + repository.replacingOccurrences(of: "/", with: "--")
    }

    // MARK: Names

    /// A repository id as the Hub allows it: `NAME` or `ORG/NAME`, letters, digits, `-`, `_`, `.`, at most 96
    /// characters a part, no `--` or `..` (they would break the cache's folder names).
    public static func validate(repository id: String) throws(HubError) {
        let parts = id.split(separator: "/", omittingEmptySubsequences: false)
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
        let fine = (1...2).contains(parts.count) && parts.allSatisfy { p in
            !p.isEmpty && p.count <= 96 && p.allSatisfy(allowed.contains) && !p.hasPrefix("-") && !p.hasPrefix(".")
                && !p.hasSuffix("-") && !p.hasSuffix(".")
        } && !id.contains("--") && !id.contains("..")
        guard fine else {
            throw .hub("'\(id)' is not a Hugging Face repository id (ORG/NAME: letters, digits, '-', '_', '.'; no '--' or '..')")
        }
    }

    /// A branch, tag or commit: printable, no `..` segment, no leading `/` (it names a file under `refs/`).
    public static func validate(revision: String) throws(HubError) {
        let bad = revision.isEmpty || revision.count > 255 || revision.hasPrefix("/") || revision.hasSuffix("/")
            || revision.split(separator: "/").contains { $0 == ".." || $0 == "." || $0.isEmpty }
            || revision.unicodeScalars.contains { $0.value < 0x21 || $0.value == 0x7f || $0 == "\\" }
        if bad { throw .hub("'\(revision)' is not a revision (a branch, tag or commit hash)") }
    }

    static func isCommit(_ s: String) -> Bool { s.count == 40 && s.allSatisfy { $0.isHexDigit && !$0.isUppercase } }

    // MARK: Files

    /// The local path of `file` of `repository` at `revision`, downloaded when the cache lacks it; nil when the
    /// repository has no such file (the Hub's "entry not found", remembered in the cache as `huggingface_hub` does).
    ///
    /// `optional` marks a file looked for to choose between layouts (open_clip's config, tokenizer files): offline,
    /// a cached snapshot of the revision that neither holds it nor says it is absent is taken to lack it, as
    /// transformers takes optional files offline (`hf download` writes no absent markers: it fetches what the
    /// repository lists, never asks for the rest).
    public func file(_ file: String, of repository: String, revision: String = "main", optional: Bool = false) throws(HubError) -> String? {
        try Self.validate(repository: repository)
        try Self.validate(revision: revision)
        let storage = storageFolder(repository)
        if Self.isCommit(revision), exists(storage + "/snapshots/\(revision)/\(file)") {
            return storage + "/snapshots/\(revision)/\(file)"
        }
        if offline {
            if let known = cached(file, storage: storage, revision: revision) { return known.path }
            if optional, let commit = commit(of: revision, storage: storage), exists(storage + "/snapshots/\(commit)") { return nil }
            throw .hub("HF_HUB_OFFLINE is set and \(file) of \(repository) at \(revision) is not in the cache \(cacheDirectory)")
        }
        let url = resolveURL(repository: repository, revision: revision, file: file)
        let meta: Metadata?
        do throws(HubError) {
            meta = try metadata(url, repository: repository, revision: revision, file: file, storage: storage)
        } catch {
            // No answer: what the cache holds for this revision is used, as huggingface_hub does.
            if case .unreachable = error, let known = cached(file, storage: storage, revision: revision) { return known.path }
            throw error
        }
        guard let meta else { return nil }
        if revision != meta.commit {
            try writeAtomically(Array(meta.commit.utf8), to: storage + "/refs/\(revision)")
        }
        let pointer = storage + "/snapshots/\(meta.commit)/\(file)"
        if exists(pointer) { return pointer }
        let blob = storage + "/blobs/\(meta.etag)"
        try makeDirectory(storage + "/blobs")
        try makeDirectory((pointer as NSString).deletingLastPathComponent)
        let lock = try Lock(path: cacheDirectory + "/.locks/" + (storage as NSString).lastPathComponent + "/\(meta.etag).lock")
        defer { lock.release() }
        if !exists(blob) {
            try download(meta, to: blob, label: "\(repository)/\(file)")
        }
        try link(pointer: pointer, blob: blob)
        return pointer
    }

    /// The cached path of `file` at `revision`, without asking the Hub; nil when the cache does not hold it.
    public func cachedFile(_ file: String, of repository: String, revision: String = "main") -> String? {
        guard (try? Self.validate(repository: repository)) != nil, (try? Self.validate(revision: revision)) != nil else { return nil }
        return cached(file, storage: storageFolder(repository), revision: revision)?.path
    }

    /// The model repositories the cache holds (`models--ORG--NAME` folders), as `ORG/NAME`.
    public func cachedRepositories() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: cacheDirectory)) ?? []
        return names.filter { $0.hasPrefix("models--") }.map {
            String($0.dropFirst("models--".count)).replacingOccurrences(of: "--", with: "/")
        }.sorted()
    }

    /// What the cache knows of a file at a revision: its path, or that the repository lacks it (`path` nil).
    struct CacheEntry { let path: String? }

    /// What the cache says about `file` at `revision` without asking the Hub; nil when it does not know.
    func cached(_ file: String, storage: String, revision: String) -> CacheEntry? {
        guard let commit = commit(of: revision, storage: storage) else { return nil }
        let pointer = storage + "/snapshots/\(commit)/\(file)"
        if exists(pointer) { return CacheEntry(path: pointer) }
        if exists(storage + "/.no_exist/\(commit)/\(file)") { return CacheEntry(path: nil) }
        // huggingface_hub's snapshot_download keeps the repository's file list per commit: a file it does not
        // list is not in the repository.
        if let listed = treeListing(storage: storage, commit: commit), !listed.contains(file) { return CacheEntry(path: nil) }
        return nil
    }

    /// The commit a revision names in the cache: itself when it is one, else what `refs/<revision>` says.
    func commit(of revision: String, storage: String) -> String? {
        if Self.isCommit(revision) { return revision }
        guard let bytes = try? RegularFile.contents(of: storage + "/refs/\(revision)", limit: 256) else { return nil }
        let c = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return Self.isCommit(c) ? c : nil
    }

    /// The files of `trees/<commit>.json` (huggingface_hub's tree cache, format 1), or nil when there is none.
    func treeListing(storage: String, commit: String) -> Set<String>? {
        guard let bytes = try? RegularFile.contents(of: storage + "/trees/\(commit).json", limit: 64 << 20),
              let tree = try? JSONDecoder().decode(TreeCache.self, from: Data(bytes)), tree.format_version == 1 else { return nil }
        return Set(tree.files.keys)
    }

    func resolveURL(repository: String, revision: String, file: String) -> String {
        let quotedRevision = revision.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(.init(charactersIn: "-_.~"))) ?? revision
        let quotedFile = file.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? file
        return "\(endpoint)/\(repository)/resolve/\(quotedRevision)/\(quotedFile)"
    }

    /// What the Hub says about one file.
    struct Metadata {
        let commit: String
        /// The blob's name: its SHA-256 (large files) or git blob id (small ones), as the Hub gives it.
        let etag: String
        let size: Int?
        /// Where its bytes are: the CDN the Hub redirects to, or the resolve URL itself.
        let location: URL
        let url: String
    }

    private var headers: [String: String] {
        var h = ["User-Agent": "swift-clip"]
        if let token { h["Authorization"] = "Bearer \(token)" }
        return h
    }

    /// HEAD of the resolve URL, without following the redirect to the CDN: the redirect carries the file's
    /// `X-Linked-Etag` and `X-Linked-Size`. Nil when the repository has no such file.
    func metadata(_ url: String, repository: String, revision: String, file: String,
                  storage: String) throws(HubError) -> Metadata? {
        guard let u = URL(string: url), u.scheme == "http" || u.scheme == "https" else {
            throw .hub("HF_ENDPOINT gives \(url), which is not an http(s) URL")
        }
        let reply: HTTPReply
        do { reply = try HTTPTransfer.head(u, headers: headers, limits: limits) } catch {
            throw .unreachable(url: url, reason: error.reason)
        }
        let code = reply["x-error-code"]
        let message = reply["x-error-message"].map { ": \($0)" } ?? ""
        if code == "EntryNotFound" || (reply.status == 404 && code == nil) {
            // Remembered as huggingface_hub remembers it: the marker, and the commit the revision named.
            if let commit = reply["x-repo-commit"], Self.isCommit(commit) {
                try? writeAtomically([], to: storage + "/.no_exist/\(commit)/\(file)")
                if revision != commit { try? writeAtomically(Array(commit.utf8), to: storage + "/refs/\(revision)") }
            }
            return nil
        }
        switch (reply.status, code) {
        case (_, "RepoNotFound"), (401, _):
            throw .hub("the Hub has no repository \(repository), or it is private or gated and needs a token"
                       + (token == nil ? " (set HF_TOKEN)" : " that HF_TOKEN does not give") + message)
        case (_, "GatedRepo"), (403, _):
            throw .hub("\(repository) is gated: accept its conditions on the Hub with the account whose token HF_TOKEN holds\(message)")
        case (_, "RevisionNotFound"):
            throw .hub("\(repository) has no revision \(revision)\(message)")
        case (200..<400, _):
            break
        default:
            throw .unreachable(url: url, reason: "HTTP status \(reply.status)\(message)")
        }
        guard let commit = reply["x-repo-commit"], Self.isCommit(commit) else {
            throw .hub("\(url) answered without a valid X-Repo-Commit header; is HF_ENDPOINT a Hugging Face Hub?")
        }
        let rawTag = reply["x-linked-etag"] ?? reply["etag"] ?? ""
        let etag = String(rawTag.replacingOccurrences(of: "W/", with: "").filter { $0 != "\"" })
        let safe = !etag.isEmpty && etag.count <= 128 && etag.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }
            && etag.allSatisfy(\.isASCII)
        guard safe else { throw .hub("\(url) answered with an unusable ETag '\(rawTag)'") }
        let sizeHeader = reply["x-linked-size"] ?? ((300..<400).contains(reply.status) ? nil : reply["content-length"])
        let size = sizeHeader.flatMap { Int($0) }.flatMap { $0 >= 0 ? $0 : nil }
        if let sizeHeader, size == nil {
            throw .hub("\(url) announces a size '\(sizeHeader.prefix(40))' that is not one")
        }
        if let size, size > limits.maximumFileBytes {
            throw .hub("\(url) announces \(size) bytes, more than any model file (\(megabytes(limits.maximumFileBytes))); is HF_ENDPOINT a Hugging Face Hub?")
        }
        var location = reply.url
        if (300..<400).contains(reply.status), let to = reply["location"] {
            guard let target = URL(string: to, relativeTo: reply.url)?.absoluteURL,
                  target.scheme == "http" || target.scheme == "https" else {
                throw .hub("\(url) redirects to '\(to)', which is not an http(s) URL")
            }
            location = target
        }
        return Metadata(commit: commit, etag: etag, size: size, location: location, url: url)
    }

    /// The blob's bytes into `blob.incomplete` (continuing what is there), checked, renamed to `blob`. A transfer
    /// cut short is resumed up to three times while it makes progress.
    private func download(_ meta: Metadata, to blob: String, label: String) throws(HubError) {
        let partial = blob + ".incomplete"
        if !exists(partial) && !FileManager.default.createFile(atPath: partial, contents: nil) {
            throw .cache("cannot create \(partial)")
        }
        var offset = (try? RegularFile(path: partial).size) ?? 0
        if let size = meta.size, offset > size { offset = 0 }
        var retries = 0
        while true {
            if let size = meta.size, offset == size { break }
            do throws(TransferError) {
                // The token is the Hub's: the CDN the Hub redirected to does not get it.
                let reply = try HTTPTransfer.get(meta.location, headers: headers, tokenFor: URL(string: meta.url),
                                                 into: partial, offset: offset, expectedSize: meta.size, limits: limits,
                                                 progress: DownloadProgress(label: label, enabled: showProgress))
                if reply.status == 416, offset > 0 {
                    // The range starts at or past the end: what we hold is judged by its hash below.
                    break
                }
                guard (200..<300).contains(reply.status) else {
                    throw TransferError(reason: "HTTP status \(reply.status) from \(meta.location.absoluteString)")
                }
                break
            } catch {
                let before = offset
                offset = (try? RegularFile(path: partial).size) ?? 0
                retries += 1
                guard offset > before, retries <= 3 else {
                    throw .unreachable(url: meta.url, reason: error.reason + "; \(offset) bytes are kept in \(partial) and the next attempt resumes from there")
                }
            }
        }
        let got = (try? RegularFile(path: partial).size) ?? -1
        if let size = meta.size, got != size {
            try? FileManager.default.removeItem(atPath: partial)
            throw .hub("\(meta.url): the download has \(got) bytes, the Hub said \(size); it was discarded")
        }
        try verify(partial, etag: meta.etag, url: meta.url)
        guard rename(partial, blob) == 0 else {
            throw .cache("cannot rename \(partial) to \(blob): \(String(cString: strerror(errno)))")
        }
    }

    /// The blob against its name: SHA-256 for a 64-hex ETag (large files), git's blob id for a 40-hex one.
    private func verify(_ path: String, etag: String, url: String) throws(HubError) {
        let hex = etag.allSatisfy { $0.isHexDigit && !$0.isUppercase }
        let actual: String
        do throws(FileError) {
            if hex && etag.count == 64 {
                actual = try SHA256.file(path)
            } else if hex && etag.count == 40 {
                actual = try SHA1.gitBlobID(path)
            } else {
                return  // an ETag of another kind names no hash we can check; the size was checked
            }
        } catch { throw .cache("cannot read the download \(error)") }
        guard actual == etag else {
            try? FileManager.default.removeItem(atPath: path)
            throw .checksum(url: url, expected: etag, actual: actual)
        }
    }

    // MARK: Cache plumbing

    private func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    private func makeDirectory(_ path: String) throws(HubError) {
        do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
            throw .cache("cannot create \(path): \(error.localizedDescription)")
        }
    }

    /// A small file (a ref, a marker) written whole or not at all.
    private func writeAtomically(_ bytes: [UInt8], to path: String) throws(HubError) {
        try makeDirectory((path as NSString).deletingLastPathComponent)
        do { try OutputFile.write(bytes, to: path) } catch { throw .cache("cannot write \(path): \(error.reason)") }
    }

    /// `snapshots/<commit>/<file>` → `../../blobs/<etag>` (one more `..` per folder in the file's name), relative
    /// so the cache can be moved, as huggingface_hub makes it.
    private func link(pointer: String, blob: String) throws(HubError) {
        let storage = ((blob as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent
        let depth = pointer.dropFirst(storage.count + 1).split(separator: "/").count - 1
        let target = String(repeating: "../", count: depth) + "blobs/" + (blob as NSString).lastPathComponent
        let temporary = pointer + ".link-\(getpid())"
        unlink(temporary)
        guard symlink(target, temporary) == 0, rename(temporary, pointer) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw .cache("cannot link \(pointer) to \(target): \(reason)")
        }
    }
}

/// An advisory lock (flock) on a file under the cache's `.locks`, as huggingface_hub takes one per blob: two
/// processes fetching the same model do not append to one `.incomplete` file.
private struct Lock {
    let fd: Int32

    init(path: String) throws(HubError) {
        do {
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                    withIntermediateDirectories: true)
        } catch { throw .cache("cannot create the lock folder for \(path): \(error.localizedDescription)") }
        fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .cache("cannot open the lock \(path): \(String(cString: strerror(errno)))") }
        while flock(fd, LOCK_EX) != 0 {
            if errno != EINTR {
                let reason = String(cString: strerror(errno))
                close(fd)
                throw .cache("cannot lock \(path): \(reason)")
            }
        }
    }

    func release() { flock(fd, LOCK_UN); close(fd) }
}

/// huggingface_hub's `trees/<commit>.json`: the repository's files at that commit (their entries are not read here).
private struct TreeCache: Decodable {
    struct Entry: Decodable { init(from decoder: any Decoder) throws {} }
    var format_version: Int
    var files: [String: Entry]
}
