import CLIP
import CLIPImage
import CLIPTokenizer
import CLIPWeights

/// A model with what is needed to use it: its preprocessing, and where its tokenizer files are if it has its own
/// (`tokenizer()` builds the tokenizer). What `clip.load` returns in Python, plus where it came from.
public struct LoadedModel: Sendable {
    /// The model itself.
    public let model: CLIPModel
    /// How its images must be prepared.
    public let preprocessing: Preprocessing
    /// The file format the weights were read from.
    public let format: WeightFormat
    /// The file or folder the weights were read from.
    public let path: String
    /// Stored element types and how many tensors use each.
    public let storedDTypes: [DType: Int]
    /// Number of parameters as PyTorch counts them (BatchNorm running statistics excluded).
    public let parameterCount: Int
    /// The SHA-256 of the checkpoint file, when a load through a packed-weight cache knew it (remembered per file:
    /// no second read); what keys anything derived from these weights alone, such as cached label embeddings.
    public internal(set) var checkpointDigest: String? = nil
    /// A Hugging Face folder's own tokenizer files (`vocab.json` + `merges.txt` or `tokenizer.json` for BPE,
    /// `spiece.model` for SigLIP), when present.
    public let tokenizerFolder: String?

    /// The names SentencePiece model files have: SigLIP's T5-style vocabularies as `spiece.model`, SigLIP 2's Gemma
    /// vocabulary as `tokenizer.model`, XLM-RoBERTa's as `sentencepiece.bpe.model`.
    public static let sentencePieceFiles = ["spiece.model", "tokenizer.model", xlmRobertaFile]

    /// The SentencePiece model of XLM-RoBERTa tokenizers (MetaCLIP 2's XLM-V vocabulary).
    public static let xlmRobertaFile = "sentencepiece.bpe.model"

    /// BERT's WordPiece vocabulary (CLIPA's `bert-base-uncased`).
    public static let wordPieceFile = "vocab.txt"

    /// The same model with its tokenizer files in `folder` (a Hub download keeps them apart from the weights).
    public func withTokenizerFolder(_ folder: String?) -> LoadedModel {
        var copy = LoadedModel(model: model, preprocessing: preprocessing, format: format, path: path,
                               storedDTypes: storedDTypes, parameterCount: parameterCount, tokenizerFolder: folder)
        copy.checkpointDigest = checkpointDigest
        return copy
    }
}

/// An open_clip config: a model config JSON (`ViT-B-32.json`, or a Hub repository's `open_clip_config.json`
/// wrapping one with its `preprocess_cfg`) as a file, or as JSON in memory with the name errors give it.
public struct OpenCLIPConfig: Sendable, Equatable {
    enum Source: Sendable, Equatable {
        case file(String)
        case bytes([UInt8], origin: String)
        case value(JSONValue, origin: String)
    }
    let source: Source

    /// The config in the JSON file at `path`.
    public static func file(_ path: String) -> OpenCLIPConfig { OpenCLIPConfig(source: .file(path)) }

    /// The config in `bytes` of JSON; `origin` is the name errors give it.
    public static func json(_ bytes: [UInt8], origin: String) -> OpenCLIPConfig {
        OpenCLIPConfig(source: .bytes(bytes, origin: origin))
    }

    /// A config already parsed (open_clip's built-in table).
    package static func value(_ value: JSONValue, origin: String) -> OpenCLIPConfig {
        OpenCLIPConfig(source: .value(value, origin: origin))
    }

    /// The name errors give the config: its path, or the name it was given.
    public var origin: String {
        switch source {
        case .file(let path): path
        case .bytes(_, let origin), .value(_, let origin): origin
        }
    }

    /// The whole config as read, for tests.
    package func document() throws(ModelLoadError) -> [String: JSONValue] {
        switch source {
        case .file(let path): return try ConfigReader.read(path)
        case .bytes(let bytes, let origin): return try ConfigReader.parse(bytes, origin: origin)
        case .value(let value, let origin):
            guard let object = value.object else { throw .architecture("not a JSON object", origin: origin) }
            return object
        }
    }
}
