#!/usr/bin/env python3
"""Writes the tokenizer test corpora with the reference's token ids (OpenAI's clip.simple_tokenizer):

- Tests/CLIPTokenizerTests/Fixtures/golden.jsonl  curated strings by category (every one must match)
- Tests/CLIPTokenizerTests/Fixtures/fuzz.jsonl    random strings from many scripts and entity soup

Each line: {"category": ..., "text": ..., "ids": SimpleTokenizer.encode(text)}; strings longer than the
context also carry "row", clip.tokenize([text], truncate=True)[0].
Needs: clip-anytorch, ftfy, regex, torch.
"""
import json
import os
import random

import clip
from clip.simple_tokenizer import SimpleTokenizer

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "CLIPTokenizerTests", "Fixtures")
TOK = SimpleTokenizer()
rng = random.Random(20261129)

OBJECTS = ["dog", "cat", "diagram", "bicycle", "red car", "mountain lake", "birthday cake", "golden retriever",
           "skyscraper", "child's drawing", "bowl of ramen", "vintage camera", "sunflower field", "pair of shoes",
           "lighthouse at dusk", "snowboarder", "hot-air balloon", "chess board", "violin", "espresso"]
ADJ = ["small", "big", "blurry", "bright", "old", "new", "cute", "dark", "colorful", "black and white"]
TEMPLATES = ["a photo of a {}.", "a {} in the wild", "A close-up photo of the {}!", "an illustration of a {}",
             "itap of my {}", "a bad photo of the {}.", "a sculpture of a {}", "a photo of the large {}.",
             "art of the {}", "a tattoo of the {}", "{}", "This is a {} - taken in 2019 (summer)."]


def plain():
    out = []
    for t in TEMPLATES:
        for o in OBJECTS:
            out.append(t.format(o))
    for _ in range(350):
        out.append(rng.choice(TEMPLATES).format(rng.choice(ADJ) + " " + rng.choice(OBJECTS)))
    return out


def punctuation():
    marks = list("!?.,;:()[]{}<>@#$%^&*_-+=/\\|~`\"'") + ["...", "--", "?!", "!!!", "…", "—", "–", "«»", "¿¡", "§", "¶"]
    out = []
    for m in marks:
        out += [f"hello{m}world", f"{m}start", f"end{m}", f"a {m} b", m * 3]
    return out


def contractions():
    words = ["it's", "don't", "we're", "they've", "I'm", "you'll", "he'd", "IT'S", "Don'T", "WE'RE", "rock'n'roll",
             "'s", "'t", "''s", "'S", "o'clock", "y'all", "can't", "won't", "shouldn't've", "it\u2019s", "it`s",
             "it\u017fs", "'\u017f", "L'Amour", "ain't", "'tis", "'twas", "Mc'Donald's", "'ll'd've"]
    out = []
    for w in words:
        out += [w, f"I think {w} fine", w.upper(), w.lower(), w.title()]
    return out


def digits():
    out = ["0", "42", "3.14159", "1,000,000", "2024-06-30", "12:45pm", "$19.99", "50%", "1st 2nd 3rd 4th", "v1.2.3",
           "١٢٣", "一二三", "½ ¾ ⅓", "²³¹", "Ⅻ", "①②③", "𝟙𝟚𝟛", "0x1F600", "1e-5", "-273.15°C", "№5", "९", "๓"]
    for _ in range(80):
        out.append(" ".join(str(rng.randint(0, 10 ** rng.randint(1, 12))) for _ in range(rng.randint(1, 4))))
    return out


def emoji():
    base = ["😀", "🐶", "🍕", "❤️", "👍🏽", "👩‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇯🇵", "🇺🇸", "✔", "☀️", "🙏🏿",
            "🧑🏻‍🚀", "👁️‍🗨️", "🤷‍♀️", "⌚", "🫠", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "1️⃣", "©️", "™"]
    out = []
    for e in base:
        out += [e, f"a photo of a dog {e}", f"{e}{e}{e}", f"I love it{e}!"]
    for _ in range(40):
        out.append("".join(rng.choice(base) for _ in range(rng.randint(1, 6))))
    return out


