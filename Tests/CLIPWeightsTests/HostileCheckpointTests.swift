import CLIPWeights
import Foundation
import Testing

/// A zip archive of stored (or raw-deflate) entries, written the way PyTorch lays them out.
func zipArchive(_ entries: [(name: String, data: [UInt8], deflated: (declaredSize: Int, payload: [UInt8])?)]) -> [UInt8] {
    func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF)] }
    func le32(_ v: Int) -> [UInt8] { le16(v & 0xFFFF) + le16(v >> 16 & 0xFFFF) }
    var out: [UInt8] = []
    var central: [UInt8] = []
    for e in entries {
        let name = Array(e.name.utf8)
        let payload = e.deflated?.payload ?? e.data
        let usize = e.deflated?.declaredSize ?? e.data.count
        let method = e.deflated == nil ? 0 : 8
        let crc = Int(zipCRC32(e.data))
        let offset = out.count
        out += le32(0x0403_4B50) + le16(20) + le16(0) + le16(method) + le16(0) + le16(0) + le32(crc)
            + le32(payload.count) + le32(usize) + le16(name.count) + le16(0) + name + payload
        central += le32(0x0201_4B50) + le16(20) + le16(20) + le16(0) + le16(method) + le16(0) + le16(0) + le32(crc)
            + le32(payload.count) + le32(usize) + le16(name.count) + le16(0) + le16(0) + le16(0) + le16(0) + le32(0)
            + le32(offset) + name
    }
    let cdOffset = out.count
    out += central
    out += le32(0x0605_4B50) + le16(0) + le16(0) + le16(entries.count) + le16(entries.count) + le32(central.count)
        + le32(cdOffset) + le16(0)
    return out
}


/// Pickle building blocks (protocol 2).
enum P {
    static func str(_ s: String) -> [UInt8] { let b = Array(s.utf8); return [0x58] + le32(b.count) + b }
    static func global(_ m: String, _ n: String) -> [UInt8] { [0x63] + Array("\(m)\n\(n)\n".utf8) }
    static func int1(_ v: Int) -> [UInt8] { [0x4B, UInt8(v)] }
    static func le32(_ v: Int) -> [UInt8] { (0..<4).map { UInt8(v >> (8 * $0) & 0xFF) } }
    static let proto: [UInt8] = [0x80, 0x02], mark: [UInt8] = [0x28], tuple: [UInt8] = [0x74]
    static let emptyTuple: [UInt8] = [0x29], emptyDict: [UInt8] = [0x7D], stop: [UInt8] = [0x2E]
    static let reduce: [UInt8] = [0x52], setitem: [UInt8] = [0x73], binpersid: [UInt8] = [0x51], newfalse: [UInt8] = [0x89]

    /// {"w": tensor of `shape` over storage `key` with `count` float elements}.
    static func stateDict(key: String = "0", count: Int, shape: [Int], offset: Int = 0) -> [UInt8] {
        let stride = shape.indices.map { i in shape[(i + 1)...].reduce(1, *) }
        return proto + emptyDict + str("w") + global("torch._utils", "_rebuild_tensor_v2") + mark
            + mark + str("storage") + global("torch", "FloatStorage") + str(key) + str("cpu") + int1(count) + tuple + binpersid
            + int1(offset) + mark + shape.flatMap(int1) + tuple + mark + stride.flatMap(int1) + tuple + newfalse
            + global("collections", "OrderedDict") + emptyTuple + reduce + tuple + reduce + setitem + stop
    }
}

func openCheckpoint(_ zip: [UInt8], _ name: String) -> WeightFileError? {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("swift-clip-hostile-\(getpid())")
    try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let path = dir.appendingPathComponent(name).path
    _ = FileManager.default.createFile(atPath: path, contents: Data(zip))
    do {
        let c = try TorchCheckpoint(path: path)
        for t in c.tensorInfos { _ = try c.floatTensor(t.name) }
        return nil
    } catch {
        return error
    }
}

