#!/usr/bin/env python3
"""SentencePiece models and the `sentencepiece` library's ids for the tokenizer corpora.

SigLIP's own `spiece.model` is on the Hugging Face Hub, which this machine cannot reach, so the models here are
trained by the `sentencepiece` trainer itself on the repository's documents and the CLIP tokenizer's golden
captions, in the two configurations SigLIP-family tokenizers use:

  unigram_nfkc.model   T5/SigLIP style: nmt_nfkc precompiled normalization, dummy prefix, extra whitespace
                       removed, unknown characters (coverage 0.995) as <unk>, two user-defined symbols
  unigram_bytes.model  Gemma/SigLIP 2 style: identity normalization, no dummy prefix, whitespace kept, byte
                       fallback, digits split

The strings are the CLIP tokenizer's corpora (Tests/CLIPTokenizerTests/Fixtures/golden.jsonl and fuzz.jsonl,
12,142 strings: scripts, emoji, entities, mojibake, controls, whitespace runs). Written to
Tests/CLIPTokenizerTests/Fixtures/sentencepiece/:

  MODEL.model           the model file
  MODEL.ids.jsonl       per corpus line (golden then fuzz): SentencePieceProcessor.encode(text)
  siglip_rows.jsonl     per corpus line, with unigram_nfkc.model: the SigLIP row of 16 ids as open_clip builds it
                        (canonicalize_text(basic_clean(text)), encode, </s>, truncated to 15 pieces + </s>,
                        padded with </s>)

Also the seeds of the `sentencepiece` fuzz target (Tests/Fuzz/Corpus/sentencepiece): unigram_bytes.model and a
small model whose normalization is a handful of custom rules, so its precompiled map stays a few hundred bytes.

Needs: sentencepiece, open_clip_torch (for its cleaning functions), ftfy.
"""
import glob
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
    lines = []
    for path in sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")) + glob.glob(os.path.join(ROOT, "*.md"))):
        with open(path, encoding="utf-8") as f:
            lines += [l.strip() for l in f if l.strip()]
    with open(os.path.join(CORPORA, "golden.jsonl"), encoding="utf-8") as f:
        lines += [json.loads(l)["text"].replace("\n", " ") for l in f]
    return lines


def train(name, **options):
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(training_text()), model_writer=model, model_type="unigram",
                                   minloglevel=2, num_threads=1, **options)
    with open(os.path.join(OUT, name + ".model"), "wb") as f:
        f.write(model.getvalue())
    return spm.SentencePieceProcessor(model_proto=model.getvalue())


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
                                   vocab_size=150, normalization_rule_tsv=rules, minloglevel=2, num_threads=1,
                                   user_defined_symbols=["<img>"])
    os.remove(rules)
    with open(os.path.join(seeds, "rules.model"), "wb") as f:
        f.write(model.getvalue())


if __name__ == "__main__":
    main()