def scripts():
    samples = {
        "cjk": ["一只猫在沙发上", "東京タワーの写真", "고양이 사진", "山と湖", "ラーメン", "中文、日本語。", "ｶﾀｶﾅ"],
        "arabic": ["صورة قطة", "مرحبا بالعالم", "القاهرة ٢٠٢٤", "كتاب"],
        "hebrew": ["תמונה של כלב", "שלום עולם", "ירושלים"],
        "devanagari": ["कुत्ते की तस्वीर", "नमस्ते दुनिया", "हिन्दी"],
        "thai": ["ภาพถ่ายของแมว", "สวัสดีชาวโลก", "กรุงเทพ"],
        "greek": ["ΟΔΥΣΣΕΥΣ", "Σίσυφος ΣΟΦΟΣ", "ΌΣΟΣ.", "ΑΣ ΣΑ Σ", "όσος"],
        "cyrillic": ["Фотография собаки", "ПРИВЕТ МИР", "ёжик"],
        "other": ["ქართული", "Հայերեն", "ᏣᎳᎩ", "ꦗꦮ", "𐎀𐎁", "ᚠᚢᚦ", "ⵜⴰⵎⴰⵣⵉⵖⵜ", "Tiếng Việt", "İstanbul", "ǅemal", "STRASSE ß ẞ"],
    }
    out = []
    for cat, xs in samples.items():
        for x in xs:
            out += [x, f"a photo of {x}", x.upper(), x + " " + x]
    return out


def accents():
    import unicodedata
    words = ["café", "naïve", "résumé", "Ångström", "São Paulo", "Zürich", "crème brûlée", "piñata", "Łódź",
             "Dvořák", "façade", "Øresund", "smörgåsbord", "Ελλάδα", "Ñandú", "ǆ", "ﬁancée", "Å", "ḍ̇", "q̣̇"]
    out = []
    for w in words:
        out += [unicodedata.normalize("NFC", w), unicodedata.normalize("NFD", w), unicodedata.normalize("NFKD", w),
                "a photo in " + unicodedata.normalize("NFD", w)]
    return out


def entities():
    names = ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&nbsp;", "&eacute;", "&EACUTE;", "&copy;", "&hellip;",
             "&mdash;", "&rsquo;", "&amp", "&lt", "&notit;", "&notin;", "&ampx", "&Eacute", "&checkmark;",
             "&#39;", "&#x27;", "&#X27;", "&#8217;", "&#0;", "&#128;", "&#150;", "&#x110000;", "&#xD800;", "&#65",
             "&#99999999999;", "&#x1F600;", "&amp;amp;", "&amp;lt;", "&amp;#39;", "&amp;amp;amp;", "&#38;#38;",
             "&SZLIG;", "&Ntilde;", "&NTILDE;", "&nTILDE;", "&unknown;", "& amp;", "&;", "&#;", "&#x;", "&&amp;",
             "&ThickSpace;", "&NotNestedLessLess;", "&fjlig;", "&zwj;"]
    out = []
    for n in names:
        out += [n, f"Tom {n} Jerry", f"x{n}y", f"<b>{n}</b>", f"{n}\nline two {n}"]
    return out


def mojibake():
    sources = ["café", "naïve résumé", "“quoted”", "it’s", "São Paulo — 2024", "Ελλάδα", "Привет", "日本語",
               "😀 emoji", "voilà le travail", "Bundesstraße", "½ price", "€100", "Łódź", "señor", "✔ No problems",
               "¯\\_(ツ)_/¯", "àquele", "à la carte", "Dvořák"]
    out = []
    for s in sources:
        b = s.encode("utf-8")
        for enc in ["latin-1", "cp1252", "cp1251", "cp1250", "cp1253", "macroman", "cp437", "iso-8859-2"]:
            try:
                out.append(b.decode(enc))
            except UnicodeDecodeError:
                out.append(b.decode(enc, errors="replace"))
        out.append(b.decode("latin-1").encode("utf-8").decode("latin-1"))  # double mojibake
        out.append("prefix " + b.decode("cp1252", errors="replace") + " suffix")
        out.append(b.decode("latin-1").replace("\xa0", " "))
    return out


def typography():
    out = []
    for s in ["“Hello,” she said.", "‘single’ quotes", "‛reversed‟", "ʼn ʼokina", "ﬁnal ﬂow ﬀ ﬃ ﬄ ﬅ ﬆ", "Ĳssel ǅ",
              "ＬＯＵＤ　ＮＯＩＳＥＳ", "ｈｅｌｌｏ１２３", "ﾊﾝｶｸ", "Ｕﾀｰﾝ", "＂quoted＂", "100％", "ﬁ", "Ǳ ǲ ǳ"]:
        out += [s, s.upper(), "a photo: " + s]
    return out


