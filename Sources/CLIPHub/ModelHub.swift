import CLIP
import CLIPFiles
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Names, download and cache of OpenAI's released models, as `clip.load(name)` does: files live in
/// `~/.cache/clip` under the names the reference uses (existing downloads are reused), every file is verified
/// against the SHA-256 embedded in its URL, downloads land atomically (temporary file, verified, renamed).
public struct ModelHub: Sendable {
    /// The nine models `clip.available_models()` lists, with their official URLs.
    public static let openAIModels: [(name: String, url: String)] = [
        ("RN50", "https://openaipublic.azureedge.net/clip/models/afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt"),
        ("RN101", "https://openaipublic.azureedge.net/clip/models/8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599/RN101.pt"),
        ("RN50x4", "https://openaipublic.azureedge.net/clip/models/7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd/RN50x4.pt"),
        ("RN50x16", "https://openaipublic.azureedge.net/clip/models/52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa/RN50x16.pt"),
        ("RN50x64", "https://openaipublic.azureedge.net/clip/models/be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c/RN50x64.pt"),
        ("ViT-B/32", "https://openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt"),
        ("ViT-B/16", "https://openaipublic.azureedge.net/clip/models/5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt"),
        ("ViT-L/14", "https://openaipublic.azureedge.net/clip/models/b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt"),
        ("ViT-L/14@336px", "https://openaipublic.azureedge.net/clip/models/3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt"),
    ]

    static let officialBase = "https://openaipublic.azureedge.net/clip/models/"

    /// Where downloads are kept: `--cache-dir`, else `$CLIP_CACHE_DIR`, else the reference's `~/.cache/clip`.
    public var cacheDirectory: String
    /// A mirror to fetch from instead of OpenAI's host (same layout: `<base>/<sha256>/<file>`);
    /// `$CLIP_MODEL_BASE_URL` sets it too.
    public var baseURL: String?
    /// Draw a progress bar on standard error (only when it is a terminal).
    public var showProgress: Bool

    /// A hub caching in `cacheDirectory` (else `$CLIP_CACHE_DIR`, else `~/.cache/clip`), fetching from `baseURL`
    /// (else `$CLIP_MODEL_BASE_URL`, else OpenAI's host).
    public init(cacheDirectory: String? = nil, baseURL: String? = nil, showProgress: Bool = true) {
        let env = ProcessInfo.processInfo.environment
        self.cacheDirectory = cacheDirectory ?? env["CLIP_CACHE_DIR"]
            ?? (FileManager.default.homeDirectoryForCurrentUser.path + "/.cache/clip")
        self.baseURL = baseURL ?? env["CLIP_MODEL_BASE_URL"]
        self.showProgress = showProgress
    }

    /// Names of the model shipped in the package (`docs/default-model.md`), used when no model is given.
    public static let defaultModelNames = ["default", "swift-clip-shapes"]

    /// The shipped model's file: no download, works offline.
    public static func defaultModelPath() throws(HubError) -> String {
        guard let path = Bundle.module.path(forResource: "swift-clip-shapes", ofType: "safetensors") else {
            throw .unknownModel("default (the shipped swift-clip-shapes.safetensors is missing from this build's resources)",
                                available: openAIModels.map(\.name))
        }
        return path
    }

    /// The URL, file name and expected SHA-256 of a named model.
    public static func source(of name: String) -> (url: String, file: String, sha256: String)? {
        guard let url = openAIModels.first(where: { $0.name == name })?.url else { return nil }
        let parts = url.split(separator: "/")
        return (url, String(parts[parts.count - 1]), String(parts[parts.count - 2]))
    }

    /// A model by name (downloaded into the cache when needed), file path or Hugging Face folder.
    public func load(_ spec: String, openCLIPConfig: String? = nil, precision: Precision = .fp32,
                     towers: CLIPModel.Towers = .both) throws(HubError) -> LoadedModel {
        let path = try resolve(spec)
        let loaded: LoadedModel
        do throws(ModelLoadError) {
            loaded = try CLIPModel.load(path: path, openCLIPConfig: openCLIPConfig, precision: precision, towers: towers)
        } catch {
            throw .load(error)
        }
        return loaded
    }

    /// The local path for `spec`: itself when it exists on disk, the cached (and verified) file for one of the
    /// nine names; anything else is an error listing the names.
    public func resolve(_ spec: String) throws(HubError) -> String {
        var st = stat()
        if lstat(spec, &st) == 0 { return spec }  // whatever it is, the loader names its problem
        if Self.defaultModelNames.contains(spec) { return try Self.defaultModelPath() }
        guard let s = Self.source(of: spec) else {
            throw .unknownModel(spec, available: Self.openAIModels.map(\.name))
        }
        var url = s.url
        if let base = baseURL {
            url = base.hasSuffix("/") ? base : base + "/"
            url += "\(s.sha256)/\(s.file)"
        }
        return try fetch(url: url, file: s.file, sha256: s.sha256)
    }

