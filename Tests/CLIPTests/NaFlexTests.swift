import CLIP
import CLIPImage
import CLIPLoading
import CLIPTensor
import CLIPWeights
import Foundation
import Testing

// SigLIP 2's NaFlex as transformers' Siglip2Model and Siglip2ImageProcessor compute it, on a scaled-down random
// model (Scripts/fixtures/make_naflex_fixtures.py): images of twelve shapes and modes from 1×1 to 200×9 become grids
// from 1×23 to 24×1 patches within a budget of 24, around a 4×4 position table.

let naflexDirectory = "\(fixtureDirectory)/naflex"
let naflexFolder = "\(naflexDirectory)/hf_siglip2_naflex"
let naflexImages: [String] = {
    let list = (try? String(contentsOfFile: "\(naflexDirectory)/images.txt", encoding: .utf8)) ?? ""
    return list.split(separator: "\n").map(String.init)
}()

/// The reference file, and its `pixels` as NaFlex's layout: each image's grid in front of its patch rows.
private struct NaFlexReference {
    let file: SafeTensorsFile
    let grids: [(rows: Int, cols: Int)]
    let patchRows: Tensor  // [images, patches, 3·p·p]

    init(_ base: String = naflexFolder) throws {
        file = try SafeTensorsFile(path: base + ".reference.safetensors")
        let (_, shapes) = try file.integerTensor("spatial_shapes")
        grids = stride(from: 0, to: shapes.count, by: 2).map { (shapes[$0], shapes[$0 + 1]) }
        patchRows = try file.floatTensor("pixels")
    }

    /// `rows` ([images, patches, values]) with each image's grid in front → [images, 2 + patches·values].
    func layout(_ rows: Tensor) -> Tensor {
        let (n, per) = (rows.shape[0], rows.shape[1] * rows.shape[2])
        var scalars: [Float] = []
        for i in 0..<n {
            scalars += [Float(grids[i].rows), Float(grids[i].cols)]
            scalars += rows.scalars[(i * per)..<((i + 1) * per)]
        }
        return Tensor(uncheckedShape: [n, 2 + per], scalars: scalars)
    }
}

@Test("A Siglip2Model folder is read as NaFlex: a patch Linear, positions resized per image, a patch budget")
func naflexConfiguration() throws {
    let loaded = try CLIPModel.load(path: naflexFolder)
    let c = loaded.model.configuration
    guard case .transformer(let v) = c.vision else { Issue.record("not a ViT: \(c)"); return }
    #expect(v.variableGrid && v.patchSize == 4 && v.grid == 4 && v.heads == 3 && v.pooling == .attention(heads: 3))
    #expect(v.patchBias && !v.hasClassToken && !v.preNorm && !v.projection && v.activation == .geluTanh)
    #expect(c.objective == .sigmoid && c.text.contextLength == 64 && c.text.vocabSize == 2000 && c.embedDim == 48)
    var expected = Preprocessing(resolution: 16, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], resizeMode: .squash,
                                 interpolation: .bilinear)
    expected.patchBudget = .init(patchSize: 4, maxPatches: 24)
    #expect(loaded.preprocessing == expected)
    #expect(loaded.preprocessing.valuesPerImage == 2 + 24 * 48)
    #expect("\(c)".contains("NaFlex") && "\(loaded.preprocessing)".contains("at most 24 patches"))
}

@Test("Target sizes equal transformers' get_image_size_for_max_num_patches, extreme shapes and budgets included")
func naflexTargetSizes() throws {
    let f = try SafeTensorsFile(path: naflexFolder + ".reference.safetensors")
    let (shape, rows) = try f.integerTensor("sizes")
    #expect(shape[1] == 6 && shape[0] > 600)
    var wrong: [String] = []
    for k in 0..<shape[0] {
        let r = Array(rows[(k * 6)..<(k * 6 + 6)])
        let size = Preprocessing.PatchBudget(patchSize: r[2], maxPatches: r[3]).targetSize(width: r[1], height: r[0])
        if size.height != r[4] || size.width != r[5] {
            wrong.append("\(r[0])×\(r[1]) patch \(r[2]) budget \(r[3]): \(size.height)×\(size.width), expected \(r[4])×\(r[5])")
        }
    }
    #expect(wrong.isEmpty, "\(wrong.count) sizes differ: \(wrong.prefix(5))")
}

