import ArgumentParser
import CLIPCommandSupport
import CLIPFiles
import CLIPHub
import Foundation

struct Models: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the models --model can name, whether clip loads them, and which are already downloaded.",
        discussion: """
        Names: the shipped default; OpenAI's nine (cached in $CLIP_CACHE_DIR, else ~/.cache/clip); open_clip's \
        pretrained tags as ARCH/TAG (also --model ARCH --pretrained TAG, or immich's ARCH__TAG), fetched from the \
        Hugging Face Hub into its cache ($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub); and \
        every hf-hub:ORG/NAME repository already in that cache. Nothing is downloaded or asked of the network.
        """)

    @Flag(help: "Only models already on this machine.")
    var cached = false

    @Flag(help: "Only models clip can load (open_clip architectures with towers not implemented yet are listed otherwise, with the reason).")
    var loadable = false

    @Flag(help: "One JSON object per model: name, source, loads, reason, cached, path.")
    var json = false

    @Option(help: "Where OpenAI's named models are cached (default: $CLIP_CACHE_DIR, else ~/.cache/clip).")
    var cacheDir: String?

    struct Row: Encodable {
        let name: String
        let source: String
        let loads: Bool
        let reason: String?
        let cached: Bool
        let path: String?
    }

    func run() throws {
        let hub = ModelHub(cacheDirectory: cacheDir, showProgress: false)
        var rows: [Row] = []
        let shipped = try? ModelHub.defaultModelPath()
        rows.append(Row(name: "default", source: "shipped (swift-clip-shapes)", loads: shipped != nil,
                        reason: nil, cached: shipped != nil, path: shipped))
        for (name, _) in ModelHub.openAIModels {
            guard let s = ModelHub.source(of: name) else { continue }
            let path = hub.cacheDirectory + "/" + s.file
            let present = FileManager.default.fileExists(atPath: path)
            rows.append(Row(name: name, source: "OpenAI", loads: true, reason: nil, cached: present, path: present ? path : nil))
        }
        let table = try OpenCLIPPretrained.shared.get()
        var listedRepositories = Set<String>()
        for entry in table.entries {
            let reason = table.unsupported(entry)
            let path = entry.weightFiles.lazy.compactMap { hub.huggingFace.cachedFile($0, of: entry.repository) }.first
            listedRepositories.insert(entry.repository)
            rows.append(Row(name: entry.name, source: "hf-hub:\(entry.repository)", loads: reason == nil, reason: reason,
                            cached: path != nil, path: path))
        }
        for repository in hub.huggingFace.cachedRepositories() where !listedRepositories.contains(repository) {
            rows.append(Row(name: "hf-hub:\(repository)", source: "Hugging Face cache", loads: true, reason: nil,
                            cached: true, path: hub.huggingFace.storageFolder(repository)))
        }
        rows = rows.filter { (!cached || $0.cached) && (!loadable || $0.loads) }
        if json {
            for row in rows { print(try JSONOutput.text(row)) }
            return
        }
        let width = (rows.map(\.name.count).max() ?? 4) + 2
        let sourceWidth = (rows.map(\.source.count).max() ?? 6) + 2
        func pad(_ s: String, _ w: Int) -> String { s + String(repeating: " ", count: max(w - s.count, 1)) }
        print(pad("NAME", width) + pad("SOURCE", sourceWidth) + pad("CACHED", 8) + "LOADS")
        for row in rows {
            let loads = row.loads ? "yes" : "no: \(row.reason ?? "")"
            print(pad(row.name, width) + pad(row.source, sourceWidth) + pad(row.cached ? "yes" : "no", 8) + loads)
        }
        let loadableCount = rows.filter(\.loads).count
        FileHandle.standardError.write(Data("\(rows.count) models, \(loadableCount) loadable, \(rows.filter(\.cached).count) cached; open_clip table from open_clip \(table.version)\n".utf8))
    }
}
