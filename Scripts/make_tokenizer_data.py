#!/usr/bin/env python3
"""Writes the data files the Swift tokenizer ships (Sources/CLIPTokenizer/Resources), all taken from the
reference distribution so that the Swift port classifies characters exactly as the reference does:

- bpe_merges.txt      the 48,894 merges `clip.SimpleTokenizer` reads from bpe_simple_vocab_16e6.txt.gz
- char_classes.txt    code-point ranges of the reference pattern's classes as the `regex` module matches them
                      (with IGNORECASE): L = [\\p{L}], N = [\\p{N}], O = [^\\s\\p{L}\\p{N}], S = regex \\s,
                      and P = Python's str.isspace (used by str.strip)
- lowercase.txt       Python's str.lower() for every code point it changes (final sigma is applied in Swift)
- html5_entities.txt  Python's html.entities.html5 table (names with and without ';')
- ftfy_data.txt       ftfy's character facts: single-byte codec tables, mojibake character categories,
                      UTF-8 clue classes, ligatures, width map and its HTML entity table

Needs: clip-anytorch, ftfy, regex.
"""
import gzip
import html.entities
import os
import re as stdre
import sys

import clip.simple_tokenizer as st
import ftfy.bad_codecs  # registers the sloppy codecs
import regex
from ftfy import badness, chardata

OUT = os.path.join(os.path.dirname(__file__), "..", "Sources", "CLIPTokenizer", "Resources")
MAX = 0x110000


def ranges(pred):
    out, start = [], None
    for cp in range(MAX):
        if 0xD800 <= cp <= 0xDFFF:
            ok = False  # Swift strings cannot hold surrogates
        else:
            ok = pred(chr(cp))
        if ok and start is None:
            start = cp
        elif not ok and start is not None:
            out.append((start, cp - 1))
            start = None
    if start is not None:
        out.append((start, MAX - 1))
    return out


def write_ranges(f, tag, rs):
    for a, b in rs:
        f.write(f"{tag} {a:X} {b:X}\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    merges = gzip.open(st.default_bpe()).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    with open(os.path.join(OUT, "bpe_merges.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(merges) + "\n")

    flags = regex.IGNORECASE
    classes = {
        "L": regex.compile(r"[\p{L}]", flags), "N": regex.compile(r"[\p{N}]", flags),
        "O": regex.compile(r"[^\s\p{L}\p{N}]", flags), "S": regex.compile(r"\s"),
    }
    with open(os.path.join(OUT, "char_classes.txt"), "w") as f:
        f.write(f"# regex {regex.__version__}, Python {sys.version.split()[0]}\n")
        for tag, pat in classes.items():
            write_ranges(f, tag, ranges(lambda c, p=pat: p.fullmatch(c) is not None))
        write_ranges(f, "P", ranges(str.isspace))

    with open(os.path.join(OUT, "lowercase.txt"), "w") as f:
        for cp in range(MAX):
            if 0xD800 <= cp <= 0xDFFF:
                continue
            c = chr(cp)
            if c.lower() != c:
                f.write(f"{cp:X} {' '.join(f'{ord(x):X}' for x in c.lower())}\n")

    with open(os.path.join(OUT, "html5_entities.txt"), "w", encoding="utf-8") as f:
        for name, value in sorted(html.entities.html5.items()):
            f.write(f"{name} {' '.join(f'{ord(x):X}' for x in value)}\n")

    with open(os.path.join(OUT, "ftfy_data.txt"), "w", encoding="utf-8") as f:
        f.write(f"# ftfy {ftfy.__version__}\n")
        for enc in chardata.CHARMAP_ENCODINGS:
            chars = bytes(list(range(0x80, 0x100)) + [0x1A]).decode(enc)
            assert len(chars) == 129 and len(set(chars)) == 129, enc
            f.write(f"charmap {enc} {' '.join(f'{ord(c):X}' for c in chars)}\n")
        # Strict windows-1252 (for ftfy's latin-1 -> windows-1252 step): undefined bytes are written as '-'.
        row = []
        for b in range(0x80, 0x100):
            try:
                row.append(f"{ord(bytes([b]).decode('windows-1252')):X}")
            except UnicodeDecodeError:
                row.append("-")
        f.write(f"strict windows-1252 {' '.join(row)}\n")
        for name, chars in badness.MOJIBAKE_CATEGORIES.items():
            pat = stdre.compile("[" + chars + "]")
            f.write(f"category {name} {' '.join(f'{a:X}-{b:X}' for a, b in ranges(lambda c: pat.fullmatch(c) is not None))}\n")
        for name, chars in chardata.UTF8_CLUES.items():
            pat = stdre.compile("[" + chars + "]")
            f.write(f"clue {name} {' '.join(f'{a:X}-{b:X}' for a, b in ranges(lambda c: pat.fullmatch(c) is not None))}\n")
        for cp, repl in sorted(chardata.LIGATURES.items()):
            f.write(f"ligature {cp:X} {' '.join(f'{ord(x):X}' for x in repl)}\n")
        for cp, repl in sorted(chardata.WIDTH_MAP.items()):
            f.write(f"width {cp:X} {' '.join(f'{ord(x):X}' for x in repl)}\n")
        for name, value in sorted(chardata.HTML_ENTITIES.items()):
            f.write(f"entity {name} {' '.join(f'{ord(x):X}' for x in value)}\n")
        # Python's \w (used in one badness rule) and str.isalnum differ from Swift's; record \w exactly.
        write_ranges(f, "word", ranges(lambda c: stdre.fullmatch(r"\w", c) is not None))
        write_ranges(f, "respace", ranges(lambda c: stdre.fullmatch(r"\s", c) is not None))


if __name__ == "__main__":
    main()
