import CLIPTensor
import CLIPWeights

/// A cn_clip checkpoint (OFA-Sys Chinese-CLIP's own `.pt`: `{"state_dict": {"module.visual.…", "module.bert.…",
/// "module.text_projection", …}}`, the wrapper and prefix already removed by `TorchCheckpoint`) under the names the
/// towers read: OpenAI's image tower as it is, the BERT text tower (`bert.*`) as `text.transformer.*` for
/// `RobertaTextEncoder`, `text_projection` [width, embed] as its `text.proj` Linear [embed, width]. cn_clip drops the
/// BERT pooler when it loads (`bert.pooler.*`), and so does this. Tensors with no counterpart keep their name, so
/// loading reports them as unexpected.
package struct CNCLIPWeights: WeightSource {
    /// The underlying file's path.
    package let origin: String
    /// The tensors under the towers' names, in the underlying file's order.
    package var tensorInfos: [TensorInfo] { renamed.tensorInfos }
    private let renamed: RenamedTensors

    /// Whether `source` is laid out as cn_clip saves its models: a BERT under `bert.` beside OpenAI's image tower.
    package static func matches(_ source: any WeightSource) -> Bool {
        source.tensorInfos.contains { $0.name == "bert.embeddings.word_embeddings.weight" }
    }

    /// Maps the tensors of `base`.
    package init(_ base: any WeightSource) throws(WeightFileError) {
        origin = base.origin
        renamed = try RenamedTensors(base, skipping: { $0.hasPrefix("bert.pooler.") }) { (t, _) throws(WeightFileError) in
            let n = t.name
            if n.hasPrefix("bert.") { return ("text.transformer." + n.dropFirst("bert.".count), .rename(n), t.shape) }
            if n == "text_projection" {
                guard t.shape.count == 2 else {
                    throw WeightFileError(file: base.origin, .invalidEntry(tensor: n, message: "has shape \(t.shape), expected [width, embed]"))
                }
                return ("text.proj.weight", .transpose(n), [t.shape[1], t.shape[0]])
            }
            return (n, .rename(n), t.shape)
        }
    }

    package var readsConcurrently: Bool { renamed.base.readsConcurrently }

    package func floatTensor(_ name: String) throws(WeightFileError) -> Tensor { try renamed.floatTensor(name) }

    /// cn_clip's settings on the architecture the weights give: BERT's embeddings (padding id 0, positions from 0),
    /// LayerNorm ε 1e-12 (cn_clip's `BertConfig`), the features at `[CLS]`, its WordPiece vocabulary through its own
    /// tokenizer in BERT's rows of 52 tokens (cn_clip's `context_length`), fewer when the position table is shorter;
    /// and the image tower's heads: 64 wide, but 80 for its only 1,280-wide ViT (`ViT-H-14.json`'s
    /// `vision_head_width`), where the inferred 20 would divide the width too and be silently wrong.
    package static func configure(_ c: inout CLIPConfiguration) {
        if case .transformer(var v) = c.vision, v.width == 1_280 {
            v.heads = 16
            c.vision = .transformer(v)
        }
        guard c.text.roberta != nil else { return }
        c.text.readAsChineseCLIP(vocabulary: .cnCLIPWordPiece)
        c.text.layerNormEps = 1e-12
    }
}
