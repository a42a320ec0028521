import ArgumentParser
import CLIP
import CLIPCommandSupport
import CLIPKit
import CLIPTokenizer
import Foundation

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a model's architecture (inferred from its weights), size, storage and preprocessing.")

    @Argument(help: "A checkpoint file, a Hugging Face folder, hf-hub:ORG/NAME, or one of the nine OpenAI model names.")
    var model: String

    @Option(help: "An open_clip pretrained tag: the model is then an open_clip architecture.")
    var pretrained: String?

    @Option(help: "For hf-hub: models and open_clip tags, a branch, tag or commit (default: main).")
    var revision: String?

    @Option(help: "Where named models are cached (default: $CLIP_CACHE_DIR, else ~/.cache/clip).")
    var cacheDir: String?

    @Option(help: "An open_clip model config JSON for the checkpoint.")
    var openclipConfig: String?

    func run() throws {
        let pipeline = try CLIPPipeline.load(model, cacheDirectory: cacheDir, openCLIPConfig: openclipConfig, revision: revision, pretrained: pretrained)
        guard let loaded = pipeline.loaded else { return }  // a pipeline loaded by name always has its file
        let c = loaded.model.configuration
        print("path: \(loaded.path)")
        print("format: \(loaded.format.rawValue)")
        print("stored dtypes: \(loaded.storedDTypes.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.rawValue) (\($0.value) tensors)" }.joined(separator: ", "))")
        print("parameters: \(loaded.parameterCount)")
        print("embedding width: \(c.embedDim)")
        switch c.vision {
        case .transformer(let v):
            let pooling: String
            switch v.pooling {
            case .classToken: pooling = "class token"
            case .attention(let heads): pooling = "attention pooling (\(heads) heads)"
            case .attentionalPooler(let heads): pooling = "CoCa's attentional pooler (\(heads) heads), first query"
            case .average: pooling = "mean of the patch tokens, then ln_post"
            case .normalizedAverage: pooling = "ln_post of every token, then the mean of the patch tokens"
            }
            let rotary = v.rotary.map { ", rotary embedding (reference grid \($0.referenceGrid), offset \($0.offset), \($0.columnsFirst ? "columns" : "rows") first)" } ?? ""
            let timm = v.timmModel.map { " (\($0))" } ?? ""
            print("image tower: Vision Transformer\(timm), width \(v.width), \(v.layers) layers, \(v.heads) heads, patch \(v.patchSize)\(v.hasClassToken ? "" : ", no class token")\(v.variableGrid ? ", NaFlex (each image its own grid; the \(v.grid)×\(v.grid) position table resized to it)" : "")\(rotary), \(pooling)\(v.projectionBias ? ", projection with bias" : "")")
        case .resnet(let r):
            print("image tower: modified ResNet, stages \(r.layers), width \(r.width), attention pool \(r.heads) heads")
        case .convNeXt(let v):
            let head = switch v.head {
            case .linear(let bias): "a Linear\(bias ? " with bias" : "")"
            case .mlp(let hidden, _): "an MLP (\(hidden) hidden, GELU)"
            }
            print("image tower: ConvNeXt, stages \(v.depths), widths \(v.widths), \(v.kernel)×\(v.kernel) depthwise, mean pool, LayerNorm (eps \(v.layerNormEps)), \(head)")
        case .eva(let v):
            let mlp = switch v.mlp {
            case .gelu(let hidden): "GELU MLP (\(hidden) hidden)"
            case .swiGLU(let hidden, let normed): "SwiGLU (\(hidden) hidden\(normed ? ", sub-LN" : ""))"
            }
            let extras = [v.rotaryReferenceGrid.map { "rotary embedding (reference grid \($0))" }, v.attentionNorm ? "attention sub-LN" : nil,
                          v.postNorm ? "post-norm blocks" : nil].compactMap { $0 }
            print("image tower: EVA (\(v.timmModel ?? "timm")), width \(v.width), \(v.layers) layers, \(v.heads) heads, patch \(v.patchSize), \(mlp)\(extras.isEmpty ? "" : ", " + extras.joined(separator: ", ")), class token\(v.head ? " through timm's head" : "")")
        case .fastViT(let v):
            let mixers = v.attention.map { $0 ? "attention" : "RepMixer" }
            let norm = v.attentionNorm == .batchNorm ? "BatchNorm" : "LayerNorm"
            print("image tower: FastViT (\(v.timmModel ?? "timm")), stages \(v.depths), widths \(v.widths), token mixers \(mixers), attention after a \(norm), MLP widths \(v.mlpHidden), final width \(v.finalWidth), reparameterised at load, mean pool, timm's classifier as the projection")
        case .viTamin(let v):
            print("image tower: ViTamin (\(v.timmModel ?? "timm")), stem \(v.stemWidth), MbConv stages \(v.stageDepths), widths \(v.stageWidths) (expanded \(v.expandedWidths)), then width \(v.width), \(v.layers) layers, \(v.heads) heads, GeGLU MLP (\(v.mlpHidden) hidden), \(v.positionGrid.map { "positions for a \($0)×\($0) grid" } ?? "no positions"), mean pool, LayerNorm, a Linear\(v.projectionBias ? " with bias" : "")")
        }
        let kind = c.text.roberta.map { $0.bert ? "BERT, " : "Hugging Face RoBERTa, " } ?? (c.text.nllb != nil ? "NLLB-200's encoder, " : "")
        print("text tower: \(kind)width \(c.text.width), \(c.text.layers) layers, \(c.text.heads) heads, context \(c.text.contextLength), vocabulary \(c.text.vocabSize), \(c.text.causal ? "causal" : "bidirectional"), features at \(textPooling(c.text.pooling))")
        let tokenizer = pipeline.tokenizer is SentencePieceTokenizer ? "SentencePiece"
            : pipeline.tokenizer is XLMRobertaTokenizer ? "XLM-RoBERTa (SentencePiece unigram)"
            : pipeline.tokenizer is NLLBTokenizer ? "NLLB-200 (SentencePiece BPE)"
            : pipeline.tokenizer is WordPieceTokenizer ? "BERT WordPiece" : "byte-level BPE"
        print("tokenizer: \(tokenizer), \(pipeline.tokenizer.vocabularySize) ids")
        if case .transformer(let v) = c.vision {
            print("image activation: \(v.activation.rawValue), LayerNorm eps \(v.layerNormEps)")
        }
        print("text activation: \(c.text.activation.rawValue), LayerNorm eps \(c.text.layerNormEps)")
        print("preprocessing: \(loaded.preprocessing)")
        print(String(format: "logit scale: %.4f (exp: %.2f)", loaded.model.logitScale, exp(loaded.model.logitScale)))
        if c.objective == .sigmoid {
            print(String(format: "logit bias: %.4f; probabilities: sigmoid per label (SigLIP)", loaded.model.logitBias))
        }
    }
}

/// Where the text tower reads a text's features, in words.
private func textPooling(_ p: CLIPConfiguration.Text.Pooling) -> String {
    switch p {
    case .endOfText: return "the end-of-text token"
    case .last: return "the last position"
    case .appendedClassToken: return "an appended class token (CoCa), padding masked"
    case .token(let id): return "the first token \(id)"
    case .first: return "the first position"
    case .mean: return "the mean over the tokens that are not padding (Hugging Face RoBERTa tower)"
    }
}
