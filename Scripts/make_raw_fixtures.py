#!/usr/bin/env python3
"""Writes Tests/CLIPImageTests/Fixtures/raw: small DNG files (the one camera RAW format that can be written from a
specification: Adobe's DNG 1.4, byte by byte below) and what rawpy (LibRaw) makes of each:

- bayer.dng            a 16-bit RGGB mosaic, no preview: demosaiced
- bayer_orient6.dng    the same with Orientation 6 (the camera held upright)
- preview_full.dng     a full-size JPEG preview in IFD 0, the mosaic in a SubIFD: the preview is what is shown
- preview_small.dng    a 32×24 preview only: too small to stand for the photo, so the mosaic is demosaiced
- reference.safetensors  NAME: U8 [h, w, 3]: for previews, Pillow's decoding of rawpy's extract_thumb() JPEG (turned
                       by the file's orientation); else rawpy's postprocess(use_camera_wb=True, output_bps=8), which
                       turns the image itself

    /tmp/venv-pil/bin/pip install pillow numpy safetensors rawpy
    /tmp/venv-pil/bin/python Scripts/make_raw_fixtures.py

Made with rawpy 0.28.0 (LibRaw 0.22.2); swift-clip links Debian's LibRaw 0.20.2, so demosaiced pixels are compared
with a tolerance (tests say which), previews exactly (the JPEG decoders agree).
"""
import io
import os
import struct

import numpy as np
import rawpy
from PIL import Image, ImageOps
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "CLIPImageTests", "Fixtures", "raw")
rng = np.random.default_rng(20261204)

BYTE, ASCII, SHORT, LONG, RATIONAL, SRATIONAL = 1, 2, 3, 4, 5, 10


