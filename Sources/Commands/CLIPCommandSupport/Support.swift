// What every `clip` subcommand shares: the error line, the model options, progress, output files and JSON.
import ArgumentParser
import CLIP
import CLIPFiles
import CLIPKit
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A command's own error, by what the user fixes; every case names the culprit. (Wrong or missing options are
/// ArgumentParser's `ValidationError`.)
package enum CLIError: Error, CustomStringConvertible {
    /// A file the command reads or writes.
    case file(path: String, reason: String)
    /// A settings file (`--config`, an API key file) holds something the command does not take.
    case settings(path: String, reason: String)
    /// What the command was given (a folder, an index, a checkpoint, shards) does not hold what it needs.
    case input(subject: String, reason: String)
    /// The command cannot do its work here (a cache switched off, a server that stopped).
    case unavailable(String)

    package var description: String {
        switch self {
        case .file(let subject, let reason), .settings(let subject, let reason), .input(let subject, let reason):
            return "\(subject): \(reason)"
        case .unavailable(let reason): return reason
        }
    }
}

/// Runs a parsed command the way every `clip` command ends: an error it throws becomes one line on standard error
/// (`clip: …`) and exit code 1, whatever its type; what ArgumentParser raises itself (help, usage, `ExitCode`) is
/// rethrown for `exit(withError:)`. A `CLIP_CPU` setting this CPU cannot honour is such an error for every command.
package func runReportingErrors(_ command: any ParsableCommand) async throws {
    do {
        try CPU.validate()
        if var async = command as? any AsyncParsableCommand {
            try await async.run()
        } else {
            var command = command
            try command.run()
        }
    } catch let error where error is ExitCode
                || (!(error is ValidationError) && String(reflecting: type(of: error)).hasPrefix("ArgumentParser.")) {
        throw error
    } catch {
        FileHandle.standardError.write(Data("clip: \(String(describing: error))\n".utf8))
        throw ExitCode(1)
    }
}

/// Where a model comes from, shared by every command that loads one.
package struct ModelOptions: ParsableArguments {
    @Option(name: .customLong("model"), help: "A checkpoint file (.pt, .pth, .bin, .safetensors), a Hugging Face CLIPModel, SiglipModel, Siglip2Model (NaFlex) or ChineseCLIPModel folder, hf-hub:ORG/NAME (an open_clip or Hugging Face repository on the Hub, cached as huggingface_hub caches), an open_clip ARCH/TAG (see --pretrained), or one of: \(CLIPConfiguration.openAIModelNames.joined(separator: ", ")) (downloaded once). Default: the shipped swift-clip-shapes model (offline; see docs/default-model.md).")
    package var spec: String = "default"

    @Option(help: "An open_clip pretrained tag: --model is then an open_clip architecture, e.g. --model ViT-B-32 --pretrained laion2b_s34b_b79k (also written ViT-B-32/laion2b_s34b_b79k). `clip models` lists them.")
    package var pretrained: String?

    @Option(help: "For hf-hub: models and open_clip tags, a branch, tag or commit of the Hub repository (default: main).")
    package var revision: String?

    @Option(help: "Where OpenAI's named models are cached (default: $CLIP_CACHE_DIR, else ~/.cache/clip, as the reference). hf-hub: models use $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub.")
    package var cacheDir: String?

    @Option(help: "An open_clip model config JSON whose activation and preprocessing apply to the checkpoint.")
    package var openclipConfig: String?

    @Option(help: "Arithmetic of the weight products: fp32 (default, as the reference), bf16 (AVX512-BF16) or int8 (AVX2, AVX512-VNNI or NEON DotProd; dynamic quantisation).")
    package var precision: Precision = .fp32

    @Option(help: "For NLLB-CLIP and NLLB-SigLIP models: the language code that starts each text's row (one of FLORES-200's 202, e.g. fra_Latn, zho_Hans). Default: eng_Latn, as open_clip's rows always are.")
    package var textLanguage: String?

    package init() {}

    package func validate() throws {
        if let textLanguage, !NLLBTokenizer.languageCodes.contains(textLanguage) {
            throw ValidationError("--text-language: \(TokenizerError.unknownLanguage(textLanguage))")
        }
    }

    package func pipeline(towers: CLIPModel.Towers = .both) throws -> CLIPPipeline {
        let pipeline = try CLIPPipeline.load(spec, cacheDirectory: cacheDir, openCLIPConfig: openclipConfig, revision: revision,
                                             pretrained: pretrained, precision: precision, towers: towers,
                                             weightCache: PackedWeightCache.user)
        guard let textLanguage else { return pipeline }
        do { return try pipeline.withTextLanguage(textLanguage) } catch {
            throw ValidationError("--text-language: \(error)")
        }
    }
}

