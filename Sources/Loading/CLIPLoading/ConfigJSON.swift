import CLIP
import CLIPFiles
import CLIPLayers
import CLIPTensor
import CLIPWeights
import Foundation

/// A JSON document as Foundation's `JSONDecoder` reads it: configs are decoded into it once, checked key by key
/// (every error names its key and file), and never turned back into bytes.
package enum JSONValue: Sendable, Hashable, Decodable, CustomStringConvertible {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    package init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    /// The document in `bytes`; nil when they are not JSON.
    package static func parse(_ bytes: [UInt8]) -> JSONValue? { try? JSONDecoder().decode(JSONValue.self, from: Data(bytes)) }

    package subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }
    package var object: [String: JSONValue]? { if case .object(let o) = self { o } else { nil } }
    package var string: String? { if case .string(let s) = self { s } else { nil } }
    /// A boolean, or the numbers 0 and 1, which Python's `json` and open_clip's truth tests read as false and true
    /// (configs written by hand or by other tools carry them).
    package var bool: Bool? {
        switch self {
        case .bool(let b): return b
        case .number(0): return false
        case .number(1): return true
        default: return nil
        }
    }
    package var number: Double? { if case .number(let n) = self { n } else { nil } }
    package var array: [JSONValue]? { if case .array(let a) = self { a } else { nil } }

    /// Compact JSON text, as errors quote a value (whole numbers without a fraction).
    package var description: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .number(let n):
            // Every whole number an Int64 holds prints as one (2^63 itself does not fit).
            if n == n.rounded(), abs(n) < 0x1p63 { return String(Int64(n)) }
            return "\(n)"
        case .string(let s): return SafeTensorsWriter.jsonString(s)
        case .array(let a): return "[" + a.map(\.description).joined(separator: ",") + "]"
        case .object(let o):
            return "{" + o.keys.sorted().map { SafeTensorsWriter.jsonString($0) + ":" + o[$0]!.description }.joined(separator: ",") + "}"
        }
    }
}

/// Reading one config: each accessor checks a value and names its key and file when it is wrong.
struct ConfigReader {
    /// The file (or in-memory config) errors name.
    let origin: String

    /// A config file: a regular file of at most 16 MiB holding a JSON object.
    static func read(_ path: String) throws(ModelLoadError) -> [String: JSONValue] {
        let bytes: [UInt8]
        do { bytes = try RegularFile.contents(of: path, limit: 16 << 20) } catch {
            throw .weightFile(WeightFileError(file: path, .cannotOpen(reason: error.reason)))
        }
        return try parse(bytes, origin: path)
    }

    static func parse(_ bytes: [UInt8], origin: String) throws(ModelLoadError) -> [String: JSONValue] {
        guard let object = JSONValue.parse(bytes)?.object else { throw .architecture("not a JSON object", origin: origin) }
        return object
    }

    /// A whole number, or nil when absent; present but fractional, not a number or outside `range` is an error
    /// naming the key.
    func int(_ v: JSONValue?, _ key: String, in range: ClosedRange<Int>) throws(ModelLoadError) -> Int? {
        guard let v else { return nil }
        guard let number = v.number, let i = Checked.int(number, in: range) else {
            throw .architecture("\(key) is \(v); expected a whole number from \(range.lowerBound) to \(range.upperBound)", origin: origin)
        }
        return i
    }

    /// A per-channel mean or standard deviation: three finite numbers, or one for all three (as transformers'
    /// processors and torchvision's Normalize take it); nil when absent or null. Anything else is refused by `key`,
    /// and a standard deviation (`divisor`) must be at least 1e-6 in size: its quotients would overflow.
    func channels(_ v: JSONValue?, _ key: String, divisor: Bool = false) throws(ModelLoadError) -> [Float]? {
        guard let v, v != .null else { return nil }
        let values: [Float]? = if let x = v.number { [Float(x), Float(x), Float(x)] }
            else if let a = v.array, a.count == 3 { a.compactMap { $0.number.map(Float.init) } }
            else { nil }
        guard let values, values.count == 3, values.allSatisfy(\.isFinite), !divisor || values.allSatisfy({ abs($0) >= 1e-6 }) else {
            throw .architecture("\(key) is \(v); expected three finite numbers (one per channel) or one for all three\(divisor ? ", none smaller than 1e-6 in size" : "")", origin: origin)
        }
        return values
    }