def controls():
    out = []
    for s in ["a\tb", "a\nb", "a\r\nb", "a\rb", "a\x0bb", "a\x0cb", "a\x00b", "a\x07b", "\x1b[31mred\x1b[0m",
              "a\x85b", "a\u2028b", "a\u2029b", "a\xa0b", "a\u3000b", "a\u200bb", "a\u200db", "a\ufeffb",
              "a\u2060b", "a\x1cb", "a\x1fb", "a\x7fb", "a\x80b", "a\x9fb", "a\u206ab", "a\ufff9b", "a\ufffcb",
              "a\u180eb", "a\u202fb", "a\u205fb", "  spaced  out  ", "\t\ttabs\t", "line1\n\nline2\n"]:
        out += [s, s * 2, "photo " + s + " end"]
    return out


def specials():
    out = []
    for s in ["<|startoftext|>", "<|endoftext|>", "<|STARTOFTEXT|>", "<|EndOfText|>", "a<|endoftext|>b",
              "<|startoftext|> a dog <|endoftext|>", "<|endoftext", "<|start of text|>", "<|ſtartoftext|>",
              "<|endoftext|><|endoftext|>"]:
        out += [s, s + " x", "x " + s]
    return out


def blanks():
    return ["", " ", "   ", "\t", "\n", "\r\n", "\u3000", "\xa0", " \t\n ", "\u2003\u2009", "\x00", "&nbsp;",
            "&#32;", "\u200b", "\ufeff", "\u2028", " \x1c ", "\x1f"]


def longs():
    out = []
    for i in range(60):
        n = rng.randint(60, 400)
        words = [rng.choice(OBJECTS + ADJ + ["and", "the", "with", "😀", "東京", "1234", "&amp;"]) for _ in range(n)]
        out.append(" ".join(words))
    out.append("a" * 5000)
    out.append("🐶" * 300)
    out.append("word " * 76)
    out.append("word " * 75)
    return out


def fuzz(n):
    blocks = [(0x20, 0x7E), (0xA0, 0x24F), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x5FF),
              (0x600, 0x6FF), (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF), (0x1E00, 0x1EFF), (0x2000, 0x206F),
              (0x2100, 0x22FF), (0x2500, 0x25FF), (0x3000, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3),
              (0xFB00, 0xFB4F), (0xFE00, 0xFE0F), (0xFF00, 0xFFEF), (0x1F300, 0x1F6FF), (0x1F900, 0x1F9FF),
              (0x1D400, 0x1D7FF), (0x0, 0x1F), (0x80, 0x9F), (0xE0000, 0xE007F), (0x10000, 0x1FFFF)]
    ents = [n for n in __import__("html").entities.html5] + ["#39;", "#x27;", "#128;", "#0;", "amp", "#1114112;"]
    out = []
    for _ in range(n):
        kind = rng.random()
        parts = []
        for _ in range(rng.randint(0, 24)):
            r = rng.random()
            if r < 0.15:
                parts.append("&" + rng.choice(ents))
            elif r < 0.25:
                parts.append(rng.choice([" ", "  ", "\n", "\t", "'s", "'re", "<|endoftext|>", "Ã©", "â€™", "Â "]))
            else:
                a, b = rng.choice(blocks)
                cp = rng.randint(a, b)
                if 0xD800 <= cp <= 0xDFFF:
                    cp = 0x41
                parts.append(chr(cp))
        s = "".join(parts)
        if kind < 0.1:
            s = s.encode("utf-8").decode("latin-1")
        elif kind < 0.2:
            s = s.encode("utf-8").decode("cp1252", errors="replace")
        out.append(s)
    return out