extension Precision: ExpressibleByArgument {}

/// Images and texts given one by one (`--image a.jpg --image b.png --text "a dog"`), in that order.
package struct InputOptions: ParsableArguments {
    @Option(name: .customLong("image"), help: "An image file; repeat for more.")
    package var images: [String] = []

    @Option(name: .customLong("text"), help: "A text; repeat for more.")
    package var texts: [String] = []

    package init() {}
}

/// A progress line on standard error, drawn only when it is a terminal and the work is long.
package func progressReporter(_ what: String, total: Int) -> (@Sendable (Int, Int) -> Void)? {
    guard isatty(2) != 0, total >= 32 else { return nil }
    return { done, total in
        FileHandle.standardError.write(Data("\r\(what) \(done)/\(total)\(done == total ? "\n" : "")".utf8))
    }
}

/// Writes an output file atomically (devices and FIFOs in place; see `OutputFile`), one line naming it on failure.
package func write(_ data: Data, to path: String) throws {
    do {
        try OutputFile.write([UInt8](data), to: path)
    } catch {
        throw CLIError.file(path: path, reason: "cannot write: \(error.reason)")
    }
}

/// Compact JSON for `value`, keys sorted (the output is the same from run to run), every non-ASCII character escaped
/// (\\uXXXX) so the output is unambiguous on any terminal and in any locale.
package func jsonText<T: Encodable>(_ value: T) throws -> String {
    let utf8 = try JSONOutput.text(value)
    var out = ""
    out.reserveCapacity(utf8.utf8.count)
    for scalar in utf8.unicodeScalars {
        if scalar.isASCII {
            out.unicodeScalars.append(scalar)
        } else {
            for unit in String(scalar).utf16 { out += String(format: "\\u%04x", unit) }
        }
    }
    return out
}

/// The rows of a [rows, width] tensor, for JSON.
package func rows(_ t: Tensor) -> [[Float]] {
    let w = t.shape.count == 2 ? t.shape[1] : 0
    return (0..<(t.shape.first ?? 0)).map { Array(t.scalars[($0 * w)..<(($0 + 1) * w)]) }
}

/// A small input file the user names (an API key file, a settings file): a regular file of at most `limit` bytes,
/// or a pipe such as `<(pass show key)` or /dev/stdin read to at most `limit` bytes (one that gives more, as
/// /dev/zero does, is refused after `limit` + 1). The error names the file.
package func readSmallFile(_ path: String, limit: Int, what: String) throws -> [UInt8] {
    var st = stat()
    guard stat(path, &st) == 0 else { throw CLIError.file(path: path, reason: "cannot read \(what): \(String(cString: strerror(errno)))") }
    let kind = st.st_mode & S_IFMT
    if kind == S_IFREG {
        do { return try RegularFile.contents(of: path, limit: limit) } catch { throw CLIError.file(path: path, reason: "cannot read \(what): \(error.reason)") }
    }
    guard kind == S_IFIFO || kind == S_IFCHR, let handle = FileHandle(forReadingAtPath: path) else {
        throw CLIError.file(path: path, reason: "cannot read \(what): \(kind == S_IFDIR ? "is a directory" : "not a file or a pipe")")
    }
    defer { try? handle.close() }
    var bytes: [UInt8] = []
    while bytes.count <= limit, let chunk = try? handle.read(upToCount: min(65536, limit + 1 - bytes.count)), !chunk.isEmpty {
        bytes += chunk
    }
    guard bytes.count <= limit else { throw CLIError.file(path: path, reason: "\(what) is more than \(limit) bytes") }
    return bytes
}
