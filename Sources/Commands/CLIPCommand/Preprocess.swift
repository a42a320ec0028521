import ArgumentParser
import CLIP
import CLIPCommandSupport
import CLIPImage
import CLIPKit
import CLIPTokenizer
import Foundation

struct Preprocess: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Decode and preprocess images exactly as the reference clip package does; write a float32 .npy [N, 3, R, R].",
        discussion: "With --max-patches, as SigLIP 2's NaFlex processor (Siglip2ImageProcessor) does instead: each image resized, aspect ratio kept, to at most that many --patch-size patches, and written as [N, 2 + max-patches·3·p·p]: its grid's rows and columns, then its patches as rows in (y, x, channel) order, zeros past them (the processor's spatial_shapes and pixel_values).")

    @Option(help: "Side of the square model input.")
    var resolution = 224

    @Option(help: "Per-channel mean, three comma-separated values (default: OpenAI's).")
    var mean: String?

    @Option(help: "Per-channel standard deviation, three comma-separated values (default: OpenAI's).")
    var std: String?

    @Option(help: "shortest (the reference: shorter side, centre crop), squash (both sides, aspect not kept) or longest (longer side, padded with black), as open_clip's resize_mode.")
    var resizeMode: ImagePreprocessor.ResizeMode = .shortest

    @Option(help: "The resampling filter: bicubic (OpenAI's and most models') or bilinear (CLIPA's), as Pillow resamples.")
    var interpolation: ImagePreprocessor.Interpolation = .bicubic

    @Option(help: "SigLIP 2 NaFlex: the patch budget per image (the processor's max_num_patches, 256 for google/siglip2-*-naflex); --resolution and --resize-mode then do not apply.")
    var maxPatches: Int?

    @Option(help: "SigLIP 2 NaFlex: the patch side in pixels.")
    var patchSize = 16

    @Flag(help: "Rotate/flip by the EXIF orientation first (the reference does not).")
    var exifTranspose = false

    @Option(help: "The .npy file to write.")
    var output: String

    @Argument(help: "JPEG, PNG, WebP, HEIC, AVIF, GIF, BMP or TIFF files.")
    var images: [String]

    func validate() throws {
        guard !images.isEmpty else { throw ValidationError("give at least one image") }
        guard (1...4096).contains(resolution) else { throw ValidationError("--resolution must be between 1 and 4096") }
        _ = try triple(mean, "--mean")
        _ = try triple(std, "--std")
        if maxPatches == nil, patchSize != 16 {
            throw ValidationError("--patch-size applies to SigLIP 2 NaFlex's layout only: give --max-patches too")
        }
        if let maxPatches, !Preprocessing.PatchBudget(patchSize: patchSize, maxPatches: maxPatches).isValid {
            throw ValidationError("--max-patches \(maxPatches) of --patch-size \(patchSize): the patch side must be 1...\(Preprocessing.PatchBudget.maximumPatchSize) and an image at most \(Preprocessing.PatchBudget.maximumValues) values")
        }
    }

    func triple(_ text: String?, _ flag: String) throws -> [Float]? {
        guard let text else { return nil }
        // Every field a number (none dropped), finite, and a standard deviation not so small its quotients overflow.
        let fields = text.split(separator: ",", omittingEmptySubsequences: false)
        let values = fields.compactMap { Float($0.trimmingCharacters(in: .whitespaces)) }
        guard fields.count == 3, values.count == 3, values.allSatisfy(\.isFinite),
              flag != "--std" || values.allSatisfy({ $0 >= 1e-6 }) else {
            throw ValidationError("\(flag) needs three comma-separated numbers\(flag == "--std" ? " of at least 1e-6" : ""), got '\(text)'")
        }
        return values
    }

    func run() throws {
        var p = ImagePreprocessor(resolution: resolution,
                                  mean: try triple(mean, "--mean") ?? ImagePreprocessor.openAIMean,
                                  std: try triple(std, "--std") ?? ImagePreprocessor.openAIStd,
                                  applyEXIFOrientation: exifTranspose, resizeMode: resizeMode,
                                  interpolation: interpolation)
        p.preprocessing.patchBudget = maxPatches.map { .init(patchSize: patchSize, maxPatches: $0) }
        let x = try p.tensor(files: images)
        try write(x.npyData(), to: output)
    }
}

extension ImagePreprocessor.ResizeMode: ExpressibleByArgument {}
extension ImagePreprocessor.Interpolation: ExpressibleByArgument {}
