#!/usr/bin/env python3
"""SentencePiece models and the `sentencepiece` library's ids for the tokenizer corpora.

SigLIP's own `spiece.model` is on the Hugging Face Hub, which this machine cannot reach, so the models here are
trained by the `sentencepiece` trainer itself on fixed text (the CLIP tokenizer's golden captions and its BPE merges
read as words), in the configurations SigLIP-family tokenizers use:

  unigram_nfkc.model   T5/SigLIP style: nmt_nfkc precompiled normalization, dummy prefix, extra whitespace
                       removed, unknown characters (coverage 0.995) as <unk>, two user-defined symbols
  unigram_bytes.model  identity normalization, no dummy prefix, whitespace kept, byte fallback, digits split
  bpe_bytes.model      Gemma/SigLIP 2 style: a BPE model with those same settings
  bpe_unused.model     BPE with nmt_nfkc, a user-defined symbol, and 12 merged pieces marked unused (split back)
  unigram_unused.model unigram_nfkc.model with 12 pieces marked unused (never chosen)

The strings are the CLIP tokenizer's corpora (Tests/CLIPTokenizerTests/Fixtures/golden.jsonl and fuzz.jsonl,
12,142 strings: scripts, emoji, entities, mojibake, controls, whitespace runs). Written to
Tests/CLIPTokenizerTests/Fixtures/sentencepiece/:

  MODEL.model           the model file
  MODEL.ids.jsonl       per corpus line (golden then fuzz): SentencePieceProcessor.encode(text)
  siglip_rows.jsonl     per corpus line, with unigram_nfkc.model: the SigLIP row of 16 ids as open_clip builds it
                        (canonicalize_text(basic_clean(text)), encode, </s>, truncated to 15 pieces + </s>,
                        padded with </s>)
  siglip2_rows.jsonl    the same with bpe_bytes.model (Gemma's ids: <pad> 0, <eos> 1) as open_clip builds SigLIP 2's
                        rows: <eos> at the end, padded with <pad>
  xlmr/                 an XLM-RoBERTa tokenizer (MetaCLIP 2's kind) and open_clip's ids and rows for it (see
                        xlm_roberta below)

Also the seeds of the `sentencepiece` fuzz target (Tests/Fuzz/Corpus/sentencepiece): unigram_bytes.model and a
small model whose normalization is a handful of custom rules, so its precompiled map stays a few hundred bytes.

Needs: sentencepiece, open_clip_torch (for its cleaning functions), ftfy.
"""
import io
import json
import os

import sentencepiece as spm
from open_clip.tokenizer import basic_clean, canonicalize_text

ROOT = os.path.join(os.path.dirname(__file__), "..")
CORPORA = os.path.join(ROOT, "Tests", "CLIPTokenizerTests", "Fixtures")
OUT = os.path.join(CORPORA, "sentencepiece")
CONTEXT = 16


def corpus():
    texts = []
    for name in ("golden.jsonl", "fuzz.jsonl"):
        with open(os.path.join(CORPORA, name), encoding="utf-8") as f:
            texts += [json.loads(line)["text"] for line in f]
    return texts


def training_text():
    """Fixed text, so regenerating writes the same models: the golden captions and CLIP's BPE merges read as words
    (a fact file of the reference that never changes)."""
    lines = []
    with open(os.path.join(CORPORA, "golden.jsonl"), encoding="utf-8") as f:
        lines += [json.loads(l)["text"].replace("\n", " ") for l in f]
    merges = os.path.join(ROOT, "Sources", "CLIPTokenizer", "Resources", "bpe_merges.txt")
    with open(merges, encoding="utf-8") as f:
        words = [l.strip().replace(" ", "").replace("</w>", "") for l in f if l.strip() and not l.startswith("#version")]
    lines += [" ".join(words[i:i + 12]) for i in range(0, len(words), 12)]
    return lines


def train(name, model_type="unigram", **options):
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(training_text()), model_writer=model, model_type=model_type,
                                   minloglevel=2, num_threads=1, **options)
    with open(os.path.join(OUT, name + ".model"), "wb") as f:
        f.write(model.getvalue())
    return spm.SentencePieceProcessor(model_proto=model.getvalue())


