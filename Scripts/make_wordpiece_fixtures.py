#!/usr/bin/env python3
"""BERT's WordPiece tokenizer as open_clip runs it for CLIPA (`hf_tokenizer_name: bert-base-uncased`, through
transformers' AutoTokenizer and Hugging Face tokenizers): the character classes it uses, and a test vocabulary with
open_clip's ids for the tokenizer corpora.

1. Sources/CLIPTokenizer/Resources/bert_classes.txt: the classes of tokenizers' BertNormalizer and BertPreTokenizer,
   found by running them on every code point (they come from the `unicode_categories` crate, whose tables are
   older than the Unicode version Swift knows, so newer characters fall in different classes):
     R  removed by clean_text (NUL, U+FFFD, and "other" characters: Cc, Cf, Cn, Co, Cs in that crate)
     W  turned into a space by clean_text (\\t, \\n, \\r, Unicode White_Space)
     M  removed by strip_accents after NFD (a nonspacing mark, Mn)
     P  split off as a word of its own by BertPreTokenizer (ASCII or Unicode punctuation)
   One range per line: CLASS FIRST LAST (hex).

2. Tests/CLIPTokenizerTests/Fixtures/wordpiece/: vocab.txt, a lower-casing WordPiece vocabulary of 3,000 entries
   trained by tokenizers on fixed text ([PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4), with
     ids.jsonl   per corpus line (the CLIP tokenizer's golden and fuzz corpora) and WORDPIECE_EXTRA string: the ids
                 of open_clip's cleaned text without [CLS] and [SEP]
     rows.jsonl  the same strings as open_clip's CLIPA rows of 16: HFTokenizer(strip_sep_token=True) — [CLS] …,
                 [SEP] replaced by 0, [PAD] (0), truncated

Needs: tokenizers, transformers, open_clip_torch (the reference venv).
"""
import json
import os
import sys

import tokenizers
from tokenizers import BertWordPieceTokenizer
from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer

ROOT = os.path.join(os.path.dirname(__file__), "..")
RESOURCE = os.path.join(ROOT, "Sources", "CLIPTokenizer", "Resources", "bert_classes.txt")
OUT = os.path.join(ROOT, "Tests", "CLIPTokenizerTests", "Fixtures", "wordpiece")
CONTEXT = 16
sys.path.insert(0, os.path.dirname(__file__))
from make_sentencepiece_fixtures import corpus, training_text  # noqa: E402

# After the corpus: special tokens in the text (matched case-sensitively, before lower-casing), accents, CJK, a word
# over 100 characters, punctuation inside words, characters Unicode assigned after the crate's tables.
WORDPIECE_EXTRA = ["x [CLS] y [SEP]", "[mask] [MASK]z [PAD][UNK]", "Héllo wörld ÅNGSTRÖM", "日本語のテキスト 中文",
                   "x" * 101, "x" * 100, "don't-stop e.g. U.S.A.", "\U0001F970 \U0001FAE8 face \u0e3f\u20c0", "İstanbul ǅ ß",
                   "tab\tnew\nline\u00a0nbsp\u200bzero\u2028sep"]


def ranges(values):
    out = []
    for v in values:
        if out and out[-1][1] == v - 1:
            out[-1][1] = v
        else:
            out.append([v, v])
    return out


def classes():
    clean = BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=False, lowercase=False)
    strip = BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=True, lowercase=False)
    pre = BertPreTokenizer()
    found = {"R": [], "W": [], "M": [], "P": []}
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        cleaned = clean.normalize_str(c)
        if cleaned == "":
            found["R"].append(cp)
        elif cleaned == " ":
            found["W"].append(cp)
        if strip.normalize_str(c) == "":
            found["M"].append(cp)
        if len(pre.pre_tokenize_str("a" + c + "a")) == 3:
            found["P"].append(cp)
    with open(RESOURCE, "w") as f:
        f.write(f"# tokenizers {tokenizers.__version__}: BertNormalizer and BertPreTokenizer classes (make_wordpiece_fixtures.py)\n")
        for name, values in found.items():
            for a, b in ranges(values):
                f.write(f"{name} {a:X} {b:X}\n")
    print({k: len(ranges(v)) for k, v in found.items()}, "ranges")


def fixtures():
    from open_clip.tokenizer import HFTokenizer

    os.makedirs(OUT, exist_ok=True)
    trainer = BertWordPieceTokenizer(lowercase=True)
    trainer.train_from_iterator(training_text(), vocab_size=3000, min_frequency=2,
                                special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    trainer.save_model(OUT)
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump({"model_type": "bert"}, f)
    with open(os.path.join(OUT, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "BertTokenizer", "do_lower_case": True}, f)
    tokenizer = HFTokenizer(OUT, context_length=CONTEXT, strip_sep_token=True)
    strings = corpus() + WORDPIECE_EXTRA
    with open(os.path.join(OUT, "ids.jsonl"), "w", encoding="utf-8") as f:
        for t in strings:
            f.write(json.dumps(tokenizer.tokenizer(tokenizer.clean_fn(t), add_special_tokens=False).input_ids) + "\n")
    with open(os.path.join(OUT, "rows.jsonl"), "w", encoding="utf-8") as f:
        for t in strings:
            f.write(json.dumps(tokenizer([t])[0].tolist()) + "\n")
    print(len(strings), "strings ->", OUT)


if __name__ == "__main__":
    classes()
    fixtures()
