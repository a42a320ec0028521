import CLIPTestSupport
import Foundation
import Testing

/// An NLLB-CLIP model in open_clip's Hub layout (the scaled-down fixture, its config and the NLLB test tokenizer).
private func nllbFolder() throws -> String {
    let dir = NSTemporaryDirectory() + "clip-nllb-\(getpid())-\(UUID().uuidString)"
    try? FileManager.default.removeItem(atPath: dir)
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let fixtures = testsDirectory.appendingPathComponent("CLIPTests/Fixtures/nllb").path
    let tokenizer = testsDirectory.appendingPathComponent("CLIPTokenizerTests/Fixtures/sentencepiece/nllb/sentencepiece.bpe.model").path
    for (from, to) in [("\(fixtures)/nllb-clip-base.safetensors", "open_clip_model.safetensors"),
                       ("\(fixtures)/nllb-clip-base.json", "open_clip_config.json"), (tokenizer, "sentencepiece.bpe.model")] {
        try FileManager.default.copyItem(atPath: from, toPath: "\(dir)/\(to)")
    }
    return dir
}

private func textEmbedding(_ output: String) throws -> [Double] {
    let object = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
    return try #require((object["text_embeddings"] as? [[Double]])?.first)
}

@Test("--text-language starts an NLLB model's rows with another code: other embeddings; refused for other models")
func textLanguageForNLLB() throws {
    let dir = try nllbFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let model = "\(dir)/open_clip_model.safetensors", config = "\(dir)/open_clip_config.json"
    let english = try runClip(["embed", "--model", model, "--openclip-config", config, "--text", "un chat"], environment: ["CLIP_WEIGHT_CACHE": "off"])
    let alsoEnglish = try runClip(["embed", "--model", model, "--openclip-config", config, "--text", "un chat", "--text-language", "eng_Latn"],
                                  environment: ["CLIP_WEIGHT_CACHE": "off"])
    let french = try runClip(["embed", "--model", model, "--openclip-config", config, "--text", "un chat", "--text-language", "fra_Latn"],
                             environment: ["CLIP_WEIGHT_CACHE": "off"])
    #expect(english.status == 0 && french.status == 0 && alsoEnglish.status == 0, "\(english.stderr) \(french.stderr)")
    #expect(try textEmbedding(english.stdout) == textEmbedding(alsoEnglish.stdout))
    let (e, f) = (try textEmbedding(english.stdout), try textEmbedding(french.stdout))
    let cosine = zip(e, f).map { $0 * $1 }.reduce(0, +)
    #expect(e.count == 48 && cosine < 0.9999, "cosine \(cosine)")

    let unknown = try runClip(["embed", "--model", model, "--openclip-config", config, "--text", "x", "--text-language", "French"])
    #expect(unknown.status != 0 && unknown.stderr.contains("'French' is not one of NLLB's 202 language codes"), "\(unknown.stderr)")
    let notNLLB = try runClip(["embed", "--text", "a red star", "--text-language", "fra_Latn"])
    #expect(notNLLB.status != 0 && notNLLB.stderr.contains("has no language codes"), "\(notNLLB.stderr)")
}

@Test("--text-language with a job that loads the image tower alone: classify and embed --image still run; refused for models without codes")
func textLanguageWithImageOnlyLoads() throws {
    let dir = try nllbFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let model = "\(dir)/open_clip_model.safetensors", config = "\(dir)/open_clip_config.json"
    let image = testsDirectory.deletingLastPathComponent().appendingPathComponent("Examples/blue-star.png").path
    let cache = ["CLIP_WEIGHT_CACHE": dir + "/cache"]
    let classify = try runClip(["classify", "--model", model, "--openclip-config", config, "--text-language", "fra_Latn",
                                image, "--labels", "une étoile", "un chat"], environment: cache)
    #expect(classify.status == 0 && classify.stdout.contains("une étoile"), "\(classify.stderr)")
    let embed = try runClip(["embed", "--model", model, "--openclip-config", config, "--text-language", "fra_Latn", "--image", image],
                            environment: cache)
    #expect(embed.status == 0, "\(embed.stderr)")
    let notNLLB = try runClip(["classify", image, "--labels", "a", "b", "--text-language", "fra_Latn"], environment: cache)
    #expect(notNLLB.status != 0 && notNLLB.stderr.contains("has no language codes"), "\(notNLLB.stderr)")
}
