import CLIP
import CLIPLoading
import Foundation

/// open_clip's pretrained table, as `open_clip.create_model(ARCH, pretrained=TAG)` resolves names: which Hub
/// repository and file each tag downloads, the tag's preprocessing and activation, and each architecture's built-in
/// config. Generated from open_clip by `Scripts/fixtures/make_openclip_table.py` into `Resources/open_clip_pretrained.json`.
public struct OpenCLIPPretrained: Sendable {
    /// One architecture/tag pair.
    public struct Entry: Sendable, Decodable, Equatable {
        /// open_clip's architecture name (`ViT-B-32`).
        public let model: String
        /// The pretrained tag (`laion2b_s34b_b79k`).
        public let tag: String
        /// The Hub repository holding the weights.
        public let repository: String
        /// The weight file open_clip asks for; its `.safetensors` alternative is tried first, as open_clip does.
        public let file: String
        let quick_gelu: Bool?
        let mean: [Float]?
        let std: [Float]?
        let interpolation: String?
        let resize_mode: String?

        /// `ARCH/TAG`.
        public var name: String { "\(model)/\(tag)" }

        /// The files to try, in open_clip's order.
        public var weightFiles: [String] {
            if file == "open_clip_pytorch_model.bin" { return ["open_clip_model.safetensors", file] }
            if file.hasSuffix(".bin") || file.hasSuffix(".pth") { return [String(file.dropLast(4)) + ".safetensors", file] }
            return [file]
        }
    }

    private struct Table: Decodable {
        let open_clip_version: String
        let pretrained: [Entry]
        let models: [String: JSONValue]
    }

    /// Every tag, in open_clip's order.
    public let entries: [Entry]
    /// The open_clip release the table was generated from.
    public let version: String
    /// Each architecture's built-in config.
    private let configs: [String: JSONValue]

    /// The table shipped in this build.
    public static let shared: Result<OpenCLIPPretrained, HubError> = {
        guard let url = Bundle.module.url(forResource: "open_clip_pretrained", withExtension: "json"),
              let data = try? Data(contentsOf: url) else {
            return .failure(.cache("open_clip_pretrained.json is missing from this build's resources"))
        }
        do throws(HubError) { return .success(try OpenCLIPPretrained(json: data)) } catch { return .failure(error) }
    }()

    /// A table in `open_clip_pretrained.json`'s format (the shipped one, or another in tests).
    package init(json: Data) throws(HubError) {
        do {
            let table = try JSONDecoder().decode(Table.self, from: json)
            (entries, version, configs) = (table.pretrained, table.open_clip_version, table.models)
        } catch {
            throw .cache("open_clip_pretrained.json in this build is unreadable: \(error)")
        }
    }

    /// open_clip's architecture names (`ViT-B/32` is read as `ViT-B-32`, as open_clip does).
    public var models: [String] {
        var seen = Set<String>()
        return entries.map(\.model).filter { seen.insert($0).inserted }
    }

    public static func cleaned(_ model: String) -> String { model.replacingOccurrences(of: "/", with: "-") }

    public func tags(of model: String) -> [Entry] { entries.filter { $0.model == Self.cleaned(model) } }

    public func entry(model: String, tag: String) -> Entry? {
        entries.first { $0.model == Self.cleaned(model) && $0.tag == tag.lowercased() }
    }

    /// `ARCH/TAG` or immich's `ARCH__TAG`, when both halves are in the table.
    public func entry(named spec: String) -> Entry? {
        for separator in ["__", "/"] {
            guard let r = spec.range(of: separator, options: .backwards) else { continue }
            if let e = entry(model: String(spec[..<r.lowerBound]), tag: String(spec[r.upperBound...])) { return e }
        }
        return nil
    }

    /// The model config open_clip builds for this tag: the architecture's, with the tag's preprocessing; and the
    /// activation the weights were trained with (open_clip keeps the architecture's and warns of a QuickGELU
    /// mismatch, e.g. for `ViT-B-32/openai`; the numbers then are not the trained model's).
    public func config(for entry: Entry) -> OpenCLIPConfig? {
        guard var cfg = configs[entry.model]?.object else { return nil }
        if let q = entry.quick_gelu { cfg["quick_gelu"] = .bool(q) }
        var pre: [String: JSONValue] = [:]
        if let m = entry.mean { pre["mean"] = .array(m.map { .number(Double($0)) }) }
        if let s = entry.std { pre["std"] = .array(s.map { .number(Double($0)) }) }
        if let i = entry.interpolation { pre["interpolation"] = .string(i) }
        if let r = entry.resize_mode { pre["resize_mode"] = .string(r) }
        return .value(.object(["model_cfg": .object(cfg), "preprocess_cfg": .object(pre)]), origin: "open_clip's \(entry.name)")
    }

    /// Nil when `clip` loads this architecture; else what it lacks.
    public func unsupported(_ entry: Entry) -> String? {
        guard let config = config(for: entry) else { return "no built-in config for \(entry.model)" }
        return config.unsupportedSetting
    }
}

extension OpenCLIPPretrained {
    /// The catalogued weights a model name stands for, as open_clip's `ARCH/TAG`: OpenAI's nine names as their
    /// `ARCH/openai` tags (`ViT-B/32` → `ViT-B-32/openai`, `ViT-L/14@336px` → `ViT-L-14-336/openai`), `ARCH/TAG`,
    /// immich's `ARCH__TAG` (in any letter case, as immich capitalises some), or an architecture with `pretrained`.
    /// Nil for anything else (files, folders, Hub repositories, the shipped model): their weights have no name.
    public func catalogName(_ spec: String, pretrained: String? = nil) -> String? {
        if let pretrained { return entry(model: spec, tag: pretrained)?.name }
        if ModelHub.openAIModels.contains(where: { $0.name == spec }) {
            return entry(model: spec.replacingOccurrences(of: "@336px", with: "-336"), tag: "openai")?.name
        }
        if let e = entry(named: spec) { return e.name }
        guard let r = spec.range(of: "__", options: .backwards) else { return nil }
        let model = spec[..<r.lowerBound].lowercased(), tag = spec[r.upperBound...].lowercased()
        return entries.first { $0.model.lowercased() == model && $0.tag == tag }?.name
    }
}
