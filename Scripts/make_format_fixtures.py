#!/usr/bin/env python3
"""Writes Tests/CLIPImageTests/Fixtures/formats: GIF, BMP and TIFF files in the layouts Pillow reads (written by
Pillow where it writes them, else byte by byte below: RLE BMPs, bit-field BMPs, 16-bit and planar TIFFs, tiles,
orientation tags, a GIF frame inside a larger screen), and what Pillow makes of each:

- NAME.EXT                  the files
- manifest.json             per file: name, file, Pillow mode and size after Image.open + load
- reference.safetensors     NAME/decoded: U8 [h, w, bands] as Pillow holds it (palette indices for P, 0/255 for 1,
                            little-endian byte pairs for I;16); NAME/palette: U8 [n, 3]; NAME/40: the 8-bit RGB
                            image after the reference's Resize(40, BICUBIC), CenterCrop(40) and convert("RGB"),
                            computed as torchvision computes the sizes (torch is not needed)

    python3 -m venv /tmp/venv-pil && /tmp/venv-pil/bin/pip install pillow numpy safetensors
    /tmp/venv-pil/bin/python Scripts/make_format_fixtures.py

Made with Pillow 13.0.0 (libtiff 4.7.2). Odd sizes throughout.
"""
import io
import json
import os
import struct
import zlib

import numpy as np
from PIL import Image
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "CLIPImageTests", "Fixtures", "formats")
rng = np.random.default_rng(20261204)
CROP = 40  # the reference crop checked: most files are resized up to it, the larger ones down


