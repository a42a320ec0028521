/// NLLB-200's tokenizer (`facebook/nllb-200-distilled-600M` and `-1.3B`, the text side of NLLB-CLIP and NLLB-SigLIP),
/// encoding as open_clip's `HFTokenizer` does through Hugging Face's tokenizers library (transformers 5):
///
/// - open_clip's `whitespace` cleaning (ftfy-style fixing, HTML unescaping, whitespace collapsed; case kept);
/// - `<s>`, `<pad>`, `</s>`, `<unk>` and the 202 language codes written in the text are those tokens ("eng_Latn" is
///   256047 wherever it appears);
/// - between them, the model's precompiled normalization map as tokenizers applies it (XLM-RoBERTa's rules), then
///   runs of two or more spaces made one; `<mask>` in the normalized text is that token, taking the whitespace
///   before it;
/// - Metaspace with splitting: every space becomes `▁`, a `▁` goes first unless the text already starts with one,
///   and a piece starts at every `▁` (no split at other whitespace, nothing stripped at the ends);
/// - each piece by BPE: the adjacent pair whose union is the highest-scoring piece merged first (tokenizers' merges
///   ranked by the merged piece), runs of unknown characters as one `<unk>`;
/// - fairseq's ids: `<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3, the model's pieces from its id 3 on shifted up by one,
///   the language codes after them in fairseq's order, `<mask>` last.
///
/// Rows are the language code, the pieces, `</s>`, then `<pad>` (transformers' non-legacy layout; open_clip's towers
/// pool the language code's position); a text too long keeps its first `contextLength − 2` pieces.
public final class NLLBTokenizer: TextTokenizer {
    package let model: SentencePieceModel
    private let sentencePiece: SentencePieceTokenizer
    private let specials: [(bytes: [UInt8], id: Int)]
    private let maskID: Int
    /// The language code that starts every row.
    public let language: String
    private let languageID: Int

    /// `<s>` (not written in rows; the language code starts them).
    public static let beginning = 0
    /// The padding token, `<pad>`.
    public static let padding = 1
    /// The row's last token, `</s>`.
    public static let end = 2
    /// The unknown token, `<unk>`.
    public static let unknown = 3