def with_unused(name, sp):
    """The model with 12 multi-character normal pieces (every 97th from id 300) marked UNUSED."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    proto.ParseFromString(sp.serialized_model_proto())
    marked = 0
    for i in range(300, len(proto.pieces), 97):
        p = proto.pieces[i]
        if p.type == pb.ModelProto.SentencePiece.NORMAL and len(p.piece) > 1 and marked < 12:
            p.type = pb.ModelProto.SentencePiece.UNUSED
            marked += 1
    data = proto.SerializeToString()
    with open(os.path.join(OUT, name + ".model"), "wb") as f:
        f.write(data)
    return spm.SentencePieceProcessor(model_proto=data)


# Strings for the XLM-RoBERTa tokenizer's own rules, after the corpus: special tokens written in the text, `▁`
# inside and at the ends of words, a fullwidth `<s>` that normalizes to the special token's spelling, graphemes
# under 6 bytes whose first character alone has a rule, and a 6-byte grapheme that is normalized per character.
XLMR_EXTRA = ["x <s> y </s>", "<mask>zz <pad><unk>", "a\u2581b\u2581", "\u2581\u2581lead", "\uff1cs\uff1e fullwidth",
              "e\u0301 \ufb01\u0301 x", "\uff76\uff9e", "tab\tand\u3000ideographic\u00a0nbsp", "<s", "</s>"]


def xlm_roberta(texts):
    """MetaCLIP 2's tokenizer kind: a unigram model in fairseq's layout (<unk> 0, <s> 1, </s> 2) saved as
    xlmr/sentencepiece.bpe.model, loaded by open_clip's HFTokenizer through transformers' AutoTokenizer as
    XLMRobertaTokenizer (tokenizers' Unigram, fairseq's ids):

      xlmr/ids.jsonl    per corpus line and XLMR_EXTRA string: the ids of the cleaned text without <s> and </s>
      xlmr/rows.jsonl   the same strings as open_clip's rows of 16 (<s> … </s>, <pad>, truncated)
    """
    from open_clip.tokenizer import HFTokenizer

    folder = os.path.join(OUT, "xlmr")
    os.makedirs(folder, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(training_text()), model_writer=model, model_type="unigram",
                                   vocab_size=3000, normalization_rule_name="nmt_nfkc", character_coverage=0.995,
                                   minloglevel=2, num_threads=1)
    with open(os.path.join(folder, "sentencepiece.bpe.model"), "wb") as f:
        f.write(model.getvalue())
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "XLMRobertaTokenizer"}, f)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"model_type": "xlm-roberta"}, f)
    tokenizer = HFTokenizer(folder, context_length=CONTEXT, clean="whitespace")
    strings = texts + XLMR_EXTRA
    with open(os.path.join(folder, "ids.jsonl"), "w", encoding="utf-8") as f:
        for t in strings:
            f.write(json.dumps(tokenizer.tokenizer(tokenizer.clean_fn(t), add_special_tokens=False).input_ids) + "\n")
    with open(os.path.join(folder, "rows.jsonl"), "w", encoding="utf-8") as f:
        for t in strings:
            f.write(json.dumps(tokenizer([t])[0].tolist()) + "\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    texts = corpus()
    models = {
        "unigram_nfkc": train("unigram_nfkc", vocab_size=3000, normalization_rule_name="nmt_nfkc",
                              character_coverage=0.995, user_defined_symbols=["<img>", "c++"],
                              pad_id=3, unk_id=0, eos_id=1, bos_id=2),
        "unigram_bytes": train("unigram_bytes", vocab_size=2000, normalization_rule_name="identity",
                               add_dummy_prefix=False, remove_extra_whitespaces=False, byte_fallback=True,
                               split_digits=True, character_coverage=0.995),
    }
    models["bpe_bytes"] = train("bpe_bytes", model_type="bpe", vocab_size=2000, normalization_rule_name="identity",
                                add_dummy_prefix=False, remove_extra_whitespaces=False, byte_fallback=True,
                                split_digits=True, character_coverage=0.995, pad_id=0, eos_id=1, bos_id=2, unk_id=3)
    models["bpe_unused"] = with_unused("bpe_unused", train("bpe_unused_base", model_type="bpe", vocab_size=3000,
                                       normalization_rule_name="nmt_nfkc", character_coverage=0.995,
                                       user_defined_symbols=["<img>"]))
    models["unigram_unused"] = with_unused("unigram_unused", models["unigram_nfkc"])
    os.remove(os.path.join(OUT, "bpe_unused_base.model"))
    for name, sp in models.items():
        with open(os.path.join(OUT, name + ".ids.jsonl"), "w", encoding="utf-8") as f:
            for t in texts:
                f.write(json.dumps(sp.encode(t)) + "\n")
    sp = models["unigram_nfkc"]
    eos = sp.eos_id()
    with open(os.path.join(OUT, "siglip_rows.jsonl"), "w", encoding="utf-8") as f:
        for t in texts:
            ids = sp.encode(canonicalize_text(basic_clean(t)))[: CONTEXT - 1] + [eos]
            f.write(json.dumps(ids + [eos] * (CONTEXT - len(ids))) + "\n")
    sp2 = models["bpe_bytes"]
    with open(os.path.join(OUT, "siglip2_rows.jsonl"), "w", encoding="utf-8") as f:
        for t in texts:
            ids = sp2.encode(canonicalize_text(basic_clean(t)))[: CONTEXT - 1] + [sp2.eos_id()]
            f.write(json.dumps(ids + [sp2.pad_id()] * (CONTEXT - len(ids))) + "\n")
    xlm_roberta(texts)
    print(len(texts), "strings;", {n: sp.get_piece_size() for n, sp in models.items()})
    seeds = os.path.join(ROOT, "Tests", "Fuzz", "Corpus", "sentencepiece")
    os.makedirs(seeds, exist_ok=True)
    with open(os.path.join(OUT, "unigram_bytes.model"), "rb") as f, open(os.path.join(seeds, "bytes.model"), "wb") as g:
        g.write(f.read())
    rules = os.path.join(OUT, "rules.tsv")
    with open(rules, "w") as f:
        # source code points → target code points: fullwidth A, the fi ligature, an ideographic space, a removed
        # zero-width space, a two-character source.
        f.write("FF21\t41\nFB01\t66 69\n3000\t20\n200B\t\n41 42\t78\n")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(training_text()[:300]), model_writer=model, model_type="unigram",
                                   vocab_size=100, normalization_rule_tsv=rules, minloglevel=2, num_threads=1,
                                   user_defined_symbols=["<img>"])
    with open(os.path.join(seeds, "rules.model"), "wb") as f:
        f.write(model.getvalue())
    # The same without user-defined symbols: fairseq's layout, so the target also runs it as XLM-RoBERTa's.
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(training_text()[:300]), model_writer=model, model_type="unigram",
                                   vocab_size=100, normalization_rule_tsv=rules, minloglevel=2, num_threads=1)
    os.remove(rules)
    with open(os.path.join(seeds, "xlmr.model"), "wb") as f:
        f.write(model.getvalue())


if __name__ == "__main__":
    main()
