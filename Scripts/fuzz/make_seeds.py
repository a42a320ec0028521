#!/usr/bin/env python3
"""Seed inputs for the libFuzzer targets (Scripts/fuzz/run_fuzzers.sh): small valid files of each format, written to
Tests/Fuzz/Corpus/<target>/. The fuzzers grow these corpora; `run_fuzzers.sh --update-corpus` merges what they
find back (minimised). No third-party packages needed.
"""
import os
import shutil
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_hostile_cases import (ROOT, contiguous_strides, p_state_dict, p_tensor, write_safetensors,  # noqa: E402
                                zip_archive)

CORPUS = os.path.join(ROOT, "Tests/Fuzz/Corpus")


def floats(values):
    return struct.pack(f"<{len(values)}f", *values)


def main():
    for target in ["safetensors", "zip", "checkpoint", "pickle", "image"]:
        os.makedirs(os.path.join(CORPUS, target), exist_ok=True)

    def out(target, name):
        return os.path.join(CORPUS, target, name)

    tensors = {"a.weight": ("F32", [2, 3], floats([1, 2, 3, 4, 5, 6])),
               "b": ("F16", [2], struct.pack("<2e", 0.5, -1.5)),
               "c": ("BF16", [1], b"\x80\x3f"), "empty": ("F32", [0, 4], b"")}
    write_safetensors(out("safetensors", "seed-small.safetensors"), tensors)
    write_safetensors(out("safetensors", "seed-one.safetensors"), {"x": ("F32", [], floats([3.0]))})
    with open(out("safetensors", "seed-metadata.safetensors"), "wb") as f:
        header = b'{"__metadata__":{"format":"pt"},"t":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}'
        f.write(struct.pack("<Q", len(header)) + header + struct.pack("<q", 7))

    items, entries = [], []
    for i, (name, shape) in enumerate([("w", [2, 2]), ("b", [2]), ("v", [3, 1])]):
        count = 1
        for n in shape:
            count *= n
        items.append((name, p_tensor(str(i), "F32", count, 0, shape, contiguous_strides(shape))))
        entries.append((f"archive/data/{i}", floats(list(range(count)))))
    # A view with an offset and a transposed stride into a shared storage.
    items.append(("view", p_tensor("0", "F32", 4, 1, [2, 1], [1, 2])))
    pkl = p_state_dict(items)
    open(out("pickle", "seed-state-dict.pkl"), "wb").write(pkl)
    zipped = zip_archive([("archive/data.pkl", pkl, None, None)] + [(n, d, None, None) for n, d in entries]
                         + [("archive/version", b"3\n", None, None), ("archive/byteorder", b"little", None, None)])
    open(out("checkpoint", "seed-state-dict.pt"), "wb").write(zipped)
    open(out("zip", "seed-stored.zip"), "wb").write(zipped)
    import zlib
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = b"hello " * 50
    open(out("zip", "seed-deflated.zip"), "wb").write(
        zip_archive([("archive/a", data, len(data), c.compress(data) + c.flush())]))

    images = os.path.join(ROOT, "Tests/CLIPImageTests/Fixtures/images")
    for name in ["png_p2_mid.png", "png_gray2.png", "png_1bit_mid.png", "jpeg_420_small.jpg", "jpeg_q30_mid.jpg",
                 "webp_lossy_mid.webp", "jpeg_progressive_mid.jpg", "png_rgb_small.png", "webp_lossy_alpha_mid.webp",
                 "jpeg_exif_rotated.jpg"]:
        shutil.copy(os.path.join(images, name), out("image", "seed-" + name))
    # GIF, BMP and TIFF seeds: the small files of each layout (Scripts/fixtures/make_format_fixtures.py).
    formats = os.path.join(ROOT, "Tests/CLIPImageTests/Fixtures/formats")
    for target, names in {"gif": ["gif_interlaced.gif", "gif_offset_frame.gif", "gif_gray.gif"],
                          "bmp": ["bmp_rle8.bmp", "bmp_rle4.bmp", "bmp_p4.bmp", "bmp_32_bgra_v4.bmp", "bmp_os2.bmp"],
                          "tiff": ["tiff_rgb_lzw.tif", "tiff_rgb_jpeg.tif", "tiff_1bit_g4.tif", "tiff_tiled.tif",
                                   "tiff_planar.tif", "tiff_p2.tif", "tiff_rgb16_big_endian.tif"]}.items():
        os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
        for name in names:
            shutil.copy(os.path.join(formats, name), out(target, "seed-" + name))
    os.makedirs(os.path.join(CORPUS, "video"), exist_ok=True)
    for name in ["scenes.mp4", "scenes.webm", "scenes.mkv", "rotated.mov"]:
        shutil.copy(os.path.join(ROOT, "Tests/CLIPImageTests/Fixtures/video", name), out("video", "seed-" + name))
    os.makedirs(os.path.join(CORPUS, "raw"), exist_ok=True)
    for name in ["bayer.dng", "preview_small.dng"]:
        shutil.copy(os.path.join(ROOT, "Tests/CLIPImageTests/Fixtures/raw", name), out("raw", "seed-" + name))

    # Training tables and texts (issue 30): quoted fields, CRLF, tabs; ftfy's mojibake, entities, every script.
    for target in ["table", "text"]:
        os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
    tables = {"seed-basic.csv": 'filepath,title\nimages/a.jpg,a cat\nb.png,"a dog, running"\n',
              "seed-quotes.csv": 'filepath,title\r\n"x.jpg","say ""hi"""\r\n"y.jpg","two\nlines"\r\n',
              "seed-tabs.tsv": "filepath\ttitle\n1.jpg\ta photo\n2.jpg\t\n"}
    for name, text in tables.items():
        open(out("table", name), "w").write(text)
    texts = {"seed-plain.txt": "a photo of a cat",
             "seed-mojibake.txt": "The Mona Lisa doesnÃ¢â‚¬â„¢t have eyebrows. &amp; &lt;b&gt; caf\u00e9",
             "seed-scripts.txt": "\u4e00\u53ea\u732b \u0642\u0637\u0629 \u092c\u093f\u0932\u094d\u0932\u0940 \U0001F431\u200d\U0001F464 \u1e9e\u017f",
             "seed-special.txt": "<|startoftext|>it's  a\t\tdog's\n\nlife<|endoftext|> 12345 ... !!!"}
    for name, text in texts.items():
        open(out("text", name), "w", encoding="utf-8").write(text)
    print(f"seeds written under {CORPUS}")


if __name__ == "__main__":
    main()
