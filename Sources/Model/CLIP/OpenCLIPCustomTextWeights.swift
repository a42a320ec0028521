import CLIPTensor
import CLIPWeights

/// An open_clip checkpoint whose CLIP text tower is a submodule (`custom_text`: EVA's `EVA01-*` and `EVA02-*`, CoCa's
/// `coca_ViT-*`) under the names `TextTransformer` reads: `text.token_embedding.weight` … `text.text_projection` lose
/// their `text.` prefix. CoCa's caption decoder (`text_decoder.*`) takes no part in the embeddings and is left out;
/// image tensors keep their names, as do tensors with no counterpart (so loading reports them as unexpected).
package struct OpenCLIPCustomTextWeights: WeightSource {
    /// The underlying file's path.
    package let origin: String
    /// The tensors under the towers' names, in the underlying file's order.
    package var tensorInfos: [TensorInfo] { renamed.tensorInfos }
    private let renamed: RenamedTensors

    /// Whether `source` is laid out so: CLIP's text tower under `text.` (CoCa's with its appended class token).
    package static func matches(_ source: any WeightSource) -> Bool {
        source.tensorInfos.contains { $0.name == "text.cls_emb" || $0.name == "text.token_embedding.weight" }
    }

    /// Maps the tensors of `base`.
    package init(_ base: any WeightSource) throws(WeightFileError) {
        origin = base.origin
        // Only a CoCa checkpoint (its text tower has the appended class token) has a decoder to leave out.
        let isCoCa = base.tensorInfos.contains { $0.name == "text.cls_emb" }
        renamed = try RenamedTensors(base, skipping: { isCoCa && $0.hasPrefix("text_decoder.") }) { (t, _) throws(WeightFileError) in
            let n = t.name
            return (n.hasPrefix("text.") ? String(n.dropFirst(5)) : n, .rename(n), t.shape)
        }
    }

    package var readsConcurrently: Bool { renamed.base.readsConcurrently }

    package func floatTensor(_ name: String) throws(WeightFileError) -> Tensor { try renamed.floatTensor(name) }
}
