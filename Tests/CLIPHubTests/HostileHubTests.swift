@testable import CLIPHub
import CLIP
import CLIPFiles
import CLIPTestSupport
import Foundation
import Testing

final class PortBox: @unchecked Sendable { var value = 0 }

/// A Hub (`HF_ENDPOINT`) that lies about sizes, streams without end or drips: every transfer ends with one error in
/// bounded time, writing nothing past what was announced and nothing at all when it cannot fit.
@Suite("hf-hub: a hostile Hub")
struct HostileHubTests {
    static let commit = "fedcba9876543210fedcba9876543210fedcba98"
    static let sha = String(repeating: "ab", count: 32)

    /// A Hub whose resolve HEAD is `head` (by default: the weights are on the CDN, `announced` bytes) and whose CDN
    /// answers `cdn`.
    func hostile(announced: String = "100", head: LoopbackServer.Response? = nil,
                 cdn: LoopbackServer.Response) throws -> (LoopbackServer, HuggingFaceHub) {
        // The CDN is another host name (localhost), as the Hub's is: the HEAD does not follow it.
        let port = PortBox()
        let server = try LoopbackServer { request in
            if request.path.hasPrefix("/cdn/") { return cdn }
            if var head {
                head.headers["Location"] = "http://localhost:\(port.value)/cdn/\(Self.sha)"
                return head
            }
            return .init(status: 302, headers: ["Location": "http://localhost:\(port.value)/cdn/\(Self.sha)", "X-Repo-Commit": Self.commit,
                                                "X-Linked-Etag": "\"\(Self.sha)\"", "X-Linked-Size": announced])
        }
        port.value = server.port
        var hub = HuggingFaceHub(environment: ["HF_ENDPOINT": server.baseURL, "HF_HUB_CACHE": temporaryCache()],
                                 showProgress: false)
        hub.limits.headDeadline = .seconds(2)
        hub.limits.grace = .seconds(1)
        hub.limits.minimumBytesPerSecond = 10_000
        return (server, hub)
    }

    /// Runs a fetch that must fail; returns its message and how long it took.
    func failure(_ hub: HuggingFaceHub) -> (String, Duration) {
        let start = ContinuousClock.now
        do {
            _ = try hub.file("model.safetensors", of: "evil/repo")
            return ("no error", start.duration(to: .now))
        } catch {
            return (error.description, start.duration(to: .now))
        }
    }

    func incomplete(_ hub: HuggingFaceHub) -> [String: Int] {
        let blobs = hub.storageFolder("evil/repo") + "/blobs"
        var out: [String: Int] = [:]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: blobs)) ?? [] {
            out[name] = (try? FileManager.default.attributesOfItem(atPath: "\(blobs)/\(name)")[.size] as? Int) ?? -1
        }
        return out
    }

    @Test("a body that streams past the announced size stops at it")
    func endlessBody() throws {
        let (_, hub) = try hostile(cdn: .init(status: 200, endless: true))
        let (message, took) = failure(hub)
        // The body never ends, so a reader that did not stop at the size would never return: any finite bound tells
        // them apart. Alone this takes 2 s; beside the rest of the suite on two busy cores it once took 17 s.
        #expect(took < .seconds(60), "\(took)")
        #expect(message.contains("more than the 100 bytes") || message.contains("SHA-256"), "\(message)")
        #expect(incomplete(hub).values.allSatisfy { $0 <= 100 }, "\(incomplete(hub))")
        #expect(!FileManager.default.fileExists(atPath: hub.storageFolder("evil/repo") + "/snapshots/\(Self.commit)/model.safetensors"))
    }

    @Test("an answer whose Content-Length disagrees with the Hub's size is refused before its body")
    func disagreeingLength() throws {
        let (_, hub) = try hostile(cdn: .init(status: 200, headers: ["Content-Length": "1000000"], body: [UInt8](repeating: 1, count: 10)))
        let (message, _) = failure(hub)
        #expect(message.contains("announces 1000000 bytes where the Hub said 100"), "\(message)")
    }

    @Test("a resumed download answered 200 with another size keeps what it had")
    func resumedKeepsItsBytes() throws {
        let (_, hub) = try hostile(announced: "100000", cdn: .init(status: 200, headers: ["Content-Length": "999"],
                                                                   body: [UInt8](repeating: 7, count: 999)))
        let blobs = hub.storageFolder("evil/repo") + "/blobs"
        try FileManager.default.createDirectory(atPath: blobs, withIntermediateDirectories: true)
        try Data(repeating: 1, count: 500).write(to: URL(fileURLWithPath: "\(blobs)/\(Self.sha).incomplete"))
        let (message, _) = failure(hub)
        #expect(message.contains("announces 999 bytes where the Hub said 100000"), "\(message)")
        #expect(incomplete(hub)["\(Self.sha).incomplete"] == 500)
    }

    @Test("sizes that cannot be right are refused before anything is written", arguments: ["4611686018427387904", "-5", "12abc"])
    func impossibleSizes(_ size: String) throws {
        let (server, hub) = try hostile(announced: size, cdn: .init(status: 200, endless: true))
        let (message, took) = failure(hub)
        #expect(took < .seconds(5))
        #expect(message.contains("announces") || message.contains("not one"), "\(message)")
        #expect(incomplete(hub).isEmpty)
        #expect(server.requests("/cdn/\(Self.sha)") == 0)
    }

    @Test("a download that would not leave the reserve free is refused before it starts")
    func noRoom() throws {
        var (_, hub) = try hostile(announced: "1000000", cdn: .init(status: 200, body: [UInt8](repeating: 1, count: 1_000_000)))
        hub.limits.reserveBytes = Int.max / 4
        let (message, _) = failure(hub)
        #expect(message.contains("does not fit"), "\(message)")
        #expect(incomplete(hub).values.allSatisfy { $0 == 0 })
    }

    @Test("a HEAD that drips its headers ends at its deadline")
    func drippingHead() throws {
        let head = LoopbackServer.Response(status: 302, headers: ["X-Repo-Commit": Self.commit,
                                                                  "X-Linked-Etag": "\"\(Self.sha)\"", "X-Linked-Size": "100"], drip: 0.2)
        let (_, hub) = try hostile(head: head, cdn: .init(status: 200))
        let (message, took) = failure(hub)
        #expect(took < .seconds(6), "\(took)")
        #expect(message.contains("no complete answer within 2 s"), "\(message)")
    }

    /// The deadline passing while the redirect's answer is still due (a busy machine: it happened beside the rest of
    /// the suite) once trapped in FoundationNetworking and took the process with it. The delay puts the answer after
    /// the deadline every time.
    @Test("a HEAD whose redirect is answered after its deadline ends at the deadline", arguments: [3.5, 5.0])
    func redirectAnsweredLate(_ delay: Double) throws {
        var (_, hub) = try hostile(cdn: .init(status: 200))
        hub.limits.redirectAnswerDelay = .seconds(delay)
        let (message, took) = failure(hub)
        #expect(took < .seconds(10), "\(took)")
        #expect(message.contains("no complete answer within 2 s"), "\(message)")
    }

    @Test("a body that drips is stopped below the minimum rate; what arrived is kept for the next attempt")
    func drippingBody() throws {
        let (_, hub) = try hostile(announced: "100000", cdn: .init(status: 200, headers: ["Content-Length": "100000"],
                                                                   body: [UInt8](repeating: 1, count: 100_000), drip: 0.05))
        let (message, took) = failure(hub)
        #expect(took < .seconds(20), "\(took)")
        #expect(message.contains("slower than"), "\(message)")
    }
}

