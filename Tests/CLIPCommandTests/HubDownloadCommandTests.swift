import CLIPTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The tiny open_clip repository huggingface_hub cached for CLIPHubTests, served by a loopback Hub whose CDN can be
/// made to stall mid-file.
final class StallingHub: @unchecked Sendable {
    // @unchecked: `stall` is guarded by `lock`.
    static let commit = "4e1f3a7c2b9d8e6f5a4b3c2d1e0f9a8b7c6d5e4f"
    let config: [UInt8]
    let weights: [UInt8]
    let weightsSHA: String
    private let lock = NSLock()
    private var stallAt: Int?
    private(set) var server: LoopbackServer!

    init() throws {
        let snapshot = testsDirectory.appendingPathComponent(
            "CLIPHubTests/Fixtures/hf_cache/models--test-org--tiny-openclip/snapshots/\(Self.commit)").path
        config = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(snapshot)/open_clip_config.json")))
        let weightsPath = "\(snapshot)/open_clip_model.safetensors"
        weights = [UInt8](try Data(contentsOf: URL(fileURLWithPath: weightsPath)))
        weightsSHA = URL(fileURLWithPath: try FileManager.default.destinationOfSymbolicLink(atPath: weightsPath)).lastPathComponent
        server = try LoopbackServer { [unowned self] r in self.answer(r) }
    }

    func stall(at bytes: Int?) { lock.lock(); stallAt = bytes; lock.unlock() }

    private func answer(_ r: LoopbackServer.Request) -> LoopbackServer.Response {
        let commit = ["X-Repo-Commit": Self.commit]
        switch r.path {
        case "/test-org/tiny-openclip/resolve/main/open_clip_config.json":
            // A git blob id is not needed for the test's purpose; an ETag of another kind is checked by size only.
            return .init(status: 200, headers: commit.merging(["ETag": "\"config-v1\""]) { $1 }, body: config)
        case "/test-org/tiny-openclip/resolve/main/open_clip_model.safetensors":
            return .init(status: 302, headers: commit.merging([
                "Location": "\(server.baseURL)/cdn/\(weightsSHA)", "X-Linked-Etag": "\"\(weightsSHA)\"", "X-Linked-Size": "\(weights.count)"]) { $1 })
        case "/cdn/\(weightsSHA)":
            lock.lock(); let stall = stallAt; lock.unlock()
            if let range = r.headers["range"], let start = Int(range.dropFirst("bytes=".count).prefix { $0 != "-" }) {
                return .init(status: 206, headers: ["Content-Range": "bytes \(start)-\(weights.count - 1)/\(weights.count)"],
                             body: Array(weights[start...]), stallAfter: stall)
            }
            return .init(status: 200, body: weights, stallAfter: stall)
        default:
            return .init(status: 404, headers: commit.merging(["X-Error-Code": "EntryNotFound"]) { $1 })
        }
    }
}

@Test("kill -9 in the middle of a Hub download: nothing half-written is used, and the next run resumes where it stopped")
func killedDownloadResumes() throws {
    let hub = try StallingHub()
    let cache = FileManager.default.temporaryDirectory.appendingPathComponent("clip-hf-kill-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: cache) }
    let env = ["HF_ENDPOINT": hub.server.baseURL, "HF_HUB_CACHE": cache]
    let storage = "\(cache)/models--test-org--tiny-openclip"
    let partial = "\(storage)/blobs/\(hub.weightsSHA).incomplete"
    let stallAt = 400_000
    hub.stall(at: stallAt)

    let p = Process()
    p.executableURL = clipBinary
    p.arguments = ["info", "hf-hub:test-org/tiny-openclip"]
    p.environment = ProcessInfo.processInfo.environment.merging(env) { $1 }
    let errors = FileManager.default.temporaryDirectory.appendingPathComponent("clip-hf-kill-\(UUID().uuidString).err")
    _ = FileManager.default.createFile(atPath: errors.path, contents: nil)
    defer { try? FileManager.default.removeItem(at: errors) }
    p.standardOutput = FileHandle.nullDevice
    p.standardError = try FileHandle(forWritingTo: errors)
    try p.run()
    // Wait until the download has stalled with its first bytes on disk, then kill the process outright.
    let deadline = Date().addingTimeInterval(60)
    var held = 0
    while Date() < deadline {
        held = ((try? FileManager.default.attributesOfItem(atPath: partial))?[.size] as? Int) ?? 0
        if held >= stallAt { break }
        usleep(20_000)
    }
    kill(p.processIdentifier, SIGKILL)
    p.waitUntilExit()
    #expect(p.terminationReason == .uncaughtSignal, "\((try? String(contentsOf: errors, encoding: .utf8)) ?? "")")
    #expect(held == stallAt, "the partial download holds \(held) bytes")
    #expect(!FileManager.default.fileExists(atPath: "\(storage)/blobs/\(hub.weightsSHA)"))
    #expect(!FileManager.default.fileExists(atPath: "\(storage)/snapshots/\(StallingHub.commit)/open_clip_model.safetensors"))

    hub.stall(at: nil)
    let r = try runClip(["info", "hf-hub:test-org/tiny-openclip"], environment: env)
    #expect(r.status == 0, "\(r.stderr)")
    #expect(r.stdout.contains("path: \(storage)/snapshots/\(StallingHub.commit)/open_clip_model.safetensors"), "\(r.stdout)")
    let ranges = hub.server.received.filter { $0.path.hasPrefix("/cdn/") }.map { $0.headers["range"] }
    #expect(ranges == [nil, "bytes=\(stallAt)-"])
    let blob = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(storage)/blobs/\(hub.weightsSHA)")))
    #expect(blob == hub.weights)
    #expect(!FileManager.default.fileExists(atPath: partial))
}