    /// fairseq's 202 language codes, in their id order.
    public static let languageCodes: [String] = [
        "ace_Arab", "ace_Latn", "acm_Arab", "acq_Arab", "aeb_Arab", "afr_Latn", "ajp_Arab", "aka_Latn", "amh_Ethi",
        "apc_Arab", "arb_Arab", "ars_Arab", "ary_Arab", "arz_Arab", "asm_Beng", "ast_Latn", "awa_Deva", "ayr_Latn",
        "azb_Arab", "azj_Latn", "bak_Cyrl", "bam_Latn", "ban_Latn", "bel_Cyrl", "bem_Latn", "ben_Beng", "bho_Deva",
        "bjn_Arab", "bjn_Latn", "bod_Tibt", "bos_Latn", "bug_Latn", "bul_Cyrl", "cat_Latn", "ceb_Latn", "ces_Latn",
        "cjk_Latn", "ckb_Arab", "crh_Latn", "cym_Latn", "dan_Latn", "deu_Latn", "dik_Latn", "dyu_Latn", "dzo_Tibt",
        "ell_Grek", "eng_Latn", "epo_Latn", "est_Latn", "eus_Latn", "ewe_Latn", "fao_Latn", "pes_Arab", "fij_Latn",
        "fin_Latn", "fon_Latn", "fra_Latn", "fur_Latn", "fuv_Latn", "gla_Latn", "gle_Latn", "glg_Latn", "grn_Latn",
        "guj_Gujr", "hat_Latn", "hau_Latn", "heb_Hebr", "hin_Deva", "hne_Deva", "hrv_Latn", "hun_Latn", "hye_Armn",
        "ibo_Latn", "ilo_Latn", "ind_Latn", "isl_Latn", "ita_Latn", "jav_Latn", "jpn_Jpan", "kab_Latn", "kac_Latn",
        "kam_Latn", "kan_Knda", "kas_Arab", "kas_Deva", "kat_Geor", "knc_Arab", "knc_Latn", "kaz_Cyrl", "kbp_Latn",
        "kea_Latn", "khm_Khmr", "kik_Latn", "kin_Latn", "kir_Cyrl", "kmb_Latn", "kon_Latn", "kor_Hang", "kmr_Latn",
        "lao_Laoo", "lvs_Latn", "lij_Latn", "lim_Latn", "lin_Latn", "lit_Latn", "lmo_Latn", "ltg_Latn", "ltz_Latn",
        "lua_Latn", "lug_Latn", "luo_Latn", "lus_Latn", "mag_Deva", "mai_Deva", "mal_Mlym", "mar_Deva", "min_Latn",
        "mkd_Cyrl", "plt_Latn", "mlt_Latn", "mni_Beng", "khk_Cyrl", "mos_Latn", "mri_Latn", "zsm_Latn", "mya_Mymr",
        "nld_Latn", "nno_Latn", "nob_Latn", "npi_Deva", "nso_Latn", "nus_Latn", "nya_Latn", "oci_Latn", "gaz_Latn",
        "ory_Orya", "pag_Latn", "pan_Guru", "pap_Latn", "pol_Latn", "por_Latn", "prs_Arab", "pbt_Arab", "quy_Latn",
        "ron_Latn", "run_Latn", "rus_Cyrl", "sag_Latn", "san_Deva", "sat_Beng", "scn_Latn", "shn_Mymr", "sin_Sinh",
        "slk_Latn", "slv_Latn", "smo_Latn", "sna_Latn", "snd_Arab", "som_Latn", "sot_Latn", "spa_Latn", "als_Latn",
        "srd_Latn", "srp_Cyrl", "ssw_Latn", "sun_Latn", "swe_Latn", "swh_Latn", "szl_Latn", "tam_Taml", "tat_Cyrl",
        "tel_Telu", "tgk_Cyrl", "tgl_Latn", "tha_Thai", "tir_Ethi", "taq_Latn", "taq_Tfng", "tpi_Latn", "tsn_Latn",
        "tso_Latn", "tuk_Latn", "tum_Latn", "tur_Latn", "twi_Latn", "tzm_Tfng", "uig_Arab", "ukr_Cyrl", "umb_Latn",
        "urd_Arab", "uzn_Latn", "vec_Latn", "vie_Latn", "war_Latn", "wol_Latn", "xho_Latn", "ydd_Hebr", "yor_Latn",
        "yue_Hant", "zho_Hans", "zho_Hant", "zul_Latn"
    ]

    /// Ids: the four special tokens, the model's pieces after its first three, the language codes and `<mask>`.
    public var vocabularySize: Int { maskID + 1 }

    /// A tokenizer for `model` (fairseq's layout: a BPE model whose first pieces are `<unk>`, `<s>`, `</s>`), starting
    /// rows with `language` (one of `languageCodes`; open_clip's default is eng_Latn).
    package init(model: SentencePieceModel, language: String = "eng_Latn") throws(TokenizerError) {
        func refuse(_ why: String) -> TokenizerError { .malformedData(file: model.origin, line: 0, message: why) }
        guard model.kind == .bpe else { throw refuse("an NLLB tokenizer needs a BPE model; this one is unigram") }
        guard model.pieces.count >= 4, model.unknownID == 0,
              model.pieces[1].type == .control, model.pieces[2].type == .control else {
            throw refuse("an NLLB model starts with the pieces <unk>, <s>, </s> (fairseq's layout); this one does not")
        }
        guard !model.byteFallback, !model.pieces.contains(where: { $0.type == .userDefined || $0.type == .unused }) else {
            throw refuse("byte fallback, user-defined and unused pieces are not part of NLLB tokenizers and are not implemented for them")
        }
        guard let code = Self.languageCodes.firstIndex(of: language) else {
            throw TokenizerError.unknownLanguage(language)
        }
        self.model = model
        sentencePiece = try SentencePieceTokenizer(model: model, cleaning: .whitespace)
        let first = model.pieces.count + 1
        (self.language, languageID, maskID) = (language, first + code, first + Self.languageCodes.count)
        // Matched in the raw text; `<mask>` is matched after normalization (`encodeSegment`).
        var specials: [([UInt8], Int)] = [(Array("<s>".utf8), 0), (Array("<pad>".utf8), 1), (Array("</s>".utf8), 2),
                                          (Array("<unk>".utf8), 3)]
        for (k, c) in Self.languageCodes.enumerated() { specials.append((Array(c.utf8), first + k)) }
        self.specials = specials.map { (bytes: $0.0, id: $0.1) }
    }

