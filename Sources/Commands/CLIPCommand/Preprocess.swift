import ArgumentParser
import CLIP
import CLIPCommandSupport
import CLIPImage
import CLIPKit
import CLIPTokenizer
import Foundation

struct Preprocess: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Decode and preprocess images exactly as the reference clip package does; write a float32 .npy [N, 3, R, R].")

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
        let p = ImagePreprocessor(resolution: resolution,
                                  mean: try triple(mean, "--mean") ?? ImagePreprocessor.openAIMean,
                                  std: try triple(std, "--std") ?? ImagePreprocessor.openAIStd,
                                  applyEXIFOrientation: exifTranspose, resizeMode: resizeMode,
                                  interpolation: interpolation)
        let x = try p.tensor(files: images)
        try write(x.npyData(), to: output)
    }
}

extension ImagePreprocessor.ResizeMode: ExpressibleByArgument {}
extension ImagePreprocessor.Interpolation: ExpressibleByArgument {}
