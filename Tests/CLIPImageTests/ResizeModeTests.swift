import CLIPImage
import CLIPTensor
import CLIPWeights
import Foundation
import Testing

/// open_clip's outputs for the other resize modes (Scripts/fixtures/make_resize_fixtures.py).
let resizeReference = Result { try SafeTensorsFile(path: "\(imageFixtures)/resize_modes.safetensors") }

@Test("open_clip's squash and longest resize modes, within one 8-bit step at 64 and the odd 37",
      arguments: manifest, [ImagePreprocessor.ResizeMode.squash, .longest])
func resizeModesMatchOpenCLIP(_ e: ManifestEntry, mode: ImagePreprocessor.ResizeMode) throws {
    let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(imageFixtures)/\(e.file)")))
    let image = try decodeImage(data, name: e.file)
    let table = try resizeReference.get()
    for r in [64, 37] {
        let key = "\(e.name)/\(mode.rawValue)/\(r)"
        guard table.tensorInfos.contains(where: { $0.name == key }) else { continue }
        let ours = try ImagePreprocessor(resolution: r, resizeMode: mode).croppedRGB(image)
        let (shape, values) = try table.integerTensor(key)
        #expect(shape == [r, r, 3])
        expectWithinOneStep(ours, values.map { UInt8($0) }, key)
    }
}

@Test("squash and longest: normalised tensors equal open_clip's transform", arguments: [ImagePreprocessor.ResizeMode.squash, .longest])
func resizeModeTensorsMatchOpenCLIP(_ mode: ImagePreprocessor.ResizeMode) throws {
    let entry = try #require(manifest.first { $0.name == "jpeg_420_photo" })
    let x = try ImagePreprocessor(resizeMode: mode).tensor(files: ["\(imageFixtures)/\(entry.file)"])
    let expected = try resizeReference.get().floatTensor("jpeg_420_photo/\(mode.rawValue)/224/tensor")
    #expect(x.shape == [1, 3, 224, 224] && expected.scalars.count == x.scalars.count)
    var worst: Float = 0
    for (a, b) in zip(x.scalars, expected.scalars) { worst = max(worst, abs(a - b)) }
    #expect(worst <= 1e-6, "max difference \(worst)")
}

/// CLIPA's bilinear filter with the shortest and squash modes: Pillow's BILINEAR as open_clip applies it.
@Test("bilinear resizing (CLIPA's), within one 8-bit step at 64 and the odd 37",
      arguments: manifest, [ImagePreprocessor.ResizeMode.shortest, .squash])
func bilinearMatchesOpenCLIP(_ e: ManifestEntry, mode: ImagePreprocessor.ResizeMode) throws {
    let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(imageFixtures)/\(e.file)")))
    let image = try decodeImage(data, name: e.file)
    let table = try resizeReference.get()
    for r in [64, 37] {
        let key = "\(e.name)/\(mode.rawValue)-bilinear/\(r)"
        guard table.tensorInfos.contains(where: { $0.name == key }) else { continue }
        let ours = try ImagePreprocessor(resolution: r, resizeMode: mode, interpolation: .bilinear).croppedRGB(image)
        let (shape, values) = try table.integerTensor(key)
        #expect(shape == [r, r, 3])
        expectWithinOneStep(ours, values.map { UInt8($0) }, key)
    }
}

@Test("bilinear: normalised tensors equal open_clip's transform, and differ from bicubic's",
      arguments: [ImagePreprocessor.ResizeMode.shortest, .squash])
func bilinearTensorsMatchOpenCLIP(_ mode: ImagePreprocessor.ResizeMode) throws {
    let entry = try #require(manifest.first { $0.name == "jpeg_420_photo" })
    let file = "\(imageFixtures)/\(entry.file)"
    let x = try ImagePreprocessor(resizeMode: mode, interpolation: .bilinear).tensor(files: [file])
    let expected = try resizeReference.get().floatTensor("jpeg_420_photo/\(mode.rawValue)-bilinear/224/tensor")
    #expect(x.shape == [1, 3, 224, 224] && expected.scalars.count == x.scalars.count)
    var worst: Float = 0
    for (a, b) in zip(x.scalars, expected.scalars) { worst = max(worst, abs(a - b)) }
    #expect(worst <= 1e-6, "max difference \(worst)")
    let bicubic = try ImagePreprocessor(resizeMode: mode).tensor(files: [file])
    #expect(zip(bicubic.scalars, x.scalars).contains { $0 != $1 })
}