    /// Reads `sentencepiece.bpe.model`.
    public convenience init(contentsOf path: String, language: String = "eng_Latn") throws(TokenizerError) {
        try self.init(model: SentencePieceModel(contentsOf: path), language: language)
    }

    /// One row of `contextLength` ids per text: the language code, the cleaned text's pieces, `</s>`, `<pad>` to the
    /// end. A text of more than `contextLength − 2` pieces keeps its first ones when `truncate` (as the reference
    /// truncates), else is an error naming it.
    public func tokenize(_ texts: [String], contextLength: Int, truncate: Bool) throws(TokenizerError) -> [[Int]] {
        try paddedRows(texts, contextLength: contextLength, truncate: truncate, start: [languageID], end: Self.end,
                       padding: Self.padding) { (text) throws(TokenizerError) in try encode(cleanedText(text)) }
    }

    /// The text after open_clip's `whitespace` cleaning.
    public func cleanedText(_ text: String) -> String { sentencePiece.cleanedText(text) }

    /// The same tokenizer starting rows with another of the 202 language codes, as transformers' `NllbTokenizer` does
    /// when its `src_lang` is set. (open_clip's `HFTokenizer.set_language` has no effect with transformers 4 or 5,
    /// which switches back to `src_lang` on every call: open_clip's rows all start with eng_Latn.)
    public func withLanguage(_ code: String) throws(TokenizerError) -> NLLBTokenizer {
        try NLLBTokenizer(model: model, language: code)
    }

    /// The ids of `text` without the language code and `</s>` (tokenizers' `encode(text, add_special_tokens=False)`).
    public func encode(_ text: String) throws(TokenizerError) -> [Int] {
        try encodingSpecialTokens(text, specials) { (bytes) throws(TokenizerError) in try encodeSegment(bytes) }
    }

    /// Text between the special tokens written in it: normalized (Precompiled, then runs of spaces made one: the map
    /// makes them, as ¨ → " ̈"), split at `<mask>`, which tokenizers matches in the normalized text, taking the
    /// whitespace before it; each part's `▁`-led pieces by BPE.
    private func encodeSegment(_ bytes: ArraySlice<UInt8>) throws(TokenizerError) -> [Int] {
        guard !bytes.isEmpty else { return [] }
        var text: [Unicode.Scalar] = []
        for c in try sentencePiece.precompiledGraphemes(String(decoding: bytes, as: UTF8.self))
        where !(c == " " && text.last == " ") {
            text.append(c)
        }
        var ids: [Int] = []
        var start = 0, i = 0
        while i + Self.mask.count <= text.count {
            guard text[i..<(i + Self.mask.count)].elementsEqual(Self.mask) else {
                i += 1
                continue
            }
            var end = i
            while end > start, text[end - 1].properties.isWhitespace { end -= 1 }
            ids += metaspacePieces(text[start..<end])
            ids.append(maskID)
            i += Self.mask.count
            start = i
        }
        ids += metaspacePieces(text[start...])
        return ids
    }

    /// Metaspace with splitting: every space a `▁`, one first unless the text starts with one, a new piece before
    /// every `▁`; each piece's ids.
    private func metaspacePieces(_ text: ArraySlice<Unicode.Scalar>) -> [Int] {
        guard let first = text.first else { return [] }
        var ids: [Int] = []
        var piece = String.UnicodeScalarView()
        if first != " " && first != Self.metaspace { piece.append(Self.metaspace) }
        for c in text {
            let d = c == " " ? Self.metaspace : c
            if d == Self.metaspace && !piece.isEmpty {
                ids += pieceIDs(Array(String(piece).utf8))
                piece = String.UnicodeScalarView()
            }
            piece.append(d)
        }
        if !piece.isEmpty { ids += pieceIDs(Array(String(piece).utf8)) }
        return ids
    }

    /// One pre-token's ids in fairseq's layout, consecutive unknown characters fused into one `<unk>` (tokenizers'
    /// `fuse_unk`, which works within a pre-token).
    private func pieceIDs(_ bytes: [UInt8]) -> [Int] {
        var ids: [Int] = []
        for (id, _) in sentencePiece.bytePairPieces(bytes) {
            let shifted = id == model.unknownID ? Self.unknown : id + 1
            if !(shifted == Self.unknown && ids.last == Self.unknown) { ids.append(shifted) }
        }
        return ids
    }

    private static let metaspace: Unicode.Scalar = "\u{2581}"
    private static let mask = Array("<mask>".unicodeScalars)
}
