import CLIPTestSupport
import Foundation
import Testing

/// The `clip` executable SwiftPM built into the products directory: the test bundle's directory on Linux,
/// the one above it on macOS. Every process started from it inherits `CLIP_EXIT_WITH_PARENT=1`, set here before the
/// first one: should the test run crash, its `clip serve` children stop instead of living on. They also inherit a
/// packed-weight cache of this test process's own (a test may name another), so a test run writes nothing into the
/// user's cache and finds nothing of it there.
let clipBinary: URL = {
    setenv("CLIP_EXIT_WITH_PARENT", "1", 1)
    setenv("CLIP_WEIGHT_CACHE", perProcessTemporaryDirectory(prefix: "clip-command-tests-") + "/weights", 1)
    let bundle = Bundle.main.bundleURL
    let candidates = [bundle.appendingPathComponent("clip"), bundle.deletingLastPathComponent().appendingPathComponent("clip")]
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[1]
}()

struct RunResult {
    let status: Int32
    let stdout: String
    let stderr: String
}

func runClip(_ arguments: [String], environment: [String: String] = [:]) throws -> RunResult {
    let p = Process()
    p.executableURL = clipBinary
    p.arguments = arguments
    if !environment.isEmpty {
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return RunResult(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
                     stderr: String(decoding: e, as: UTF8.self))
}

@Test func tokenizePrintsOneRowPerText() throws {
    let r = try runClip(["tokenize", "a diagram", "a dog", "a cat"])
    #expect(r.status == 0, "\(r.stderr)")
    let rows = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[Int]])
    #expect(rows.count == 3 && rows.allSatisfy { $0.count == 77 })
    #expect(Array(rows[0].prefix(5)) == [49406, 320, 22697, 49407, 0])
}

@Test func tokenizeHonoursContextLengthAndTruncation() throws {
    let r = try runClip(["tokenize", "--context-length", "4", "--truncate", "a photo of a dog"])
    #expect(r.status == 0)
    #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "[[49406,320,1125,49407]]")
}

@Test("clip tokenize --sentencepiece: SigLIP's rows, as the SentencePiece tests fix them")
func tokenizeWithSentencePiece() throws {
    let model = testsDirectory.appendingPathComponent("CLIPTokenizerTests/Fixtures/sentencepiece/unigram_nfkc.model").path
    let r = try runClip(["tokenize", "--sentencepiece", model, "--context-length", "8", "A photo of a Cat."])
    #expect(r.status == 0, "\(r.stderr)")
    // ▁a ▁photo ▁of ▁a ▁cat, </s> (id 1), then </s> padding.
    #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "[[17,106,21,17,55,1,1,1]]")
    let bad = try runClip(["tokenize", "--sentencepiece", "/nonexistent/spiece.model", "x"])
    #expect(bad.status == 1 && bad.stderr.contains("/nonexistent/spiece.model"), "\(bad.stderr)")
}

@Test("clip tokenize --xlm-roberta: MetaCLIP 2's rows (<s> … </s>, <pad>), as open_clip's HFTokenizer writes them")
func tokenizeWithXLMRoberta() throws {
    let model = testsDirectory.appendingPathComponent("CLIPTokenizerTests/Fixtures/sentencepiece/xlmr/sentencepiece.bpe.model").path
    let r = try runClip(["tokenize", "--xlm-roberta", model, "--context-length", "12", "A photo of a CAT.", "x"])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            == "[[0,471,104,19,15,4,3,877,683,119,2,1],[0,192,2,1,1,1,1,1,1,1,1,1]]")
    let both = try runClip(["tokenize", "--xlm-roberta", model, "--sentencepiece", model, "x"])
    #expect(both.status != 0 && both.stderr.contains("--xlm-roberta"), "\(both.stderr)")
}