@Test("Preprocessed pixels (RGBA, palette and gray files converted to RGB first, as transformers reads them) equal Siglip2ImageProcessorPil's and are within one 8-bit step of the torchvision backend's",
      arguments: naflexImages.indices)
func naflexPixels(_ index: Int) throws {
    let ref = try NaFlexReference()
    let preprocessor = ImagePreprocessor(try CLIPModel.load(path: naflexFolder).preprocessing)
    let ours = try preprocessor.pixels(file: "\(naflexDirectory)/images/\(naflexImages[index]).png")
    let per = ref.patchRows.shape[1] * ref.patchRows.shape[2]
    #expect(ours.count == 2 + per)
    #expect(ours[0] == Float(ref.grids[index].rows) && ours[1] == Float(ref.grids[index].cols),
            "grid \(ours[0])×\(ours[1]), expected \(ref.grids[index])")
    let pil = Array(ref.patchRows.scalars[(index * per)..<((index + 1) * per)])
    let worstPIL = zip(ours.dropFirst(2), pil).map { abs($0 - $1) }.max() ?? .infinity
    #expect(worstPIL == 0, "\(naflexImages[index]): largest difference from Pillow's \(worstPIL)")
    let tv = try ref.file.floatTensor("pixels_torchvision")
    let worstTV = zip(ours.dropFirst(2), tv.scalars[(index * per)..<((index + 1) * per)]).map { abs($0 - $1) }.max() ?? .infinity
    // One 8-bit step is 2/255 after normalisation with std 0.5.
    #expect(worstTV <= 2 / 255 + 1e-6, "\(naflexImages[index]): largest difference from torchvision's \(worstTV)")
}

/// The committed scaled-down folder, and with `CLIP_NAFLEX_FULL=DIR` the full-size `hf_siglip2_naflex_base` that
/// `Scripts/fixtures/make_naflex_fixtures.py --full DIR` writes (google/siglip2-base-patch16-naflex's configuration).
let naflexFolders: [String] = {
    var folders = [naflexFolder]
    if let full = ProcessInfo.processInfo.environment["CLIP_NAFLEX_FULL"], !full.isEmpty { folders.append("\(full)/hf_siglip2_naflex_base") }
    return folders
}()

@Test("NaFlex image and text embeddings and logits equal transformers' (float64) within 1e-5", arguments: naflexFolders)
func naflexParity(_ base: String) throws {
    let loaded = try CLIPModel.load(path: base)
    let model = loaded.model
    let ref = try NaFlexReference(base)
    // The preprocessing reproduces the reference's pixels on the committed images, whatever the model's budget.
    let preprocessor = ImagePreprocessor(loaded.preprocessing)
    let pixels = try preprocessor.tensor(files: naflexImages.map { "\(naflexDirectory)/images/\($0).png" })
    #expect(pixels.shape == ref.layout(ref.patchRows).shape)
    let worst = zip(pixels.scalars, ref.layout(ref.patchRows).scalars).map { abs($0 - $1) }.max() ?? .infinity
    #expect(worst <= 1e-6, "largest pixel difference \(worst)")
    let image = try model.encodeImage(ref.layout(ref.patchRows))
    let (shape, ids) = try ref.file.integerTensor("tokens")
    let tokens = (0..<shape[0]).map { Array(ids[($0 * shape[1])..<(($0 + 1) * shape[1])]) }
    let text = try model.encodeText(tokens)
    let (perImage, perText) = try model.logits(imageEmbeddings: image, textEmbeddings: text)
    for (what, ours, theirs) in [("image", image, try ref.file.floatTensor("image_features")),
                                 ("text", text, try ref.file.floatTensor("text_features")),
                                 ("logits_per_image", perImage, try ref.file.floatTensor("logits_per_image")),
                                 ("logits_per_text", perText, try ref.file.floatTensor("logits_per_text"))] {
        #expect(ours.shape == theirs.shape, "\(what) shape \(ours.shape) vs \(theirs.shape)")
        let e = relativeError(ours.scalars, theirs.scalars)
        #expect(e <= parityTolerance, "\(what): relative error \(e)")
    }
    // Per image, each row on its own: batch composition and grouping by grid change nothing.
    let all = ref.layout(ref.patchRows)
    let per = all.shape[1]
    for i in 0..<all.shape[0] {
        let one = try model.encodeImage(Tensor(uncheckedShape: [1, per], scalars: Array(all.scalars[(i * per)..<((i + 1) * per)])))
        let d = image.shape[1]
        let e = relativeError(one.scalars, Array(image.scalars[(i * d)..<((i + 1) * d)]))
        #expect(e <= 1e-6, "image \(i) alone differs from the batch: \(e)")
    }
}

