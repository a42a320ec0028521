import CLIP
import CLIPLoading
import CLIPTensor
import CLIPWeights
import Foundation
import Testing

/// Directory of the committed fixtures written by Scripts/fixtures/make_fixtures.py.
let fixtureDirectory: String = {
    guard let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
        return "Tests/CLIPTests/Fixtures"
    }
    return url.path
}()

/// ‖ours − ref‖ / ‖ref‖ in double precision.
func relativeError(_ ours: [Float], _ ref: [Float]) -> Double {
    guard ours.count == ref.count else { return .infinity }
    var num = 0.0, den = 0.0
    for (a, b) in zip(ours, ref) {
        let d = Double(a) - Double(b)
        num += d * d
        den += Double(b) * Double(b)
    }
    return den == 0 ? num.squareRoot() : (num / den).squareRoot()
}

/// The architecture the generator recorded for a fixture.
struct FixtureConfig: Decodable {
    struct Vision: Decodable {
        let type: String
        let width: Int
        let layers: Layers
        let heads: Int
        let patch_size: Int?
        let grid: Int?
        let output_grid: Int?
    }
    /// `layers` is a count for a ViT and a list of four stage depths for a ResNet.
    enum Layers: Decodable, Equatable {
        case count(Int), stages([Int])
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let n = try? c.decode(Int.self) { self = .count(n) } else { self = .stages(try c.decode([Int].self)) }
        }
    }
    struct Text: Decodable {
        let context_length: Int
        let vocab_size: Int
        let width: Int
        let heads: Int
        let layers: Int
    }
    let embed_dim: Int
    let vision: Vision
    let text: Text
    let input_size: Int

    static func load(_ name: String, directory: String = fixtureDirectory) throws -> FixtureConfig {
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(directory)/\(name).json"))
        return try JSONDecoder().decode(FixtureConfig.self, from: data)
    }
}

/// Reference inputs and outputs of one fixture.
struct Reference {
    let pixels: Tensor
    let tokens: [[Int]]
    let imageFeatures: Tensor
    let textFeatures: Tensor
    let logitsPerImage: Tensor
    let logitsPerText: Tensor

    init(path: String) throws {
        let f = try SafeTensorsFile(path: path)
        pixels = try f.floatTensor("pixels")
        let (shape, ids) = try f.integerTensor("tokens")
        tokens = (0..<shape[0]).map { Array(ids[($0 * shape[1])..<(($0 + 1) * shape[1])]) }
        imageFeatures = try f.floatTensor("image_features")
        textFeatures = try f.floatTensor("text_features")
        logitsPerImage = try f.floatTensor("logits_per_image")
        logitsPerText = try f.floatTensor("logits_per_text")
    }
}

/// The scaled-down open_clip fixture `arch` (Tests/CLIPTests/Fixtures/open_clip) with its config edited by `edit` and
/// written to a scratch file for `name`, loaded over the weights of fixture `weights` (default: its own).
func loadOpenCLIPFixture(_ arch: String, as name: String, weights: String? = nil,
                         edit: (inout [String: Any]) -> Void) throws -> LoadedModel {
    let base = "\(fixtureDirectory)/open_clip/\(arch)"
    var cfg = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: base + ".json"))) as! [String: Any]
    edit(&cfg)
    let path = try writeScratchBytes([UInt8](try JSONSerialization.data(withJSONObject: cfg)), "\(arch)_\(name).json")
    return try CLIPModel.load(path: "\(fixtureDirectory)/open_clip/\(weights ?? arch).safetensors", openCLIPConfig: path)
}

/// Expects fixture `arch` with `vision_cfg.<key>` set to the JSON `json` to be refused with an error containing `message`.
func expectVisionSettingRefused(_ arch: String, _ key: String, _ json: String, _ message: String) throws {
    let value = try JSONSerialization.jsonObject(with: Data(json.utf8), options: .fragmentsAllowed)
    do {
        _ = try loadOpenCLIPFixture(arch, as: "\(key)-\(json.filter { $0.isLetter || $0.isNumber })", edit: settingVision(key, value))
        Issue.record("\(arch): \(key) = \(json) was accepted")
    } catch {
        #expect("\(error)".contains(message), "\(error)")
    }
}

/// Expects the timm-tower fixture `arch` to be refused without its config, with its config over `otherWeights` (the
/// error saying the config "describes `tower`"), and with a config naming no timm model.
func expectTimmTowerNeedsItsConfig(_ arch: String, otherWeights: String, tower: String) throws {
    let base = "\(fixtureDirectory)/open_clip/\(arch)"
    #expect { _ = try CLIPModel.load(path: base + ".safetensors") } throws: {
        "\($0)".contains("load it with its open_clip config")
    }
    do {
        _ = try loadOpenCLIPFixture(arch, as: "other-weights", weights: otherWeights) { _ in }
        Issue.record("\(otherWeights) weights with \(arch)'s config were accepted")
    } catch {
        #expect("\(error)".contains("describes \(tower)"), "\(error)")
    }
    do {
        _ = try loadOpenCLIPFixture(arch, as: "no-timm") { cfg in
            settingVision("timm_model_name", nil)(&cfg)
            cfg["custom_text"] = nil
        }
        Issue.record("\(arch)'s weights with a config naming no timm model were accepted")
    } catch {
        #expect("\(error)".contains("names no timm_model_name"), "\(error)")
    }
}

/// A config edit setting `vision_cfg.<key>` to `value` (nil removes it).
func settingVision(_ key: String, _ value: Any?) -> (inout [String: Any]) -> Void {
    { cfg in
        var vision = cfg["vision_cfg"] as! [String: Any]
        vision[key] = value
        cfg["vision_cfg"] = vision
    }
}