def scene(w, h):
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 0.5 + 0.45 * np.sin(x / w * 6.3 + y / h * 2.1)
    g = x / (w - 1)
    b = np.where(((x // 9) + (y // 7)) % 2 == 0, 0.15, 0.85)
    img = np.clip(np.stack([r, g, b], -1) + rng.normal(0, 0.02, (h, w, 3)), 0, 1)
    img[0:4, 0:4] = [1, 0, 0]  # a corner that shows a turn
    return img


def mosaic(img, white=4095, black=64):
    """RGGB Bayer samples of a linear RGB image (camera space = sRGB primaries here)."""
    h, w, _ = img.shape
    lin = img ** 2.2
    out = np.zeros((h, w), np.uint16)
    out[0::2, 0::2] = lin[0::2, 0::2, 0] * (white - black) + black
    out[0::2, 1::2] = lin[0::2, 1::2, 1] * (white - black) + black
    out[1::2, 0::2] = lin[1::2, 0::2, 1] * (white - black) + black
    out[1::2, 1::2] = lin[1::2, 1::2, 2] * (white - black) + black
    return out


class TiffWriter:
    """Little-endian TIFF with several IFDs; values past 4 bytes go after each IFD."""

    def __init__(self):
        self.body = bytearray(b"II*\0\0\0\0\0")

    def blob(self, data):
        at = len(self.body)
        self.body += data
        if len(self.body) % 2:
            self.body += b"\0"
        return at

    def ifd(self, entries, next_ifd=0):
        entries = sorted(entries, key=lambda e: e[0])
        at = len(self.body)
        size = 2 + 12 * len(entries) + 4
        extra_at = at + size
        head, extra = bytearray(struct.pack("<H", len(entries))), bytearray()
        for tag, typ, vals in entries:
            if typ == ASCII:
                raw = vals.encode() + b"\0"
                count = len(raw)
            elif typ in (RATIONAL, SRATIONAL):
                fmt = "<" + ("ii" if typ == SRATIONAL else "II") * len(vals)
                raw = struct.pack(fmt, *[v for pair in vals for v in pair])
                count = len(vals)
            else:
                fmt = "<" + {BYTE: "B", SHORT: "H", LONG: "I"}[typ] * len(vals)
                raw = struct.pack(fmt, *vals)
                count = len(vals)
            if len(raw) <= 4:
                head += struct.pack("<HHI", tag, typ, count) + raw + b"\0" * (4 - len(raw))
            else:
                head += struct.pack("<HHII", tag, typ, count, extra_at + len(extra))
                extra += raw + (b"\0" if len(raw) % 2 else b"")
        head += struct.pack("<I", next_ifd)
        self.body += head + extra
        return at

    def finish(self, first_ifd):
        struct.pack_into("<I", self.body, 4, first_ifd)
        return bytes(self.body)


def rational(x, d=10000):
    return (int(round(x * d)), d)


def dng(w, h, preview=None, orientation=1):
    img = scene(w, h)
    cfa = mosaic(img)
    t = TiffWriter()
    raw_at = t.blob(cfa.astype("<u2").tobytes())
    common = [
        (50706, BYTE, [1, 4, 0, 0]),                     # DNGVersion
        (50707, BYTE, [1, 1, 0, 0]),                     # DNGBackwardVersion
        (50708, ASCII, "swift-clip test camera"),        # UniqueCameraModel
        (271, ASCII, "swift-clip"), (272, ASCII, "test camera"),
        (274, SHORT, [orientation]),
        # XYZ → camera: sRGB's (camera space is sRGB here), D65.
        (50721, SRATIONAL, [rational(v) for v in (3.2406, -1.5372, -0.4986, -0.9689, 1.8758, 0.0415,
                                                  0.0557, -0.2040, 1.0570)]),
        (50778, SHORT, [21]),                            # CalibrationIlluminant1: D65
        (50728, RATIONAL, [rational(0.9), rational(1.0), rational(0.8)]),  # AsShotNeutral
    ]
    raw_tags = [
        (254, LONG, [0]), (256, LONG, [w]), (257, LONG, [h]), (258, SHORT, [16]), (259, SHORT, [1]),
        (262, SHORT, [32803]), (273, LONG, [raw_at]), (277, SHORT, [1]), (278, LONG, [h]), (279, LONG, [cfa.nbytes]),
        (284, SHORT, [1]), (33421, SHORT, [2, 2]), (33422, BYTE, [0, 1, 1, 2]),
        (50714, SHORT, [64]), (50717, SHORT, [4095]),    # BlackLevel, WhiteLevel
    ]
    if preview is None:
        first = t.ifd(raw_tags + common)
        return t.finish(first), img
    pw, ph = preview
    small = Image.fromarray((np.clip(scene(pw, ph) if (pw, ph) != (w, h) else img, 0, 1) * 255).astype(np.uint8))
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=92)
    jpeg = buf.getvalue()
    jpeg_at = t.blob(jpeg)
    sub = t.ifd(raw_tags)
    first = t.ifd([(254, LONG, [1]), (256, LONG, [pw]), (257, LONG, [ph]), (258, SHORT, [8, 8, 8]), (259, SHORT, [7]),
                   (262, SHORT, [6]), (273, LONG, [jpeg_at]), (277, SHORT, [3]), (278, LONG, [ph]),
                   (279, LONG, [len(jpeg)]), (284, SHORT, [1]), (330, LONG, [sub])] + common)
    return t.finish(first), img


def main():
    os.makedirs(OUT, exist_ok=True)
    files = {
        "bayer.dng": dng(66, 50),
        "bayer_orient6.dng": dng(66, 50, orientation=6),
        "preview_full.dng": dng(66, 50, preview=(66, 50)),
        "preview_full_orient8.dng": dng(66, 50, preview=(66, 50), orientation=8),
        "preview_small.dng": dng(66, 50, preview=(32, 24)),
    }
    tensors = {}
    for name, (data, _) in files.items():
        path = os.path.join(OUT, name)
        with open(path, "wb") as f:
            f.write(data)
        with rawpy.imread(path) as raw:
            thumb = None
            try:
                thumb = raw.extract_thumb()
            except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
                pass
            sizes = raw.sizes
            if thumb is not None and thumb.format == rawpy.ThumbFormat.JPEG and \
                    min(Image.open(io.BytesIO(thumb.data)).size) * 2 >= min(sizes.width, sizes.height):
                im = Image.open(io.BytesIO(thumb.data))
                flip = {0: 1, 3: 3, 5: 8, 6: 6}[sizes.flip]
                a = np.array(im.convert("RGB").transpose(
                    {1: None, 3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_270,
                     8: Image.Transpose.ROTATE_90}[flip]) if flip != 1 else im.convert("RGB"), dtype=np.uint8)
                kind = "preview"
            else:
                a = raw.postprocess(use_camera_wb=True, output_bps=8)
                kind = "demosaiced"
        tensors[name] = np.ascontiguousarray(a)
        print(name, kind, a.shape)
    save_file(tensors, os.path.join(OUT, "reference.safetensors"))


if __name__ == "__main__":
    main()
