import CLIPTensor
import CLIPWeights
import Foundation
import Testing

/// A scratch file path unique to this test process.
func scratchPath(_ name: String) -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("swift-clip-tests-\(getpid())")
    try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir.appendingPathComponent(name).path
}

/// A safetensors file from a header text and a data section.
func safetensorsBytes(header: String, data: [UInt8], declaredLength: UInt64? = nil) -> [UInt8] {
    let h = Array(header.utf8)
    var out: [UInt8] = []
    withUnsafeBytes(of: (declaredLength ?? UInt64(h.count)).littleEndian) { out.append(contentsOf: $0) }
    return out + h + data
}

func open(_ bytes: [UInt8], _ name: String) throws(WeightFileError) -> SafeTensorsFile {
    let path = scratchPath(name)
    _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
    return try SafeTensorsFile(path: path)
}

/// The problem a load of `bytes` reports, or nil if it loads.
func problem(_ bytes: [UInt8], _ name: String) -> WeightFileError.Problem? {
    do {
        _ = try open(bytes, name)
        return nil
    } catch {
        #expect(error.description.contains(name), "message names the file: \(error)")
        return error.problem
    }
}

let twoTensors = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F16","shape":[2],"data_offsets":[8,12]}}"#

@Test func readsF32F16BF16AndMetadata() throws {
    let header = #"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"h":{"dtype":"F16","shape":[3],"data_offsets":[8,14]},"b":{"dtype":"BF16","shape":[1],"data_offsets":[14,16]},"i":{"dtype":"I64","shape":[1,2],"data_offsets":[16,32]}}"#
    var data: [UInt8] = []
    for v: Float in [1.5, -2] { withUnsafeBytes(of: v.bitPattern.littleEndian) { data += $0 } }
    // fp16: 1.0, smallest subnormal, -inf
    for h: UInt16 in [0x3C00, 0x0001, 0xFC00] { withUnsafeBytes(of: h.littleEndian) { data += $0 } }
    withUnsafeBytes(of: UInt16(0x4049).littleEndian) { data += $0 }  // bf16 3.140625
    for v: Int64 in [49406, -3] { withUnsafeBytes(of: v.littleEndian) { data += $0 } }
    let f = try open(safetensorsBytes(header: header, data: data), "good.safetensors")
    #expect(f.metadata == ["format": "pt"])
    #expect(f.tensorInfos.map(\.name) == ["a", "h", "b", "i"])
    #expect(try f.floatTensor("a").scalars == [1.5, -2])
    #expect(try f.floatTensor("h").scalars == [1, 0x1p-24, -.infinity])
    #expect(try f.floatTensor("b").scalars == [3.140625])
    let ints = try f.integerTensor("i")
    #expect(ints.shape == [1, 2] && ints.values == [49406, -3])
    #expect(throws: WeightFileError.self) { try f.floatTensor("i") }
    #expect(throws: WeightFileError.self) { try f.floatTensor("missing") }
}

@Test func writerRoundTrips() throws {
    let path = scratchPath("roundtrip.safetensors")
    let t = try Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, -6])
    try SafeTensorsWriter.write([("x\"y", t), ("z", try Tensor(shape: [], scalars: [7]))], metadata: ["k": "v"], to: path)
    let f = try SafeTensorsFile(path: path)
    #expect(try f.floatTensor("x\"y") == t)
    #expect(try f.floatTensor("z").scalars == [7])
    #expect(f.metadata == ["k": "v"])
}

struct Malformed: CustomTestStringConvertible, Sendable {
    let name: String
    let bytes: [UInt8]
    let check: @Sendable (WeightFileError.Problem) -> Bool
    var testDescription: String { name }
}