    /// A `hidden_act`: quick_gelu, gelu (GELU with the exact error function) or gelu_pytorch_tanh (its tanh
    /// approximation, SigLIP's; `gelu_new` is the same function).
    func activation(_ v: JSONValue?, _ key: String) throws(ModelLoadError) -> Activation? {
        guard let v else { return nil }
        if v.string == "gelu_new" { return .geluTanh }
        guard let name = v.string, let a = Activation(rawValue: name) else {
            throw .architecture("\(key) is \(v); supported: quick_gelu, gelu, gelu_pytorch_tanh, gelu_new", origin: origin)
        }
        return a
    }

    /// A LayerNorm ε: a finite positive number.
    func epsilon(_ v: JSONValue?, _ key: String) throws(ModelLoadError) -> Float? {
        guard let v else { return nil }
        guard let e = v.number.map(Float.init), e > 0, e.isFinite else {
            throw .architecture("\(key) is \(v); expected a finite positive number", origin: origin)
        }
        return e
    }

    /// Attention heads: they must divide the tower's width.
    func heads(_ v: JSONValue?, _ key: String, width: Int) throws(ModelLoadError) -> Int? {
        guard let h = try int(v, key, in: 1...max(width, 1)) else { return nil }
        guard width % h == 0 else {
            throw .architecture("\(key) is \(h), which does not divide the width \(width)", origin: origin)
        }
        return h
    }

    /// An input resolution, which must be the one the weights were trained for (the positional embedding fixes
    /// it); checked before anything is allocated for it. A ViT takes any side whose whole patches make its grid, as
    /// the strided convolution does (SigLIP SO400M/14 at 384: 27 patches of 14, 6 pixels unread).
    func resolution(_ v: JSONValue?, _ key: String, model c: CLIPConfiguration) throws(ModelLoadError) -> Int? {
        guard let r = try int(v, key, in: 1...CLIPConfiguration.maximumImageResolution) else { return nil }
        // timm's patch embedding (EVA, PE-Core) is built for one input size; SigLIP's open_clip towers take the
        // strided convolution's floor (SO400M/14 at 384: 27 patches, 6 pixels unread).
        if case .transformer(let t) = c.vision, t.timmModel == nil ? r / t.patchSize == t.grid : r == t.patchSize * t.grid { return r }
        if case .eva(let t) = c.vision, r == t.patchSize * t.grid { return r }
        // ViTamin's positions fix its side; without them (XL) it is convolutional up to its last step.
        if case .viTamin(let t) = c.vision, t.positionGrid != nil {
            guard t.sides.contains(r) else {
                throw .architecture("\(key) is \(r), but the ViTamin tower's positions are for sides of \(t.sides.lowerBound)...\(t.sides.upperBound) pixels", origin: origin)
            }
            return r
        }
        // A convolutional tower (ConvNeXt, FastViT) takes any side that leaves its last stage a pixel.
        if let (sides, kind) = c.vision.convolutionalSides {
            guard sides.contains(r) else {
                throw .architecture("\(key) is \(r), outside the \(sides.lowerBound)...\(sides.upperBound) pixels the \(kind) tower takes here", origin: origin)
            }
            return r
        }
        guard r == c.imageResolution else {
            throw .architecture("\(key) is \(r), but the checkpoint's image tower takes \(c.imageResolution)×\(c.imageResolution) inputs", origin: origin)
        }
        return r
    }
}
