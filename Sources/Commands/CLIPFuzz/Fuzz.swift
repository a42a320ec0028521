// Fuzz entry points for the parsers that read untrusted bytes: the safetensors header, the zip reader, the
// unpickler (through whole PyTorch checkpoints), the image decoders (GIF, BMP, TIFF, camera RAW and videos with corpora of their own), SentencePiece model files, training tables
// and the CLIP tokenizer's cleaning and BPE (texts from requests and captions). Built with libFuzzer by
// Scripts/fuzz/run_fuzzers.sh (`-sanitize=fuzzer,address`, `CLIP_FUZZ` defined); built normally, the same code is
// `clip-fuzz-replay TARGET FILE…`, which runs saved inputs (the committed corpora) once each as a regression test.
import CLIPFiles
import CLIPImage
import CLIPTokenizer
import CLIPWeights
import Foundation
#if canImport(Glibc)
import Glibc
#endif

enum FuzzTarget: String, CaseIterable {
    case safetensors, zip, checkpoint, pickle, image, sentencepiece, table, text
    /// The image path again, each from a corpus of its own format, so that each decoder gets its own time.
    case gif, bmp, tiff, raw
    /// Videos through FFmpeg: every sampled frame of the input, read as a file.
    case video
}

/// Runs one input through `target`. Every failure must be a thrown error; a crash, hang or leak is a finding.
func fuzz(_ target: FuzzTarget, _ bytes: [UInt8]) {
    switch target {
    case .pickle:
        _ = try? Unpickler.load(bytes)
    case .table:
        // open_clip's CSV/TSV of training data, with the caption limit training reads it with.
        _ = try? DelimitedTable.parse(bytes, separator: 44, name: "input", maxFieldBytes: 4096)
        _ = try? DelimitedTable.parse(bytes, separator: 9, name: "input", maxFieldBytes: 4096)
    case .text:
        // Texts from requests and captions: cleaning (ftfy, HTML entities) and BPE, cut to the context and not.
        guard let tokenizer = try? CLIPTokenizer.shared() else { return }
        let text = String(decoding: bytes, as: UTF8.self)
        _ = try? tokenizer.tokenize([text], contextLength: 77, truncate: true)
        _ = try? tokenizer.tokenize([text, text.uppercased()], contextLength: 77, truncate: false)
    case .sentencepiece:
        // A model file that parses is then used: its normalization map and pieces drive every lookup.
        guard let model = try? SentencePieceModel(bytes: bytes, origin: "input"),
              let tokenizer = try? SentencePieceTokenizer(model: model, cleaning: .none) else { return }
        // The same model run as XLM-RoBERTa's (grapheme-wise normalization, special tokens in the text) when its
        // layout allows.
        let xlmRoberta = try? XLMRobertaTokenizer(model: model)
        // And as NLLB-200's (BPE: language codes in the text, <mask> after normalization).
        let nllb = try? NLLBTokenizer(model: model)
        for text in ["a photo of a cat", "  \u{FB01}  \u{DC}\u{3000}x\t\n ", "<img>c++ 12345 \u{1F436}\u{1F436}", "",
                     "e\u{301}\u{FB01}\u{301} <s>\u{2581}\u{2581}x</s><mask>", "xeng_Latny a\u{FFFD}<mask> \u{FE64}mask\u{FE65}"] {
            _ = try? tokenizer.encode(text)
            _ = try? xlmRoberta?.encode(text)
            _ = try? nllb?.tokenize([text], contextLength: 16, truncate: true)
        }
    case .image, .gif, .bmp, .tiff, .raw:
        // A smaller pixel limit than the default keeps the sanitizer's memory within its bounds.
        let preprocessor = ImagePreprocessor(resolution: 32, maxPixels: 16 << 20)
        // SigLIP 2 NaFlex's resize to a patch budget (RGB first, any aspect ratio) beside the square crop.
        var naflex = preprocessor
        naflex.preprocessing.patchBudget = .init(patchSize: 4, maxPatches: 24)
        if let image = try? decodeImage(bytes, name: "input", maxPixels: 16 << 20) {
            _ = try? preprocessor.pixels(image)
            _ = try? naflex.pixels(image)
        }
        // The row-by-row path large JPEGs and PNGs take, on every input.
        _ = try? preprocessor.streamedCroppedRGB(bytes, name: "input")
        _ = try? naflex.streamedCroppedRGB(bytes, name: "input")
    case .video:
        guard let file = memoryFile(bytes),
              let reader = try? VideoReader(path: file.path, interval: 0.5, maxPixels: 1 << 20, secondsPerFrame: 5) else { return }
        for _ in 0..<10_000 {
            guard case .some(.some) = try? reader.next() else { break }
        }
    case .safetensors, .zip, .checkpoint:
        guard let file = memoryFile(bytes) else { return }
        switch target {
        case .safetensors:
            guard let st = try? SafeTensorsFile(file: file) else { return }
            for t in st.tensorInfos where t.dtype.isFloatingPoint { _ = try? st.floatTensor(t.name) }
        case .zip:
            guard let zip = try? ZipArchive(file: file) else { return }
            for e in zip.entries { _ = try? zip.contents(e, limit: 64 << 20) }
        default:
            guard let ckpt = try? TorchCheckpoint(file: file) else { return }
            for t in ckpt.tensorInfos where t.dtype.isFloatingPoint { _ = try? ckpt.floatTensor(t.name) }
        }
    }
}

/// The bytes as a regular file with no name (created in shared memory when there is one, unlinked at once, and
/// reopened through /proc), so nothing is left behind however the run ends.
func memoryFile(_ bytes: [UInt8]) -> RegularFile? {
    let directory = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
    var template = Array("\(directory)/clip-fuzz.XXXXXX".utf8CString)
    let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
    let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    guard written == bytes.count else { return nil }
    return try? RegularFile(path: "/proc/self/fd/\(fd)")
}

#if CLIP_FUZZ
nonisolated(unsafe) let selectedTarget: FuzzTarget = {
    let name = ProcessInfo.processInfo.environment["CLIP_FUZZ_TARGET"] ?? ""
    guard let t = FuzzTarget(rawValue: name) else {
        FileHandle.standardError.write(Data("set CLIP_FUZZ_TARGET to one of: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))\n".utf8))
        exit(2)
    }
    return t
}()

/// libFuzzer's entry point (its own `main` drives it; Scripts/fuzz/run_fuzzers.sh links the objects itself).
@_cdecl("LLVMFuzzerTestOneInput")
package func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    fuzz(selectedTarget, data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
    return 0
}
#else
@main
struct Replay {
    static func main() {
        let args = CommandLine.arguments.dropFirst()
        guard let first = args.first, let target = FuzzTarget(rawValue: first) else {
            print("usage: clip-fuzz-replay \(FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")) FILE|DIR…")
            exit(64)
        }
        var count = 0
        for path in args.dropFirst() {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { continue }
            let files = isDirectory.boolValue
                ? ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { path + "/" + $0 }
                : [path]
            for file in files {
                guard let data = FileManager.default.contents(atPath: file) else { continue }
                fuzz(target, [UInt8](data))
                count += 1
            }
        }
        print("\(target.rawValue): \(count) inputs replayed")
    }
}
#endif