@Test("clip tokenize --nllb: NLLB-CLIP's rows (language code … </s>, <pad>), eng_Latn's or another code's")
func tokenizeWithNLLB() throws {
    let model = testsDirectory.appendingPathComponent("CLIPTokenizerTests/Fixtures/sentencepiece/nllb/sentencepiece.bpe.model").path
    // The fixture's rows_fra.jsonl: fra_Latn (3057), ▁x, </s>, <pad>.
    let r = try runClip(["tokenize", "--nllb", model, "--context-length", "5", "x"])
    let french = try runClip(["tokenize", "--nllb", model, "--language", "fra_Latn", "--context-length", "5", "x"])
    #expect(r.status == 0 && french.status == 0, "\(r.stderr) \(french.stderr)")
    #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "[[3047,330,2,1,1]]")
    #expect(french.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "[[3057,330,2,1,1]]")
    let unknown = try runClip(["tokenize", "--nllb", model, "--language", "french", "x"])
    #expect(unknown.status != 0 && unknown.stderr.contains("'french' is not one of NLLB's 202 language codes"), "\(unknown.stderr)")
    let alone = try runClip(["tokenize", "--language", "fra_Latn", "x"])
    #expect(alone.status != 0 && alone.stderr.contains("--nllb"), "\(alone.stderr)")
}

@Test func tooLongTextFailsWithOneLine() throws {
    let r = try runClip(["tokenize", "--context-length", "4", "ok", "a photo of a dog"])
    #expect(r.status == 1)
    #expect(r.stderr == "clip: text 1 is 7 tokens long (with start and end tokens), more than the context length 4; shorten it or enable truncation\n")
    #expect(r.stdout.isEmpty)
}

@Test("clip info hf-hub:ORG/NAME reads a cache huggingface_hub wrote, offline; --revision picks the ref")
func infoOnAHubModelFromThePythonCache() throws {
    let cache = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../CLIPHubTests/Fixtures/hf_cache").standardized.path
    let env = ["HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": cache]
    let r = try runClip(["info", "hf-hub:test-org/tiny-openclip"], environment: env)
    #expect(r.status == 0, "\(r.stderr)")
    #expect(r.stdout.contains("path: \(cache)/models--test-org--tiny-openclip/snapshots/"), "\(r.stdout)")
    #expect(r.stdout.contains("image activation: gelu"))
    let missing = try runClip(["info", "hf-hub:test-org/tiny-openclip", "--revision", "v2"], environment: env)
    #expect(missing.status == 1)
    #expect(missing.stderr.contains("HF_HUB_OFFLINE is set and open_clip_config.json of test-org/tiny-openclip at v2 is not in the cache"), "\(missing.stderr)")
}

@Test func infoOnMissingFileNamesIt() throws {
    let r = try runClip(["info", "/nonexistent/model.safetensors"])
    #expect(r.status == 1)
    #expect(r.stderr.hasPrefix("clip: '/nonexistent/model.safetensors' is neither a file, a folder, nor one of the models RN50"))
}

@Test func infoDescribesATorchScriptCheckpoint() throws {
    let r = try runClip(["info", "\(checkpointDirectory)/vit_small_torchscript.pt"])
    #expect(r.status == 0, "\(r.stderr)")
    for line in ["format: TorchScript archive", "stored dtypes: F16 (35 tensors), F32 (27 tensors)", "parameters: 633601",
                 "image tower: Vision Transformer, width 128, 2 layers, 2 heads, patch 16",
                 "preprocessing: resize shorter side to 64 (bicubic), center crop 64×64"] {
        #expect(r.stdout.contains(line), "missing '\(line)' in:\n\(r.stdout)")
    }
}

func scratchFile(_ name: String) -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("clip-cli-\(getpid())")
    try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir.appendingPathComponent(name).path
}