def stress(n):
    """Mojibake-heavy strings: real text in many scripts, encoded as UTF-8 and decoded with the wrong
    single-byte codecs (sometimes twice, sometimes partly), mixed with clean text and entities."""
    words = [w for fn in (plain, scripts, accents, emoji, typography) for w in fn()]
    codecs_ = ["latin-1", "cp1252", "cp1251", "cp1250", "cp1253", "cp1254", "cp1257", "iso-8859-2", "macroman", "cp437"]
    out = []
    for _ in range(n):
        s = " ".join(rng.choice(words) for _ in range(rng.randint(1, 4)))
        r = rng.random()
        b = s.encode("utf-8")
        enc = rng.choice(codecs_)
        if r < 0.6:
            s = b.decode(enc, errors="replace")
        elif r < 0.75:
            s = b.decode(enc, errors="replace").encode("utf-8").decode(rng.choice(codecs_), errors="replace")
        elif r < 0.9:
            cut = rng.randint(0, len(s))
            s = s[:cut] + s[cut:].encode("utf-8").decode(enc, errors="replace")
        if rng.random() < 0.2:
            s = s.replace("\xa0", " ")
        out.append(s)
    return out


def write(name, items, out_dir=OUT):
    with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
        for cat, text in items:
            ids = TOK.encode(text)
            rec = {"category": cat, "text": text, "ids": ids}
            if len(ids) + 2 > 77:
                rec["row"] = clip.tokenize([text], truncate=True)[0].tolist()
            f.write(json.dumps(rec, ensure_ascii=True) + "\n")
    print(f"{name}: {len(items)} strings")


def decode_cases():
    """Id sequences with the reference's decoding, including cuts through multi-byte characters."""
    out = []
    for text in ["a photo of a dog.", "café 😀 東京", "<|startoftext|>hello<|endoftext|>", "it's 3.14!", "👩‍💻🇯🇵"]:
        ids = TOK.encode(text)
        out.append(ids)
        for cut in range(1, len(ids)):
            out.append(ids[:cut])
            out.append(ids[cut:])
    for _ in range(100):
        out.append([rng.randrange(49408) for _ in range(rng.randint(0, 12))])
    return [{"ids": ids, "text": TOK.decode(ids)} for ids in out]


def small_hf_vocabulary(out_dir):
    """A reduced vocabulary (byte symbols, the first 2,000 merges, special tokens) written as a Hugging Face
    folder would hold it, with the ids the reference algorithm gives under it."""
    import gzip
    from clip.simple_tokenizer import bytes_to_unicode, default_bpe
    merges = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1:2001]
    merges = [tuple(m.split()) for m in merges]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    tok = SimpleTokenizer()
    tok.encoder = dict(zip(vocab, range(len(vocab))))
    tok.decoder = {v: k for k, v in tok.encoder.items()}
    tok.bpe_ranks = dict(zip(merges, range(len(merges))))
    tok.cache = {"<|startoftext|>": "<|startoftext|>", "<|endoftext|>": "<|endoftext|>"}
    os.makedirs(out_dir, exist_ok=True)
    json.dump(tok.encoder, open(os.path.join(out_dir, "vocab.json"), "w"), ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    texts = ["a photo of a dog", "Hello, World! it's 2024", "café 😀 東京", "<|endoftext|> x", "antidisestablishmentarianism"]
    return [{"text": t, "ids": tok.encode(t)} for t in texts]


def main():
    import sys
    if len(sys.argv) == 3 and sys.argv[1] == "--stress":
        # A large differential corpus for local checks (not committed): CLIP_TOKENIZER_CORPUS=FILE swift test
        write(os.path.basename(sys.argv[2]), [("stress", t) for t in stress(50_000)], os.path.dirname(os.path.abspath(sys.argv[2])))
        return
    os.makedirs(OUT, exist_ok=True)
    golden = []
    for cat, fn in [("plain", plain), ("punctuation", punctuation), ("contractions", contractions), ("digits", digits),
                    ("emoji", emoji), ("scripts", scripts), ("accents", accents), ("entities", entities),
                    ("mojibake", mojibake), ("typography", typography), ("controls", controls),
                    ("specials", specials), ("blanks", blanks), ("long", longs)]:
        golden += [(cat, t) for t in fn()]
    write("golden.jsonl", golden)
    write("fuzz.jsonl", [("fuzz", t) for t in fuzz(10_000)])
    with open(os.path.join(OUT, "decode.json"), "w") as f:
        json.dump(decode_cases(), f, ensure_ascii=True)
    with open(os.path.join(OUT, "hf_small_expected.json"), "w") as f:
        json.dump(small_hf_vocabulary(os.path.join(OUT, "hf_small")), f, ensure_ascii=True)


if __name__ == "__main__":
    main()