@Test("NaFlex input that is not a grid within the rows given is refused with the image named", arguments: [
    (Float(0), Float(4)), (Float(5), Float(5)), (Float(2.5), Float(2)), (Float.nan, Float(1)), (Float(1), Float(-3)),
])
func naflexRefusesBadGrids(_ rows: Float, _ cols: Float) throws {
    let model = try CLIPModel.load(path: naflexFolder).model
    let ref = try NaFlexReference()
    var input = ref.layout(ref.patchRows)
    let per = input.shape[1]
    (input.scalars[per], input.scalars[per + 1]) = (rows, cols)
    #expect {
        _ = try model.encodeImage(input)
    } throws: { error in
        let text = "\(error)"
        return text.contains("image 1") || text.contains("NaN")
    }
}

@Test("An image more elongated than the budget allows is refused by name, not written past its rows")
func naflexRefusesOverlongImages() throws {
    // transformers' search gives 1×2 patches for a 1×1,000,001 image and a budget of one 1-pixel patch.
    let budget = Preprocessing.PatchBudget(patchSize: 1, maxPatches: 1)
    #expect(budget.targetSize(width: 1_000_001, height: 1) == (width: 2, height: 1))
    var p = Preprocessing(resolution: 1, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5])
    p.patchBudget = budget
    let pixels = [UInt8](repeating: 200, count: 3 * 1_000_001)
    #expect {
        _ = try ImagePreprocessor(p).pixels(rgb: pixels, width: 1_000_001, height: 1, hasAlpha: false, name: "strip")
    } throws: { "\($0)".contains("strip") && "\($0)".contains("too elongated") }
    // Half as long is within the budget's reach: one patch.
    let fits = try ImagePreprocessor(p).pixels(rgb: Array(pixels.prefix(3 * 500_000)), width: 500_000, height: 1, hasAlpha: false)
    #expect(fits.count == 5 && fits[0] == 1 && fits[1] == 1)
}

@Test("NaFlex towers refuse square pixel tensors and rows that are not whole patches")
func naflexRefusesOtherShapes() throws {
    let model = try CLIPModel.load(path: naflexFolder).model
    #expect(throws: CLIPError.self) { _ = try model.encodeImage(Tensor(uncheckedZeros: [1, 3, 16, 16])) }
    #expect { _ = try model.encodeImage(Tensor(uncheckedZeros: [1, 2 + 24 * 48 + 1])) } throws: { "\($0)".contains("patches·48") }
}

@Test("A 2-D patch embedding under another model_type is refused by name (a conv one under siglip2: SigLIPTests)")
func naflexModelTypeMismatch() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("naflex-type-\(UUID())").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try FileManager.default.copyItem(atPath: naflexFolder + "/model.safetensors", toPath: dir + "/model.safetensors")
    var config = try String(contentsOfFile: naflexFolder + "/config.json", encoding: .utf8)
    config = config.replacingOccurrences(of: "\"model_type\": \"siglip2\"", with: "\"model_type\": \"siglip\"")
    try config.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
    #expect { _ = try CLIPModel.load(path: dir) } throws: { "\($0)".contains("not 'siglip2'") }
}

