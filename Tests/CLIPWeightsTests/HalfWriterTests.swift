import CLIPTensor
import Foundation
import Testing
@testable import CLIPWeights

#if !(os(macOS) && arch(x86_64))
@Test("fp16 conversion rounds to nearest even like the hardware, subnormals, overflow and NaN included")
func halfBitsMatchFloat16() {
    var values: [Float] = [0, -0, 1, -1, 65504, 65519, 65520, 1e-8, 5.96e-8, 2.98e-8, 6.1e-5, 6.097e-5, .infinity, -.infinity,
                           1.0009766, 1.00048828125, 1.0014648, 3.14159]
    var rng = SplitMix64(state: 1)
    for _ in 0..<20_000 { values.append(Float(bitPattern: UInt32(truncatingIfNeeded: rng.next())) ) }
    for v in values where !v.isNaN {
        #expect(SafeTensorsWriter.halfBits(v) == Float16(v).bitPattern, "\(v)")
    }
    #expect(SafeTensorsWriter.halfBits(.nan) & 0x7C00 == 0x7C00 && SafeTensorsWriter.halfBits(.nan) & 0x3FF != 0)
}
#endif

@Test("an fp16 safetensors file written here reads back as the rounded values")
func halfFileRoundTrips() throws {
    let t = try Tensor(shape: [2, 3], scalars: [0.1, -2.5, 1000.25, 1e-6, 0, 3])
    let bytes = SafeTensorsWriter.encode([("w", t)], half: true)
    let path = "/tmp/clip-half-\(getpid()).safetensors"
    try SafeTensorsWriter.writeFile(bytes, to: path)
    defer { unlink(path) }
    let file = try SafeTensorsFile(path: path)
    #expect(file.tensorInfos.first?.dtype == .float16)
    let back = try file.floatTensor("w")
    for (a, b) in zip(back.scalars, t.scalars) { #expect(abs(a - b) <= abs(b) * 1e-3 + 1e-7) }
}