@Suite("hf-hub: caches huggingface_hub wrote, offline")
struct PythonCacheTests {
    let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/hf_cache_snapshot").path

    /// A writable copy of the fixture (the test may remove parts of it).
    func copy() throws -> String {
        let cache = temporaryCache()
        try FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: true)
        let target = cache + "/models--test-org--tiny-hf"
        try FileManager.default.copyItem(atPath: fixture + "/models--test-org--tiny-hf", toPath: target)
        return cache
    }

    @Test("`hf download`'s cache of a CLIPModel repository loads offline: its tree listing says open_clip_config.json is absent",
          arguments: [false, true])
    func snapshotDownload(withoutTreeListing: Bool) throws {
        let cache = try copy()
        if withoutTreeListing {
            // huggingface_hub before its tree cache: the snapshot folder alone.
            try FileManager.default.removeItem(atPath: cache + "/models--test-org--tiny-hf/trees")
        }
        let offline = hubModel(HuggingFaceHub(environment: ["HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": cache], showProgress: false))
        let location = try offline.locate("hf-hub:test-org/tiny-hf")
        #expect(location.path == cache + "/models--test-org--tiny-hf/snapshots/\(commitB)" && location.openCLIPConfig == nil)
        try expectSameModel(try offline.load("hf-hub:test-org/tiny-hf"), try CLIPModel.load(path: "\(clipFixtures)/formats/hf_vit_hd32"))
        // A file the repository needs and the cache lacks is still an error naming it.
        let storage = cache + "/models--test-org--tiny-hf/snapshots/\(commitB)"
        try FileManager.default.removeItem(atPath: storage + "/config.json")
        #expect { _ = try offline.locate("hf-hub:test-org/tiny-hf") } throws: { "\($0)".contains("config.json") }
    }

    @Test("a 404 is remembered as huggingface_hub remembers it: the absent marker and the revision's commit")
    func absentMarker() throws {
        let hub = try standardHub()
        let client = hub.client()
        #expect(try client.file("nothing.json", of: "test-org/tiny-hf") == nil)
        let storage = client.storageFolder("test-org/tiny-hf")
        #expect(FileManager.default.fileExists(atPath: "\(storage)/.no_exist/\(commitB)/nothing.json"))
        #expect(try String(contentsOfFile: "\(storage)/refs/main", encoding: .utf8) == commitB)
        let offline = HuggingFaceHub(environment: ["HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": client.cacheDirectory], showProgress: false)
        #expect(try offline.file("nothing.json", of: "test-org/tiny-hf") == nil)
    }
}
