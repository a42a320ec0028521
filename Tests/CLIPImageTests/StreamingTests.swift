import CLIPImage
import Foundation
import Testing

// Large JPEGs and PNGs are decoded row by row into the resampler instead of whole. That path must give the same
// bytes as decoding whole and resizing (which the reference tests hold to Pillow), for every fixture it applies
// to, at crops smaller and larger than the image, and must fail wherever decoding whole fails.

/// Crops of one pixel, odd sizes, and one larger than every fixture's shorter side (padded with zeros).
let streamedResolutions = [1, 37, 224, 311]

@Test("Row-by-row decoding gives the bytes of decoding whole", arguments: manifest, ImagePreprocessor.Interpolation.allCases)
func streamedDecodeEqualsWhole(_ e: ManifestEntry, interpolation: ImagePreprocessor.Interpolation) throws {
    let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(imageFixtures)/\(e.file)")))
    let whole = try decodeImage(data, name: e.file)
    for r in Set(e.resolutions + streamedResolutions).sorted() {
        for exif in [false, true] {
            let p = ImagePreprocessor(resolution: r, applyEXIFOrientation: exif, interpolation: interpolation)
            guard let streamed = try p.streamedCroppedRGB(data, name: e.file) else { continue }
            let expected = try p.croppedRGB(whole, name: e.file)
            let differing = zip(streamed, expected).filter { $0 != $1 }.count
            #expect(streamed.count == expected.count && differing == 0,
                    "\(e.file) at \(r) \(interpolation) (EXIF \(exif)): \(differing) of \(expected.count) bytes differ")
        }
    }
    // SigLIP 2 NaFlex's uncropped resize to a patch budget streams too (RGB and gray images only: it converts to RGB
    // before resizing).
    for budget in [Preprocessing.PatchBudget(patchSize: 4, maxPatches: 24), .init(patchSize: 16, maxPatches: 256)] {
        var p = ImagePreprocessor(resolution: 64, interpolation: interpolation)
        p.preprocessing.patchBudget = budget
        guard let streamed = try p.streamedCroppedRGB(data, name: e.file) else { continue }
        #expect(["L", "RGB"].contains(e.mode), "\(e.file) (\(e.mode)) streamed for NaFlex")
        let expected = try p.croppedRGB(whole, name: e.file)
        #expect(streamed == expected, "\(e.file) with \(budget) \(interpolation): streamed bytes differ")
    }
}

@Test("The streamed path covers every JPEG and every non-interlaced 8-bit PNG, and only them")
func streamedPathCoverage() throws {
    var streamed: [String] = []
    for e in manifest {
        let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(imageFixtures)/\(e.file)")))
        if try ImagePreprocessor(resolution: 64).streamedCroppedRGB(data, name: e.file) != nil { streamed.append(e.file) }
    }
    let expected = manifest.filter { e in
        e.file.hasSuffix(".jpg")
            || (e.file.hasSuffix(".png") && !e.file.contains("interlaced") && ["L", "LA", "RGB", "RGBA"].contains(e.mode))
    }.map(\.file)
    #expect(Set(streamed) == Set(expected))
    #expect(streamed.count >= 30, "only \(streamed.count) fixtures streamed")
}

@Test("A truncated or corrupt file fails on the streamed path as it does whole", arguments: manifest.filter {
    $0.file.hasSuffix(".jpg") || $0.file.hasSuffix(".png")
})
func streamedDecodeFailsLikeWhole(_ e: ManifestEntry) throws {
    let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(imageFixtures)/\(e.file)")))
    let p = ImagePreprocessor(resolution: 64)
    // Cut inside the pixel data, and damage a byte near the end (past any centre crop's rows).
    var damaged = data
    damaged[data.count - 20] ^= 0x5A
    for (what, bytes) in [("truncated", Array(data.prefix(data.count * 2 / 3))), ("damaged", damaged)] {
        var wholeError: ImageError?
        do { _ = try p.croppedRGB(decodeImage(bytes, name: e.file), name: e.file) } catch { wholeError = error }
        var streamedError: ImageError?
        var streamed: [UInt8]?
        do { streamed = try p.streamedCroppedRGB(bytes, name: e.file) } catch { streamedError = error }
        if streamed == nil && streamedError == nil { continue }  // not a streamed image
        #expect((wholeError == nil) == (streamedError == nil),
                "\(e.file) \(what): whole \(String(describing: wholeError)), streamed \(String(describing: streamedError))")
        if let wholeError, let streamedError { #expect(wholeError.problem == streamedError.problem) }
    }
}