@Test func preprocessWritesAFloat32NPY() throws {
    let out = scratchFile("x.npy")
    let images = ["jpeg_420_mid.jpg", "png_rgba_odd.png", "webp_lossy_mid.webp"].map { "\(imageDirectory)/\($0)" }
    let r = try runClip(["preprocess", "--resolution", "64", "--output", out] + images)
    #expect(r.status == 0, "\(r.stderr)")
    let data = try Data(contentsOf: URL(fileURLWithPath: out))
    #expect(data.prefix(6) == Data([0x93] + Array("NUMPY".utf8)))
    let headerLength = Int(data[8]) | Int(data[9]) << 8
    let header = String(decoding: data[10..<(10 + headerLength)], as: UTF8.self)
    #expect(header.contains("'descr': '<f4'") && header.contains("'shape': (3, 3, 64, 64)"))
    #expect((10 + headerLength) % 64 == 0)
    #expect(data.count == 10 + headerLength + 3 * 3 * 64 * 64 * 4)
}

@Test("clip preprocess --max-patches writes NaFlex's grid and patch rows, as Siglip2ImageProcessorPil makes them")
func preprocessNaFlexPatchRows() throws {
    let out = scratchFile("naflex.npy")
    let folder = testsDirectory.appendingPathComponent("CLIPTests/Fixtures/naflex/images").path
    let r = try runClip(["preprocess", "--max-patches", "24", "--patch-size", "4", "--interpolation", "bilinear",
                         "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--output", out,
                         "\(folder)/wide_37x53.png", "\(folder)/strip_200x9.png"])
    #expect(r.status == 0, "\(r.stderr)")
    let data = try Data(contentsOf: URL(fileURLWithPath: out))
    let headerLength = Int(data[8]) | Int(data[9]) << 8
    let header = String(decoding: data[10..<(10 + headerLength)], as: UTF8.self)
    #expect(header.contains("'shape': (2, 1154)"), "\(header)")
    let values = data[(10 + headerLength)...].withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    // The images' grids (Scripts/fixtures/make_naflex_fixtures.py: 4×6 and 1×23) lead each row.
    #expect(values.count == 2 * 1154 && Array(values[0..<2]) == [4, 6] && Array(values[1154..<1156]) == [1, 23])
    let bad = try runClip(["preprocess", "--max-patches", "24", "--patch-size", "65", "--output", out, "\(folder)/tiny_5x5.png"])
    #expect(bad.status != 0 && bad.stderr.contains("--patch-size"))
}

@Test func preprocessNamesABrokenFile() throws {
    let bad = scratchFile("notes.jpg")
    try Data("just some text\n".utf8).write(to: URL(fileURLWithPath: bad))
    let r = try runClip(["preprocess", "--output", scratchFile("y.npy"), "\(imageDirectory)/jpeg_420_mid.jpg", bad])
    #expect(r.status == 1)
    #expect(r.stderr.hasPrefix("clip: \(bad): not a JPEG, PNG, WebP, HEIC, AVIF, GIF, BMP or TIFF image"))
    #expect(r.stderr.components(separatedBy: "\n").filter { !$0.isEmpty }.count == 1)
    let usage = try runClip(["preprocess", "--resolution", "0", "--output", "z.npy", bad])
    #expect(usage.status != 0 && usage.stderr.contains("--resolution"))
}

@Test("bench --model times a checkpoint's two towers; with --images-only, the image tower alone")
func benchTimesACheckpoint() throws {
    let both = try runClip(["bench", "--model", tinyModel, "--batch", "2", "--repeat", "1"])
    #expect(both.status == 0, "\(both.stderr)")
    #expect(both.stdout.contains("image batch 2:") && both.stdout.contains("text batch 2:"), "\(both.stdout)")
    let images = try runClip(["bench", "--model", tinyModel, "--batch", "2", "--repeat", "1", "--images-only"])
    #expect(images.status == 0, "\(images.stderr)")
    #expect(images.stdout.contains("image batch 2:") && !images.stdout.contains("text batch"), "\(images.stdout)")
}