def scene(w, h, alpha=False):
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127 + 120 * np.sin(x / w * 6.3 + y / h * 2.1)
    g = 255 * x / (w - 1)
    b = np.where(((x // 7) + (y // 5)) % 2 == 0, 30, 220).astype(np.float64)
    img = np.clip(np.stack([r, g, b], -1) + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
    img[0:3, 0:3] = [255, 0, 0]  # a corner that shows a turn or a flip
    if alpha:
        a = np.clip(255 * (0.5 + 0.5 * np.cos(x / w * 9 + y / h * 4)), 0, 255).astype(np.uint8)
        a[: h // 4, : w // 4] = 0
        img = np.concatenate([img, a[..., None]], -1)
    return img


def pil(w, h, mode="RGB"):
    im = Image.fromarray(scene(w, h, alpha=mode in ("RGBA", "LA")))
    if mode in ("RGB", "RGBA"):
        return im
    if mode == "P":
        return im.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=200)
    return im.convert(mode)


# ----------------------------------------------------------------------------------------------------------- GIF
def gif_files():
    out = {}
    def save(name, im, **kw):
        b = io.BytesIO()
        im.save(b, "GIF", **kw)
        out[name] = b.getvalue()
    save("gif_p.gif", pil(97, 61, "P"), interlace=False)
    save("gif_interlaced.gif", pil(57, 83, "P"), interlace=True)
    save("gif_gray.gif", pil(45, 31, "L"), optimize=False)  # the identity gray table: Pillow reopens it as L
    save("gif_transparent.gif", pil(41, 29, "P"), transparency=7)
    frames = [pil(49, 35, "P"), Image.fromarray(255 - scene(49, 35)).convert("P", palette=Image.Palette.ADAPTIVE)]
    b = io.BytesIO()
    frames[0].save(b, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    out["gif_animated.gif"] = b.getvalue()
    # A first frame of 20×10 at (5, 7) on a 40×30 screen, transparent index 3: the rest of the canvas is index 3.
    b = io.BytesIO()
    pil(20, 10, "P").save(b, "GIF", transparency=3, interlace=False)
    data = bytearray(b.getvalue())
    struct.pack_into("<HH", data, 6, 40, 30)
    at = image_descriptor(data)
    struct.pack_into("<HH", data, at + 1, 5, 7)
    out["gif_offset_frame.gif"] = bytes(data)
    # A frame that reaches past the screen: Pillow grows the canvas.
    data2 = bytearray(data)
    struct.pack_into("<HH", data2, 6, 12, 9)
    out["gif_frame_past_screen.gif"] = bytes(data2)
    return out


def image_descriptor(data):
    at = 13
    if data[10] & 0x80:
        at += 3 << ((data[10] & 7) + 1)
    while data[at] == 0x21:  # extensions: label, then sub-blocks
        at += 2
        while data[at]:
            at += data[at] + 1
        at += 1
    assert data[at] == 0x2C
    return at


# ----------------------------------------------------------------------------------------------------------- BMP
def bmp_file(w, h, bits, pixel_rows, palette=None, compression=0, header=40, masks=None, top_down=False, data=None):
    """A BMP with the given info header size; `pixel_rows` top to bottom, each already packed (without padding)."""
    if data is None:
        stride = ((w * bits + 31) >> 3) & ~3
        rows = pixel_rows if top_down else pixel_rows[::-1]
        data = b"".join(r + b"\0" * (stride - len(r)) for r in rows)
    pal = b""
    if palette is not None:
        pal = b"".join(bytes([b, g, r] + ([0] if header != 12 else [])) for r, g, b in palette)
    if header == 12:
        info = struct.pack("<IHHHH", 12, w, h, 1, bits)
    else:
        info = struct.pack("<IiiHHIIiiII", header, w, -h if top_down else h, 1, bits, compression, len(data), 2835, 2835,
                           len(palette) if palette is not None else 0, 0)
        extra = b""
        if masks is not None:
            extra = struct.pack("<IIII", *masks) if header >= 56 else struct.pack("<III", *masks[:3])
        if header > 40:
            info += extra + b"\0" * (header - 40 - len(extra))
        else:
            pal = extra + pal
    offset = 14 + len(info) + len(pal)
    return b"BM" + struct.pack("<IHHI", offset + len(data), 0, 0, offset) + info + pal + data


def rle8(indices):
    """Encodes rows (bottom-up order given) with runs, absolute runs and end-of-line codes."""
    out = bytearray()
    for row in indices:
        i = 0
        while i < len(row):
            run = 1
            while i + run < len(row) and run < 255 and row[i + run] == row[i]:
                run += 1
            if run >= 3:
                out += bytes([run, row[i]])
                i += run
            else:
                n = min(len(row) - i, 255)
                j = i
                while j < i + n and not (j + 2 < len(row) and row[j] == row[j + 1] == row[j + 2]):
                    j += 1
                n = j - i
                if n < 3:
                    for k in range(max(n, 1)):
                        out += bytes([1, row[i + k]])
                    i += max(n, 1)
                else:
                    out += bytes([0, n]) + bytes(row[i:i + n]) + (b"\0" if n % 2 else b"")
                    i += n
        out += b"\0\0"
    return bytes(out + b"\0\1")


def rle4(indices):
    out = bytearray()
    for row in indices:
        i = 0
        while i < len(row):
            # Runs of alternating pairs are what RLE4 encodes; here: runs of one colour, else absolute runs of 4.
            run = 1
            while i + run < len(row) and run < 255 and row[i + run] == row[i]:
                run += 1
            if run >= 2:
                out += bytes([run, row[i] << 4 | row[i]])
                i += run
            else:
                n = min(4, len(row) - i)
                if n < 3:
                    out += bytes([1, row[i] << 4])
                    i += 1
                    continue
                chunk = list(row[i:i + n]) + [0]
                packed = bytes(chunk[k] << 4 | chunk[k + 1] for k in range(0, n, 2))
                out += bytes([0, n]) + packed + (b"\0" if len(packed) % 2 else b"")
                i += n
        out += b"\0\0"
    return bytes(out + b"\0\1")


def bmp_files():
    out = {}
    def save(name, im):
        b = io.BytesIO()
        im.save(b, "BMP")
        out[name] = b.getvalue()
    save("bmp_rgb.bmp", pil(97, 61))
    save("bmp_p8.bmp", pil(57, 43, "P"))
    save("bmp_gray.bmp", pil(45, 31, "L"))
    save("bmp_1bit.bmp", pil(45, 31, "1"))
    save("bmp_rgba_raw.bmp", pil(39, 27, "RGBA"))  # 32-bit, no bit fields: Pillow reads BGRX (alpha dropped)
    w, h = 37, 23
    img = scene(w, h)
    pal16 = [tuple(int(v) for v in c) for c in rng.integers(0, 256, (16, 3))]
    idx4 = rng.integers(0, 16, (h, w))
    idx4[:, 10:20] = 5  # runs for RLE
    pack4 = [bytes((int(r[x]) << 4 | (int(r[x + 1]) if x + 1 < w else 0)) for x in range(0, w, 2)) for r in idx4]
    out["bmp_p4.bmp"] = bmp_file(w, h, 4, pack4, palette=pal16)
    out["bmp_p1_colour.bmp"] = bmp_file(w, h, 1, [np.packbits(r % 2).tobytes() for r in idx4],
                                        palette=[(200, 30, 40), (10, 120, 250)])
    v = img.astype(np.uint32)
    p555 = ((v[..., 0] >> 3) << 10) | ((v[..., 1] >> 3) << 5) | (v[..., 2] >> 3)
    p565 = ((v[..., 0] >> 3) << 11) | ((v[..., 1] >> 2) << 5) | (v[..., 2] >> 3)
    out["bmp_16_555.bmp"] = bmp_file(w, h, 16, [r.astype("<u2").tobytes() for r in p555])
    out["bmp_16_565_bitfields.bmp"] = bmp_file(w, h, 16, [r.astype("<u2").tobytes() for r in p565], compression=3,
                                               masks=(0xF800, 0x7E0, 0x1F, 0))
    rgba = scene(w, h, alpha=True)
    out["bmp_32_bgra_v4.bmp"] = bmp_file(w, h, 32, [r[:, [2, 1, 0, 3]].tobytes() for r in rgba], compression=3,
                                         header=108, masks=(0xFF0000, 0xFF00, 0xFF, 0xFF000000))
    out["bmp_32_xbgr_bitfields.bmp"] = bmp_file(w, h, 32, [np.concatenate([np.zeros((w, 1), np.uint8), r[:, [2, 1, 0]]], 1).tobytes() for r in img],
                                                compression=3, masks=(0xFF000000, 0xFF0000, 0xFF00, 0))
    out["bmp_top_down.bmp"] = bmp_file(w, h, 24, [r[:, [2, 1, 0]].tobytes() for r in img], top_down=True)
    out["bmp_os2.bmp"] = bmp_file(w, h, 24, [r[:, [2, 1, 0]].tobytes() for r in img], header=12)
    pal256 = [tuple(int(v) for v in c) for c in rng.integers(0, 256, (256, 3))]
    idx8 = rng.integers(0, 256, (h, w))
    idx8[:, 5:30] = 77
    rows_up = [list(int(x) for x in r) for r in idx8[::-1]]
    out["bmp_rle8.bmp"] = bmp_file(w, h, 8, None, palette=pal256, compression=1, data=rle8(rows_up))
    out["bmp_rle4.bmp"] = bmp_file(w, h, 4, None, palette=pal16, compression=2,
                                   data=rle4([list(int(x) for x in r) for r in idx4[::-1]]))
    # The last row without its padding: Pillow reads it (its decoder never needs the padding).
    out["bmp_last_row_unpadded.bmp"] = out["bmp_top_down.bmp"][:-((4 - (w * 3) % 4) % 4)]
    return out


# ---------------------------------------------------------------------------------------------------------- TIFF
def tiff_file(w, h, bits, spp, photometric, planes, extra=(), tile=None, orientation=None, colormap=None, big=False,
              planar=1, deflate=False):
    """A TIFF, uncompressed or Deflate. `planes`: for planar 1 one bytes object per row; for planar 2 a list per
    sample."""
    e = ">" if big else "<"
    entries = []
    def tag(t, typ, vals):
        entries.append((t, typ, vals))
    data_blocks = []
    if tile:
        tw, th = tile
        blocks = []
        for ty in range(0, h, th):
            for tx in range(0, w, tw):
                rows = []
                for y in range(ty, ty + th):
                    row = planes[y] if y < h else b""
                    bpp = bits * spp // 8
                    piece = row[tx * bpp:(tx + tw) * bpp]
                    rows.append(piece + b"\0" * (tw * bpp - len(piece)))
                blocks.append(b"".join(rows))
        data_blocks = blocks
    elif planar == 2:
        data_blocks = [b"".join(p) for p in planes]
    else:
        data_blocks = [b"".join(planes)]
    if deflate:
        data_blocks = [zlib.compress(b) for b in data_blocks]
    tag(256, 4, [w]); tag(257, 4, [h])
    tag(258, 3, [bits] * spp); tag(259, 3, [8 if deflate else 1]); tag(262, 3, [photometric])
    if orientation:
        tag(274, 3, [orientation])
    tag(277, 3, [spp])
    if not tile:
        tag(278, 4, [h])
    tag(284, 3, [planar])
    if colormap is not None:
        tag(320, 3, colormap)
    if extra:
        tag(338, 3, list(extra))
    if tile:
        tag(322, 4, [tile[0]]); tag(323, 4, [tile[1]])
    entries.sort()
    # Layout: header, data blocks, then the IFD with its out-of-line values.
    body = bytearray((b"MM\0*" if big else b"II*\0") + b"\0\0\0\0")
    offsets = []
    for blk in data_blocks:
        offsets.append(len(body))
        body += blk
        if len(body) % 2:
            body += b"\0"
    counts = [len(b) for b in data_blocks]
    entries += [(324 if tile else 273, 4, offsets), (325 if tile else 279, 4, counts)]
    entries.sort()
    ifd_at = len(body)
    n = len(entries)
    ifd = bytearray(struct.pack(e + "H", n))
    extra_at = ifd_at + 2 + 12 * n + 4
    extra_data = bytearray()
    for t, typ, vals in entries:
        fmt = {3: "H", 4: "I"}[typ]
        raw = struct.pack(e + fmt * len(vals), *vals)
        if len(raw) <= 4:
            ifd += struct.pack(e + "HHI", t, typ, len(vals)) + raw + b"\0" * (4 - len(raw))
        else:
            ifd += struct.pack(e + "HHII", t, typ, len(vals), extra_at + len(extra_data))
            extra_data += raw
            if len(extra_data) % 2:
                extra_data += b"\0"
    ifd += b"\0\0\0\0"
    body += ifd + extra_data
    struct.pack_into(e + "I", body, 4, ifd_at)
    return bytes(body)


def tiff_files():
    out = {}
    def save(name, im, **kw):
        b = io.BytesIO()
        im.save(b, "TIFF", **kw)
        out[name] = b.getvalue()
    save("tiff_rgb.tif", pil(97, 61))
    save("tiff_rgb_lzw.tif", pil(57, 43), compression="tiff_lzw")
    save("tiff_rgb_deflate.tif", pil(57, 43), compression="tiff_adobe_deflate")
    save("tiff_rgb_packbits.tif", pil(57, 43), compression="packbits")
    save("tiff_rgb_jpeg.tif", pil(57, 43), compression="jpeg", quality=90)
    save("tiff_rgba.tif", pil(45, 31, "RGBA"), compression="tiff_lzw")
    save("tiff_gray.tif", pil(45, 31, "L"))
    save("tiff_la.tif", pil(45, 31, "LA"))
    save("tiff_1bit_g4.tif", pil(45, 31, "1"), compression="group4")
    save("tiff_1bit.tif", pil(45, 31, "1"))
    save("tiff_p.tif", pil(45, 31, "P"))
    save("tiff_cmyk.tif", pil(45, 31, "CMYK"))
    i16 = Image.fromarray((scene(41, 29)[..., 0].astype(np.uint16) * 257 + rng.integers(0, 200, (29, 41))).astype(np.uint16))
    save("tiff_i16.tif", i16.convert("I;16"))
    frames = [pil(39, 27), pil(39, 27, "L")]
    b = io.BytesIO()
    frames[0].save(b, "TIFF", save_all=True, append_images=frames[1:])
    out["tiff_multipage.tif"] = b.getvalue()
    w, h = 37, 23
    img = scene(w, h)
    rgb_rows = [r.tobytes() for r in img]
    for o in (3, 6, 8):
        out[f"tiff_orientation_{o}.tif"] = tiff_file(w, h, 8, 3, 2, rgb_rows, orientation=o)
    out["tiff_big_endian_rgb.tif"] = tiff_file(w, h, 8, 3, 2, rgb_rows, big=True)
    img16 = (img.astype(np.uint16) * 257 + rng.integers(0, 256, img.shape)).astype(np.uint16)
    out["tiff_rgb16.tif"] = tiff_file(w, h, 16, 3, 2, [r.astype("<u2").tobytes() for r in img16])
    out["tiff_rgb16_big_endian.tif"] = tiff_file(w, h, 16, 3, 2, [r.astype(">u2").tobytes() for r in img16], big=True)
    rgba = scene(w, h, alpha=True)
    out["tiff_rgba_no_extrasamples.tif"] = tiff_file(w, h, 8, 4, 2, [r.tobytes() for r in rgba])
    out["tiff_rgbx.tif"] = tiff_file(w, h, 8, 4, 2, [r.tobytes() for r in rgba], extra=(0,))
    gray = img[..., 1]
    out["tiff_miniswhite.tif"] = tiff_file(w, h, 8, 1, 0, [r.tobytes() for r in gray])
    g4 = (gray >> 4).astype(np.uint8)
    pack4 = [bytes((int(r[x]) << 4 | (int(r[x + 1]) if x + 1 < w else 0)) for x in range(0, w, 2)) for r in g4]
    out["tiff_gray4.tif"] = tiff_file(w, h, 4, 1, 1, pack4)
    g2 = (gray >> 6).astype(np.uint8)
    pack2 = [np.packbits(np.unpackbits(r[:, None], axis=1)[:, 6:].reshape(-1)).tobytes() for r in g2]
    cm = [int(v) for v in rng.integers(0, 65536, 12)]
    out["tiff_p2.tif"] = tiff_file(w, h, 2, 1, 3, pack2, colormap=cm)
    out["tiff_planar.tif"] = tiff_file(w, h, 8, 3, 2, [[img[y, :, c].tobytes() for y in range(h)] for c in range(3)], planar=2)
    out["tiff_tiled.tif"] = tiff_file(w, h, 8, 3, 2, rgb_rows, tile=(16, 16))
    # Planar RGB with a fourth, unspecified plane, Deflate (Pillow reads it through libtiff): RGB, the plane dropped.
    out["tiff_planar_extra0.tif"] = tiff_file(w, h, 8, 4, 2, [[rgba[y, :, c].tobytes() for y in range(h)] for c in range(4)],
                                              extra=(0,), planar=2, deflate=True)
    return out


def reference_crop(im, n):
    """torchvision's Resize(n) (short side n, long side int(n * long / short)) with Pillow's BICUBIC, CenterCrop(n)
    (offsets int(round(...))), then convert("RGB"), as OpenAI's _transform applies them to a PIL image."""
    w, h = im.size
    if w <= h:
        size = (n, int(n * h / w))
    else:
        size = (int(n * w / h), n)
    r = im.resize(size, Image.Resampling.BICUBIC)
    left, top = int(round((size[0] - n) / 2.0)), int(round((size[1] - n) / 2.0))
    return np.array(r.crop((left, top, left + n, top + n)).convert("RGB"), dtype=np.uint8)


def main():
    os.makedirs(OUT, exist_ok=True)
    files = {**gif_files(), **bmp_files(), **tiff_files()}
    tensors, manifest = {}, []
    for name, data in sorted(files.items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        im = Image.open(io.BytesIO(data))
        im.load()
        decoded = np.array(im)
        if decoded.dtype == bool:
            decoded = decoded.astype(np.uint8) * 255
        if im.mode == "I;16":
            decoded = decoded.astype("<u2").view(np.uint8).reshape(decoded.shape[0], decoded.shape[1], 2)
        if decoded.ndim == 2:
            decoded = decoded[..., None]
        tensors[f"{name}/decoded"] = np.ascontiguousarray(decoded.astype(np.uint8))
        if im.mode == "P":
            tensors[f"{name}/palette"] = np.array(im.getpalette(), dtype=np.uint8).reshape(-1, 3)
        tensors[f"{name}/{CROP}"] = reference_crop(im, CROP)
        manifest.append({"name": name, "file": name, "mode": im.mode, "width": im.size[0], "height": im.size[1]})
    save_file(tensors, os.path.join(OUT, "reference.safetensors"))
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"{len(manifest)} files:", ", ".join(f"{m['name']} {m['mode']}" for m in manifest))


if __name__ == "__main__":
    main()
