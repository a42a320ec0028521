import ArgumentParser
import CLIP
import CLIPCommandSupport
import CLIPImage
import CLIPKit
import CLIPTokenizer
import Foundation

/// Tokenizer and image-preprocessing throughput.
extension Bench {
    /// Texts/s of `tokenize` on the captions the reference anchor uses, each run with a fresh (cold) cache.
    func runTokenizer() throws {
        let pets = ["dog", "cat", "bird", "fish"]
        let texts = (0..<1000).map { "a photo of a \(pets[$0 % 4]), a type of pet number \($0)." }
        _ = try CLIPTokenizer.shared()  // load the vocabulary outside the timing
        var fresh: [CLIPTokenizer] = []
        for _ in 0...`repeat` { fresh.append(try CLIPTokenizer()) }
        var run = 0
        let t = try median {
            _ = try fresh[run].tokenize(texts)
            run += 1
        }
        print(String(format: "tokenizer (cold cache, 1 thread): %.0f texts/s", Double(texts.count) / t))
    }

    /// Images/s of decode + preprocess at 224, one thread (file bytes already in memory) and the parallel batch API.
    func runPreprocess() throws {
        let p = ImagePreprocessor()
        let blobs = try preprocess.map { path -> [UInt8] in
            guard let d = FileManager.default.contents(atPath: path) else { throw CLIError.file(path: path, reason: "cannot read") }
            return [UInt8](d)
        }
        let decodeOnly = try median {
            for (i, b) in blobs.enumerated() { _ = try decodeImage(b, name: preprocess[i]) }
        }
        let decoded = try blobs.enumerated().map { try decodeImage($1, name: preprocess[$0]) }
        let preprocessOnly = try median { for d in decoded { _ = try p.pixels(d) } }
        print(String(format: "decode only, 1 thread: %.1f img/s; resize+crop+normalise only: %.1f img/s",
                     Double(blobs.count) / decodeOnly, Double(blobs.count) / preprocessOnly))
        let single = try median {
            for (i, b) in blobs.enumerated() { _ = try p.pixels(decodeImage(b, name: preprocess[i])) }
        }
        print(String(format: "decode + preprocess, 1 thread: %.1f img/s", Double(blobs.count) / single))
        let batch = try median { _ = try p.tensor(files: preprocess) }
        print(String(format: "decode + preprocess, %d threads (files): %.1f img/s", availableCores, Double(blobs.count) / batch))
    }
}
