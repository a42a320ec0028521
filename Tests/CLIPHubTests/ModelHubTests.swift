@testable import CLIPHub
import CLIP
import CLIPFiles
import CLIPTestSupport
import Foundation
import Testing

let checkpointFixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("../CLIPTests/Fixtures/formats/vit_small_torchscript.pt").standardized.path

/// The directory under which this test process's caches go.
let temporaryCacheRoot = perProcessTemporaryDirectory(prefix: "clip-hub-tests-")

func temporaryCache() -> String { temporaryCacheRoot + "/cache-" + UUID().uuidString }

@Test func theNineOpenAIModelsAreListed() throws {
    #expect(ModelHub.openAIModels.map(\.name) == CLIPConfiguration.openAIModelNames)
    for (name, _) in ModelHub.openAIModels {
        let s = try #require(ModelHub.source(of: name))
        #expect(s.sha256.count == 64 && s.sha256.allSatisfy(\.isHexDigit))
        #expect(s.file.hasSuffix(".pt"))
    }
    #expect(ModelHub.source(of: "ViT-B/32")?.file == "ViT-B-32.pt")
}

@Test func downloadsVerifiesAndCaches() throws {
    let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: checkpointFixture)))
    let sha = SHA256.hex(bytes)
    let server = try LoopbackServer(routes: ["/m/model.pt": .init(status: 200, body: bytes)])
    let hub = ModelHub(cacheDirectory: temporaryCache(), showProgress: false)
    let path = try hub.fetch(url: server.baseURL + "/m/model.pt", file: "model.pt", sha256: sha)
    #expect(try SHA256.file(path) == sha)
    #expect(server.requests("/m/model.pt") == 1)
    // A second fetch uses the cache.
    _ = try hub.fetch(url: server.baseURL + "/m/model.pt", file: "model.pt", sha256: sha)
    #expect(server.requests("/m/model.pt") == 1)
    // A corrupted cached file is downloaded again once.
    try Data("corrupted".utf8).write(to: URL(fileURLWithPath: path))
    _ = try hub.fetch(url: server.baseURL + "/m/model.pt", file: "model.pt", sha256: sha)
    #expect(server.requests("/m/model.pt") == 2)
    #expect(try SHA256.file(path) == sha)
    // The downloaded checkpoint loads.
    let loaded = try hub.load(path)
    #expect(loaded.format == .torchScript)
    // No temporary files are left behind.
    let left = try FileManager.default.contentsOfDirectory(atPath: hub.cacheDirectory)
    #expect(left == ["model.pt"])
}

@Test func wrongContentIsAnErrorAndNotCached() throws {
    let server = try LoopbackServer(routes: ["/x.pt": .init(status: 200, body: Array("not the model".utf8))])
    let hub = ModelHub(cacheDirectory: temporaryCache(), showProgress: false)
    do {
        _ = try hub.fetch(url: server.baseURL + "/x.pt", file: "x.pt", sha256: String(repeating: "0", count: 64))
        Issue.record("expected a checksum error")
    } catch {
        guard case .checksum = error else { Issue.record("\(error)"); return }
        #expect(error.description.contains("nothing was cached"))
    }
    #expect((try? FileManager.default.contentsOfDirectory(atPath: hub.cacheDirectory)) == [])
}

@Test func namedModelsUseTheTableAndTheMirrorLayout() throws {
    // The mirror serves something else for ViT-B/32: the name must be checked against OpenAI's SHA-256.
    let s = try #require(ModelHub.source(of: "ViT-B/32"))
    let path = "/\(s.sha256)/ViT-B-32.pt"
    let server = try LoopbackServer(routes: [path: .init(status: 200, body: Array("fake".utf8))])
    let hub = ModelHub(cacheDirectory: temporaryCache(), baseURL: server.baseURL, showProgress: false)
    #expect(throws: HubError.self) { try hub.resolve("ViT-B/32") }
    #expect(server.requests(path) == 1)
}

@Test func missingNetworkSaysWhichFileToPutWhere() throws {
    let server = try LoopbackServer(routes: [:])  // answers 404 to everything
    let hub = ModelHub(cacheDirectory: temporaryCache(), baseURL: server.baseURL, showProgress: false)
    do {
        _ = try hub.resolve("RN50")
        Issue.record("expected an error")
    } catch {
        let s = try #require(ModelHub.source(of: "RN50"))
        #expect(error.description.contains("put that file at \(hub.cacheDirectory)/RN50.pt"), "\(error)")
        #expect(error.description.contains(s.sha256))
    }
    // Nothing listens on port 9 of loopback: connection refused.
    let offline = ModelHub(cacheDirectory: temporaryCache(), baseURL: "http://127.0.0.1:9", showProgress: false)
    #expect(throws: HubError.self) { try offline.resolve("RN50") }
}

@Test func unknownNamesListTheAvailableModels() {
    do {
        _ = try ModelHub(cacheDirectory: temporaryCache()).resolve("ViT-H/14")
        Issue.record("expected an error")
    } catch {
        #expect(error.description.contains("ViT-L/14@336px"))
    }
}

@Test("with a packed-weight cache a cached model's SHA-256 is remembered per file, not computed at every start")
func verifiedModelsAreNotHashedAgain() throws {
    let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: checkpointFixture)))
    let sha = SHA256.hex(bytes)
    let server = try LoopbackServer(routes: ["/m/model.pt": .init(status: 200, body: bytes)])
    let memo = temporaryCache()
    var hub = ModelHub(cacheDirectory: temporaryCache(), showProgress: false)
    hub.weightCache = PackedWeightCache(directory: memo)
    defer { for d in [memo, hub.cacheDirectory] { try? FileManager.default.removeItem(atPath: d) } }
    let path = try hub.fetch(url: server.baseURL + "/m/model.pt", file: "model.pt", sha256: sha)
    Thread.sleep(forTimeInterval: 2.1)  // a file younger than two seconds is not remembered (timestamp granularity)
    _ = try hub.fetch(url: server.baseURL + "/m/model.pt", file: "model.pt", sha256: sha)
    #expect(server.requests("/m/model.pt") == 1)
    // The remembered digest is what the next start goes by: made wrong, the file is fetched again.
    let folder = memo + "/.clip-checkpoint-digests"
    let memos = try FileManager.default.contentsOfDirectory(atPath: folder)
    try #require(memos.count == 1)
    let entry = folder + "/" + memos[0]
    let lines = try String(contentsOfFile: entry, encoding: .utf8).split(separator: "\n")
    try #require(lines.count == 2 && lines[1] == sha)
    try Data((lines[0] + "\n" + String(repeating: "0", count: 64)).utf8).write(to: URL(fileURLWithPath: entry))
    _ = try hub.fetch(url: server.baseURL + "/m/model.pt", file: "model.pt", sha256: sha)
    #expect(server.requests("/m/model.pt") == 2)
    #expect(try SHA256.file(path) == sha)
    // A file changed in place is another file: hashed, found wrong, fetched again.
    try Data("corrupted".utf8).write(to: URL(fileURLWithPath: path))
    _ = try hub.fetch(url: server.baseURL + "/m/model.pt", file: "model.pt", sha256: sha)
    #expect(server.requests("/m/model.pt") == 3)
    #expect(try SHA256.file(path) == sha)
}