/// A copy of the fixture folder with `preprocessor_config.json` replaced (nil: removed).
private func naflexFolderCopy(preprocessor: String?) throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("naflex-pre-\(UUID())").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    for f in ["config.json", "model.safetensors"] {
        try FileManager.default.copyItem(atPath: "\(naflexFolder)/\(f)", toPath: "\(dir)/\(f)")
    }
    try preprocessor?.write(toFile: dir + "/preprocessor_config.json", atomically: true, encoding: .utf8)
    return dir
}

@Test("Without preprocessor_config.json a NaFlex folder takes Siglip2ImageProcessor's defaults")
func naflexProcessorDefaults() throws {
    let dir = try naflexFolderCopy(preprocessor: nil)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let p = try CLIPModel.load(path: dir).preprocessing
    #expect(p.patchBudget == .init(patchSize: 4, maxPatches: 256) && p.interpolation == .bilinear && p.mean == [0.5, 0.5, 0.5])
}

@Test("A hostile or unimplemented preprocessor_config.json is refused by key", arguments: [
    (#"{"max_num_patches": 0}"#, "max_num_patches"),
    (#"{"max_num_patches": 1e9}"#, "max_num_patches"),
    (#"{"max_num_patches": 16384, "patch_size": 4}"#, ""),
    (#"{"patch_size": 16}"#, "patch_size"),
    (#"{"resample": 1}"#, "resample"),
    (#"{"do_rescale": false}"#, "do_rescale"),
    (#"{"rescale_factor": 0.5}"#, "rescale_factor"),
    (#"{"image_std": [0.5, 0.5]}"#, "image_std"),
    (#"{"image_std": [0, 0, 0]}"#, "image_std"),
    (#"{"image_mean": "0.5"}"#, "image_mean"),
    (#"{"image_mean": [0.5, null, 0.5]}"#, "image_mean"),
])
func naflexHostileProcessorConfig(_ json: String, _ key: String) throws {
    let dir = try naflexFolderCopy(preprocessor: json)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    if key.isEmpty {
        // 16,384 patches of 48 values is within the bound: accepted.
        #expect(try CLIPModel.load(path: dir).preprocessing.patchBudget?.maxPatches == 16_384)
        return
    }
    #expect { _ = try CLIPModel.load(path: dir) } throws: { "\($0)".contains(key) }
}

@Test("vision_use_head false is refused: a Siglip2Model's image features are its pooling head's")
func naflexWithoutHeadIsRefused() throws {
    let dir = try naflexFolderCopy(preprocessor: nil)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    var config = try String(contentsOfFile: dir + "/config.json", encoding: .utf8)
    config = config.replacingOccurrences(of: "\"vision_use_head\": true", with: "\"vision_use_head\": false")
    try config.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
    #expect { _ = try CLIPModel.load(path: dir) } throws: { "\($0)".contains("vision_use_head") }
}

@Test("One number for image_mean or image_std stands for all three channels, as transformers reads it")
func naflexScalarNormalisation() throws {
    let dir = try naflexFolderCopy(preprocessor: #"{"image_mean": 0.25, "image_std": 0.75, "max_num_patches": 24}"#)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let p = try CLIPModel.load(path: dir).preprocessing
    #expect(p.mean == [0.25, 0.25, 0.25] && p.std == [0.75, 0.75, 0.75])
}

@Test("A PNG wider than libpng's default 1,000,000-pixel limit reads as Pillow reads it, into a 1×256 grid")
func naflexWidePNG() throws {
    var p = Preprocessing(resolution: 224, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], interpolation: .bilinear)
    p.patchBudget = .init(patchSize: 16, maxPatches: 256)
    let pixels = try ImagePreprocessor(p).pixels(file: "\(naflexDirectory)/strip_1x1000001.png")
    #expect(pixels.count == p.valuesPerImage && pixels[0] == 1 && pixels[1] == 256)
}
