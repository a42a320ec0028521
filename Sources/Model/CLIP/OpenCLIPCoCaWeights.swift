import CLIPTensor
import CLIPWeights

/// An open_clip CoCa checkpoint (`coca_ViT-B-32`, `coca_ViT-L-14`) under the names `TextTransformer` reads: CoCa
/// builds its text tower as a submodule, so `text.token_embedding.weight` … `text.text_projection` lose their
/// `text.` prefix. The caption decoder (`text_decoder.*`) takes no part in the embeddings and is left out; image
/// tensors keep their names, as do tensors with no counterpart (so loading reports them as unexpected).
package struct OpenCLIPCoCaWeights: WeightSource {
    /// The underlying file's path.
    package let origin: String
    /// The tensors under the towers' names, in the underlying file's order.
    package var tensorInfos: [TensorInfo] { renamed.tensorInfos }
    private let renamed: RenamedTensors

    /// Whether `source` is laid out as open_clip's CoCa models are (a text tower under `text.` with an appended
    /// class token).
    package static func matches(_ source: any WeightSource) -> Bool {
        source.tensorInfos.contains { $0.name == "text.cls_emb" }
    }

    /// Maps the tensors of `base`.
    package init(_ base: any WeightSource) throws(WeightFileError) {
        origin = base.origin
        renamed = try RenamedTensors(base, skipping: { $0.hasPrefix("text_decoder.") }) { (t, _) throws(WeightFileError) in
            let n = t.name
            return (n.hasPrefix("text.") ? String(n.dropFirst(5)) : n, .rename(n), t.shape)
        }
    }

    package var readsConcurrently: Bool { renamed.base.readsConcurrently }

    package func floatTensor(_ name: String) throws(WeightFileError) -> Tensor { try renamed.floatTensor(name) }
}