    /// Ensures `cacheDirectory/file` exists with the given SHA-256, downloading it from `url` if it is absent or
    /// wrong (one fresh download; a second mismatch is an error).
    public func fetch(url: String, file: String, sha256: String) throws(HubError) -> String {
        let target = (cacheDirectory as NSString).appendingPathComponent(file)
        let fm = FileManager.default
        var stale: String?
        var st = stat()
        if lstat(target, &st) == 0 {
            // Whatever sits at the cache path is checked without blocking: a FIFO there must not hang us.
            do throws(FileError) {
                if try SHA256.file(target) == sha256 { return target }
                stale = "\(target) exists but its SHA-256 does not match"
            } catch {
                guard case .notRegular = error.problem else { throw .cache("cannot read the cached \(error)") }
                throw .cache("the cache entry \(error); remove it and try again")
            }
        }
        do {
            try fm.createDirectory(atPath: cacheDirectory, withIntermediateDirectories: true)
        } catch {
            throw .cache("cannot create the cache directory \(cacheDirectory): \(error.localizedDescription)")
        }
        let temporary = target + ".download-\(ProcessInfo.processInfo.processIdentifier)"
        defer { try? fm.removeItem(atPath: temporary) }
        do throws(HubError) {
            try download(url, to: temporary, label: file, target: target, sha256: sha256)
        } catch {
            // One line: why the cache did not do, then why the download failed.
            if let stale, case .network(let u, let reason, let t, let sha) = error {
                throw .network(url: u, reason: "\(stale), and downloading it again failed: \(reason)", target: t, sha256: sha)
            }
            throw error
        }
        let got: String
        do { got = try SHA256.file(temporary) } catch { throw .cache("cannot read the download \(error)") }
        guard got == sha256 else {
            throw .checksum(url: url, expected: sha256, actual: got)
        }
        try? fm.removeItem(atPath: target)
        do {
            try fm.moveItem(atPath: temporary, toPath: target)
        } catch {
            throw .cache("cannot move the download into place at \(target): \(error.localizedDescription)")
        }
        return target
    }

    private func download(_ url: String, to path: String, label: String, target: String, sha256: String) throws(HubError) {
        guard let u = URL(string: url) else { throw .network(url: url, reason: "invalid URL", target: target, sha256: sha256) }
        let progress = showProgress && isatty(2) != 0
        let delegate = DownloadDelegate(destination: path, label: label, progress: progress)
        let session = URLSession(configuration: .ephemeral, delegate: delegate, delegateQueue: nil)
        defer { session.finishTasksAndInvalidate() }
        session.downloadTask(with: u).resume()
        delegate.done.wait()
        if let failure = delegate.failure { throw .network(url: url, reason: failure, target: target, sha256: sha256) }
    }
}

/// Collects one download into a file, drawing progress; `done` is signalled once, success or failure.
final class DownloadDelegate: NSObject, URLSessionDownloadDelegate, @unchecked Sendable {
    // @unchecked: URLSession calls the delegate on its serial delegate queue; the caller reads `failure` only
    // after `done` has been signalled.
    let destination: String
    let label: String
    let progress: Bool
    let done = DispatchSemaphore(value: 0)
    var failure: String?
    private var lastDrawn = Date.distantPast

    init(destination: String, label: String, progress: Bool) {
        self.destination = destination
        self.label = label
        self.progress = progress
    }

    func urlSession(_ session: URLSession, downloadTask: URLSessionDownloadTask, didFinishDownloadingTo location: URL) {
        if let http = downloadTask.response as? HTTPURLResponse, !(200..<300).contains(http.statusCode) {
            failure = "HTTP status \(http.statusCode)"
            return
        }
        do {
            try? FileManager.default.removeItem(atPath: destination)
            try FileManager.default.moveItem(at: location, to: URL(fileURLWithPath: destination))
        } catch {
            failure = "cannot store the download: \(error.localizedDescription)"
        }
    }

    func urlSession(_ session: URLSession, downloadTask: URLSessionDownloadTask, didWriteData bytesWritten: Int64,
                    totalBytesWritten: Int64, totalBytesExpectedToWrite: Int64) {
        guard progress, Date().timeIntervalSince(lastDrawn) > 0.1 || totalBytesWritten == totalBytesExpectedToWrite else { return }
        lastDrawn = Date()
        let mib = Double(totalBytesWritten) / 1_048_576
        var line = String(format: "\r%@ %.1f MiB", label, mib)
        if totalBytesExpectedToWrite > 0 {
            let f = Double(totalBytesWritten) / Double(totalBytesExpectedToWrite)
            let bar = String(repeating: "#", count: Int(f * 30)) + String(repeating: " ", count: 30 - Int(f * 30))
            line += String(format: " / %.1f MiB [%@] %3.0f%%", Double(totalBytesExpectedToWrite) / 1_048_576, bar, f * 100)
        }
        FileHandle.standardError.write(Data(line.utf8))
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        if let error, failure == nil { failure = error.localizedDescription }
        if progress { FileHandle.standardError.write(Data("\n".utf8)) }
        done.signal()
    }
}

/// Why a model could not be obtained.
public enum HubError: Error, CustomStringConvertible {
    case unknownModel(String, available: [String])
    case network(url: String, reason: String, target: String, sha256: String)
    case checksum(url: String, expected: String, actual: String)
    case cache(String)
    case load(ModelLoadError)

    public var description: String {
        switch self {
        case .unknownModel(let m, let names):
            return "'\(m)' is neither a file, a folder, nor one of the models \(names.joined(separator: ", "))"
        case .network(let url, let reason, let target, let sha):
            return "cannot download \(url) (\(reason)); without network, put that file at \(target) (SHA-256 \(sha))"
        case .checksum(let url, let expected, let actual):
            return "the download of \(url) has SHA-256 \(actual), expected \(expected); nothing was cached"
        case .cache(let m): return m
        case .load(let e): return e.description
        }
    }
}