func checkpoint(_ pickle: [UInt8], storage: [UInt8]? = [UInt8](repeating: 0, count: 16), extra: [(String, [UInt8])] = []) -> [UInt8] {
    var entries: [(name: String, data: [UInt8], deflated: (declaredSize: Int, payload: [UInt8])?)] = [("archive/data.pkl", pickle, nil)]
    if let storage { entries.append(("archive/data/0", storage, nil)) }
    for (n, d) in extra { entries.append((n, d, nil)) }
    return zipArchive(entries)
}

@Test func wellFormedHandMadeCheckpointLoads() throws {
    var storage: [UInt8] = []
    for v: Float in [1, 2, 3, 4] { withUnsafeBytes(of: v.bitPattern.littleEndian) { storage += $0 } }
    #expect(openCheckpoint(checkpoint(P.stateDict(count: 4, shape: [2, 2]), storage: storage), "good.pt") == nil)
}

struct Hostile: CustomTestStringConvertible, Sendable {
    let name: String
    let zip: [UInt8]
    let expect: String
    var testDescription: String { name }
}

let hostileCheckpoints: [Hostile] = {
    let p = P.self
    let osSystem = p.proto + p.global("os", "system") + p.str("echo pwned") + [0x85] + p.reduce + p.stop
    let evalCall = p.proto + p.global("builtins", "eval") + p.str("1+1") + [0x85] + p.reduce + p.stop
    let posix = p.proto + p.global("posix", "system") + p.str("id") + [0x85] + p.reduce + p.stop
    let badReduce = p.proto + p.global("__torch__.clip", "CLIP") + p.emptyTuple + p.reduce + p.stop
    let unknownOpcode = p.proto + [0xFF] + p.stop
    let memo = p.proto + [0x68, 5] + p.stop
    let underflow = p.proto + [0x86] + p.stop
    let good = p.stateDict(count: 4, shape: [2, 2])
    // {"w": <deep>} with `depth` levels of one-element tuples (TUPLE1) around None: freeing it recursively would
    // overflow the stack.
    let deep = p.proto + p.emptyDict + p.str("w") + [0x4E] + [UInt8](repeating: 0x85, count: 40_000) + p.setitem + p.stop
    // A list appended to itself, through the memo: a reference cycle.
    let cycle = p.proto + p.emptyDict + p.str("w") + [0x5D, 0x71, 0x00, 0x68, 0x00, 0x61] + p.setitem + p.stop
    // Modules m0 … m40, each holding the next one under two names: 2⁴⁰ paths through 41 objects.
    var dag = p.proto + p.global("__torch__.M", "M40") + p.emptyTuple + [0x81] + p.emptyDict + [0x62, 0x72] + P.le32(40)
    for i in stride(from: 39, through: 0, by: -1) {
        dag += [0x30] + p.global("__torch__.M", "M\(i)") + p.emptyTuple + [0x81] + p.mark + p.str("a") + [0x6A] + P.le32(i + 1)
            + p.str("b") + [0x6A] + P.le32(i + 1) + [0x64, 0x62, 0x72] + P.le32(i)
    }
    dag += p.stop
    // A stride-0 view of 2³¹ × 2³¹ elements over one element.
    let stride0 = p.proto + p.emptyDict + p.str("w") + p.global("torch._utils", "_rebuild_tensor_v2") + p.mark
        + p.mark + p.str("storage") + p.global("torch", "FloatStorage") + p.str("0") + p.str("cpu") + p.int1(4) + p.tuple
        + p.binpersid + p.int1(0) + p.mark + [0x4A] + P.le32(1 << 30) + [0x4A] + P.le32(1 << 30) + p.tuple + p.mark
        + p.int1(0) + p.int1(0) + p.tuple + p.newfalse + p.global("collections", "OrderedDict") + p.emptyTuple + p.reduce
        + p.tuple + p.reduce + p.setitem + p.stop
    var badCRC = checkpoint(good)
    if let at = (0..<(badCRC.count - 4)).last(where: { badCRC[$0..<($0 + 4)] == [0x50, 0x4B, 0x01, 0x02] }) {
        badCRC[at + 16] ^= 0xFF  // the central directory's CRC of the last entry (the storage)
    }
    return [
        Hostile(name: "pickle calling os.system", zip: checkpoint(osSystem), expect: "global 'os.system' is not allowed"),
        Hostile(name: "pickle calling builtins.eval", zip: checkpoint(evalCall), expect: "global 'builtins.eval' is not allowed"),
        Hostile(name: "pickle calling posix.system", zip: checkpoint(posix), expect: "global 'posix.system' is not allowed"),
        Hostile(name: "REDUCE on a non-allowed callable", zip: checkpoint(badReduce), expect: "calling '__torch__.clip.CLIP' is not allowed"),
        Hostile(name: "unknown opcode", zip: checkpoint(unknownOpcode), expect: "unsupported pickle opcode 0xff"),
        Hostile(name: "memo index out of range", zip: checkpoint(memo), expect: "memo index 5 was never stored"),
        Hostile(name: "stack underflow", zip: checkpoint(underflow), expect: "stack underflow"),
        Hostile(name: "truncated pickle", zip: checkpoint(Array(good.prefix(good.count / 2))), expect: "truncated pickle"),
        Hostile(name: "storage key missing from the zip", zip: checkpoint(good, storage: nil), expect: "storage 'archive/data/0' is missing"),
        Hostile(name: "declared size larger than the storage", zip: checkpoint(p.stateDict(count: 4, shape: [3, 2])), expect: "reaches element 5 of a 4-element storage"),
        Hostile(name: "storage smaller than declared", zip: checkpoint(good, storage: [0, 0, 0, 0]), expect: "declares 4 elements but holds 4 bytes"),
        Hostile(name: "entry named ../x", zip: checkpoint(good, extra: [("../x", [1])]), expect: "leaves the archive"),
        Hostile(name: "absolute entry name", zip: checkpoint(good, extra: [("/etc/passwd", [1])]), expect: "leaves the archive"),
        Hostile(name: "zip bomb entry", zip: zipArchive([("archive/data.pkl", good, nil),
                                                         ("archive/data/0", [UInt8](repeating: 0, count: 16),
                                                          (declaredSize: 3_000_000_000, payload: [0x03, 0x00]))]),
                expect: "compression ratio"),
        Hostile(name: "deflate past its declared size", zip: zipArchive([
            ("archive/data.pkl", good, nil),
            ("archive/data/0", [UInt8](repeating: 0, count: 16),
             (declaredSize: 16, payload: [0x01, 0x20, 0x00, 0xDF, 0xFF] + [UInt8](repeating: 0, count: 32)))]),
                expect: "inflates past its declared 16 bytes"),
        Hostile(name: "not a zip", zip: Array("plain text".utf8), expect: "too short for a zip archive"),
        Hostile(name: "zip without data.pkl", zip: zipArchive([("archive/other", [1, 2], nil)]), expect: "no <archive>/data.pkl"),
        Hostile(name: "40,000 nested tuples", zip: checkpoint(deep), expect: "nested deeper than 1000"),
        Hostile(name: "a list that contains itself", zip: checkpoint(cycle), expect: "refusing this pickle"),
        Hostile(name: "module DAG with 2^40 paths", zip: checkpoint(dag, storage: nil), expect: "expand to more than"),
        Hostile(name: "stride-0 view of 2^60 elements", zip: checkpoint(stride0),
                expect: "would materialise more than"),
        Hostile(name: "stored entry with a wrong CRC", zip: badCRC, expect: "CRC mismatch"),
        Hostile(name: "central directory offset near Int.max", zip: {
            var z = checkpoint(good)
            // EOCD: central directory offset field (the last 6 bytes are offset and comment length).
            let o = z.count - 6
            for i in 0..<4 { z[o + i] = 0xFF }
            return z
        }(), expect: "central directory"),
    ]
}()

@Test("Hostile checkpoints are refused with their specific error", arguments: hostileCheckpoints)
func hostileCheckpointIsRefused(_ h: Hostile) {
    let file = h.name.replacingOccurrences(of: " ", with: "_").replacingOccurrences(of: "/", with: "_") + ".pt"
    guard let e = openCheckpoint(h.zip, file) else { Issue.record("\(h.name) was accepted"); return }
    #expect(e.description.contains(h.expect), "\(h.name): \(e)")
    #expect(e.description.contains(file), "the message names the file: \(e)")
}