let malformed: [Malformed] = {
    let good = safetensorsBytes(header: twoTensors, data: [UInt8](repeating: 0, count: 12))
    func entry(_ s: String) -> [UInt8] { safetensorsBytes(header: s, data: [UInt8](repeating: 0, count: 16)) }
    return [
        Malformed(name: "empty file", bytes: []) { if case .fileTooSmall(0) = $0 { true } else { false } },
        Malformed(name: "five bytes", bytes: [1, 0, 0, 0, 0]) { if case .fileTooSmall(5) = $0 { true } else { false } },
        Malformed(name: "header length past the end", bytes: safetensorsBytes(header: "{}", data: [], declaredLength: 4096)) {
            if case .headerPastEnd(4096, 10) = $0 { true } else { false }
        },
        Malformed(name: "header length huge", bytes: safetensorsBytes(header: "{}", data: [], declaredLength: 1 << 40)) {
            if case .headerTooLarge = $0 { true } else { false }
        },
        Malformed(name: "truncated data", bytes: Array(good.dropLast(3))) {
            if case .dataSizeMismatch(12, 9) = $0 { true } else { false }
        },
        Malformed(name: "truncated header", bytes: Array(good.prefix(30))) {
            if case .headerPastEnd = $0 { true } else { false }
        },
        Malformed(name: "trailing bytes", bytes: good + [0, 0]) {
            if case .dataSizeMismatch(12, 14) = $0 { true } else { false }
        },
        Malformed(name: "bad JSON", bytes: safetensorsBytes(header: #"{"a":{"dtype":"F32",}}"#, data: [])) {
            if case .invalidJSON = $0 { true } else { false }
        },
        Malformed(name: "not UTF-8", bytes: safetensorsBytes(header: "{\"\u{FF}\":1}", data: []).enumerated().map { $0.offset == 10 ? 0xFF : $0.element }) {
            if case .headerNotUTF8 = $0 { true } else { false }
        },
        Malformed(name: "header not an object", bytes: safetensorsBytes(header: "[1,2]", data: [])) {
            if case .headerNotObject = $0 { true } else { false }
        },
        Malformed(name: "duplicate key", bytes: entry(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#)) {
            if case .invalidJSON(_, let m) = $0 { m.contains("duplicate") } else { false }
        },
        Malformed(name: "overlapping ranges", bytes: entry(#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#)) {
            if case .offsetsNotContiguous = $0 { true } else { false }
        },
        Malformed(name: "gap between ranges", bytes: entry(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#)) {
            if case .offsetsNotContiguous("b", 4, 8, 16) = $0 { true } else { false }
        },
        Malformed(name: "reversed range", bytes: entry(#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[16,0]}}"#)) {
            if case .offsetsNotContiguous("a", _, _, _) = $0 { true } else { false }
        },
        Malformed(name: "wrong dtype size", bytes: entry(#"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]},"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}"#)) {
            if case .byteSizeMismatch("a", 16, 12) = $0 { true } else { false }
        },
        Malformed(name: "huge declared shape", bytes: entry(#"{"a":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,16]}}"#)) {
            if case .shapeOverflow("a", _) = $0 { true } else { false }
        },
        Malformed(name: "offset beyond UInt64", bytes: entry(#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,18446744073709551616]}}"#)) {
            if case .invalidEntry("a", _) = $0 { true } else { false }
        },
        Malformed(name: "negative dimension", bytes: entry(#"{"a":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}}"#)) {
            if case .invalidEntry("a", _) = $0 { true } else { false }
        },
        Malformed(name: "unknown dtype", bytes: entry(#"{"a":{"dtype":"F13","shape":[4],"data_offsets":[0,16]}}"#)) {
            if case .unknownDType("a", "F13") = $0 { true } else { false }
        },
        Malformed(name: "missing data_offsets", bytes: entry(#"{"a":{"dtype":"F32","shape":[4]}}"#)) {
            if case .invalidEntry("a", let m) = $0 { m.contains("data_offsets") } else { false }
        },
        Malformed(name: "deeply nested JSON", bytes: safetensorsBytes(header: "{\"a\":" + String(repeating: "[", count: 100_000), data: [])) {
            if case .invalidJSON(_, let m) = $0 { m.contains("nesting") } else { false }
        },
    ]
}()

@Test("Malformed safetensors files give their specific error", arguments: malformed)
func malformedFileIsRejected(_ m: Malformed) {
    let p = problem(m.bytes, m.name.replacingOccurrences(of: " ", with: "_") + ".safetensors")
    #expect(p.map(m.check) == true, "got \(String(describing: p))")
}

@Test func missingFileNamesThePath() {
    do {
        _ = try SafeTensorsFile(path: "/nonexistent/model.safetensors")
        Issue.record("expected an error")
    } catch {
        #expect(error.description.hasPrefix("/nonexistent/model.safetensors: cannot open"))
    }
}

@Test func directoryIsRejected() {
    #expect(throws: WeightFileError.self) { try SafeTensorsFile(path: "/tmp") }
}
