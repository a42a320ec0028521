#!/usr/bin/env python3
"""Writes test images in every format and mode the Swift image pipeline reads, and what the reference does with
them (Pillow decoding, and OpenAI clip's `_transform`: Resize(n, BICUBIC), CenterCrop(n), convert("RGB"),
ToTensor, Normalize), into Tests/CLIPImageTests/Fixtures:

- images/NAME.EXT            the encoded test images
- manifest.json              per image: file, Pillow mode and size, resolutions checked
- reference.safetensors      NAME/decoded: the pixels Pillow decodes (U8 [h, w, bands], palette indices for P);
                             NAME/palette: the palette (U8 [n, 3]); NAME/R: the 8-bit RGB image after Resize,
                             CenterCrop and convert (U8 [R, R, 3]); NAME/224/tensor: the full float transform output
                             for a few images (F32 [3, 224, 224])
Needs: Pillow, torchvision, clip-anytorch, numpy, safetensors.
"""
import io
import json
import os

import numpy as np
import torch
from PIL import Image
from safetensors.numpy import save_file
from clip.clip import _transform
from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Resize

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "CLIPImageTests", "Fixtures")
rng = np.random.default_rng(20261129)


def scene(w, h, alpha=False):
    """Smooth gradients, hard edges and noise, so that any resampling difference shows."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127 + 120 * np.sin(x / max(w, 1) * 6.3 + y / max(h, 1) * 2.1)
    g = 255 * (x / max(w - 1, 1))
    b = np.where(((x // 7) + (y // 5)) % 2 == 0, 30, 220).astype(np.float64)
    img = np.stack([r, g, b], -1) + rng.normal(0, 12, (h, w, 3))
    img = np.clip(img, 0, 255).astype(np.uint8)
    if alpha:
        a = np.clip(255 * (0.5 + 0.5 * np.cos(x / max(w, 1) * 9 + y / max(h, 1) * 4)), 0, 255).astype(np.uint8)
        a[: h // 4, : w // 4] = 0
        a[-h // 5:, -w // 5:] = 255
        img = np.concatenate([img, a[..., None]], -1)
    return img


SIZES = {"small": (33, 47), "odd": (257, 129), "wide": (300, 25), "tall": (40, 300), "exact": (64, 64),
         "mid": (97, 61), "photo": (200, 150)}


def cases():
    out = []
    def add(name, make, sizes=("mid", "odd")):
        for s in sizes:
            out.append((f"{name}_{s}", make, SIZES[s]))
    def jpeg(**kw):
        def f(w, h, path, mode="RGB"):
            im = Image.fromarray(scene(w, h))
            if mode != "RGB":
                im = im.convert(mode)
            im.save(path + ".jpg", "JPEG", **kw)
            return path + ".jpg"
        return f
    add("jpeg_420", jpeg(quality=85, subsampling=2), ("mid", "odd", "wide", "tall", "small", "exact", "photo"))
    add("jpeg_422", jpeg(quality=90, subsampling=1))
    add("jpeg_444", jpeg(quality=95, subsampling=0))
    add("jpeg_progressive", jpeg(quality=80, progressive=True))
    add("jpeg_q30", jpeg(quality=30))
    add("jpeg_gray", lambda w, h, p: jpeg(quality=90)(w, h, p, "L"))
    add("jpeg_cmyk", lambda w, h, p: jpeg(quality=90)(w, h, p, "CMYK"))
    def png(mode, bits=None, interlace=False, transparency=None):
        def f(w, h, path):
            base = scene(w, h, alpha=mode in ("RGBA", "LA"))
            im = Image.fromarray(base, "RGBA" if base.shape[-1] == 4 else "RGB")
            if mode == "P":
                im = im.convert("RGB").quantize(colors=2 ** (bits or 8))
            elif mode != im.mode:
                im = im.convert(mode)
            kw = {}
            if bits and mode == "P":
                kw["bits"] = bits
            if transparency is not None:
                kw["transparency"] = transparency
            if interlace:
                kw["interlace"] = 1  # not honoured by Pillow's writer; the interlaced cases are written below
            im.save(path + ".png", "PNG", **kw)
            return path + ".png"
        return f
    add("png_rgb", png("RGB"), ("mid", "odd", "wide", "small", "exact"))
    add("png_rgba", png("RGBA"), ("mid", "odd", "tall"))
    add("png_gray", png("L"))
    add("png_la", png("LA"))
    add("png_1bit", png("1"))
    add("png_p8", png("P"))
    add("png_p4", png("P", bits=4))
    add("png_p2", png("P", bits=2))
    add("png_p_transparent", png("P", transparency=3))
    add("png_rgb_trns", png("RGB", transparency=(10, 20, 30)))
    def webp(lossless, alpha):
        def f(w, h, path):
            base = scene(w, h, alpha)
            Image.fromarray(base, "RGBA" if alpha else "RGB").save(path + ".webp", "WEBP", lossless=lossless, quality=80)
            return path + ".webp"
        return f
    add("webp_lossy", webp(False, False), ("mid", "odd", "wide"))
    add("webp_lossless", webp(True, False))
    add("webp_lossy_alpha", webp(False, True))
    add("webp_lossless_alpha", webp(True, True))
    return out


def write_png_raw(path, w, h, color_type, depth, rows, interlace=False):
    """A PNG written directly (Pillow cannot write 16-bit RGB, 2/4-bit gray or Adam7)."""
    import struct
    import zlib

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    bpp = max(1, channels * depth // 8)

    def pack_rows(rs):
        out = b""
        for r in rs:
            if depth < 8:
                bits = "".join(format(int(v), f"0{depth}b") for v in r.reshape(-1))
                bits += "0" * (-len(bits) % 8)
                raw = int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""
            elif depth == 16:
                raw = r.astype(">u2").tobytes()
            else:
                raw = r.astype(np.uint8).tobytes()
            out += b"\x00" + raw
        return out

    if not interlace:
        data = pack_rows(rows)
    else:
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
        data = b""
        for x0, y0, dx, dy in passes:
            sub = rows[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                data += pack_rows(sub)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 1 if interlace else 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b""))


def raw_cases(img_dir):
    out = []
    for name, (w, h) in [("png_rgb16", SIZES["mid"]), ("png_rgba16", SIZES["odd"]), ("png_gray2", SIZES["mid"]),
                         ("png_gray4", SIZES["odd"]), ("png_rgb_interlaced", SIZES["mid"]),
                         ("png_la16", SIZES["mid"]), ("png_p_interlaced", SIZES["odd"]),
                         ("png_gray16_mid", SIZES["mid"]), ("png_gray16_odd", SIZES["odd"])]:
        path = os.path.join(img_dir, name + ".png")
        if name == "png_rgb16":
            rows = (scene(w, h).astype(np.uint16) * 257 + rng.integers(0, 256, (h, w, 3))).astype(np.uint16)
            write_png_raw(path, w, h, 2, 16, rows)
        elif name == "png_rgba16":
            rows = (scene(w, h, True).astype(np.uint16) * 257 + rng.integers(0, 256, (h, w, 4))).astype(np.uint16)
            write_png_raw(path, w, h, 6, 16, rows)
        elif name.startswith("png_gray16"):
            # Mostly below 256 so that Pillow's clip to 8 bits in convert("RGB") leaves the resampling visible.
            rows = (scene(w, h)[..., 1].astype(np.uint16) * 2 + rng.integers(0, 40, (h, w))).astype(np.uint16)[..., None]
            write_png_raw(path, w, h, 0, 16, rows)
        elif name == "png_la16":
            rows = (scene(w, h, True)[..., [0, 3]].astype(np.uint16) * 257).astype(np.uint16)
            write_png_raw(path, w, h, 4, 16, rows)
        elif name in ("png_gray2", "png_gray4"):
            d = 2 if name.endswith("2") else 4
            rows = (scene(w, h)[..., 1].astype(np.int64) >> (8 - d)).astype(np.uint8)[..., None]
            write_png_raw(path, w, h, 0, d, rows)
        elif name == "png_rgb_interlaced":
            write_png_raw(path, w, h, 2, 8, scene(w, h), interlace=True)
        else:
            # Palette + Adam7: reuse Pillow's palette, write indices ourselves.
            q = Image.fromarray(scene(w, h)).quantize(colors=256)
            import struct
            import zlib
            pal = bytes(q.getpalette()[: 3 * 256])
            idx = np.array(q)[..., None]
            write_png_raw(path, w, h, 0, 8, idx, interlace=True)
            raw = open(path, "rb").read()
            # turn the grayscale IHDR into palette (type 3) and insert PLTE before IDAT
            ihdr = struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 1)
            def chunk(t, d):
                return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
            idat_at = raw.index(b"IDAT") - 4
            with open(path, "wb") as f:
                f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"PLTE", pal) + raw[idat_at:])
        out.append((name, path))
    return out


def reference_crop(im, n):
    t = Compose([Resize(n, interpolation=InterpolationMode.BICUBIC), CenterCrop(n)])
    return np.array(t(im).convert("RGB"), dtype=np.uint8)


def main():
    img_dir = os.path.join(OUT, "images")
    os.makedirs(img_dir, exist_ok=True)
    files = []
    for name, make, (w, h) in cases():
        files.append((name, make(w, h, os.path.join(img_dir, name))))
    files += raw_cases(img_dir)
    # An EXIF-rotated JPEG (orientation 6: the camera was turned clockwise).
    exif_path = os.path.join(img_dir, "jpeg_exif_rotated.jpg")
    im = Image.fromarray(scene(97, 61))
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(exif_path, "JPEG", quality=90, exif=exif.tobytes())
    files.append(("jpeg_exif_rotated", exif_path))

    tensors, manifest = {}, []
    for name, path in files:
        im = Image.open(path)
        im.load()
        full = ("jpeg_420_photo", "png_rgba_odd", "png_p8_odd", "jpeg_cmyk_odd", "png_rgba16_odd", "webp_lossy_alpha_odd")
        resolutions = [64] + ([224] if name in full else [])
        decoded = np.array(im)
        if decoded.dtype == bool:
            decoded = decoded.astype(np.uint8) * 255
        if im.mode == "I;16":
            decoded = decoded.astype("<u2").view(np.uint8).reshape(decoded.shape[0], decoded.shape[1], 2)
        if decoded.ndim == 2:
            decoded = decoded[..., None]
        tensors[f"{name}/decoded"] = np.ascontiguousarray(decoded.astype(np.uint8))
        if im.mode == "P":
            pal = np.array(im.getpalette(), dtype=np.uint8).reshape(-1, 3)
            tensors[f"{name}/palette"] = pal
        for n in resolutions:
            tensors[f"{name}/{n}"] = reference_crop(Image.open(path), n)
        if name in ("jpeg_420_photo", "png_rgba_odd"):
            tensors[f"{name}/224/tensor"] = _transform(224)(Image.open(path)).numpy().astype(np.float32)
        # The EXIF-transposed reference, as ImageOps.exif_transpose then the transform.
        if name == "jpeg_exif_rotated":
            from PIL import ImageOps
            tensors[f"{name}/64/transposed"] = reference_crop(ImageOps.exif_transpose(Image.open(path)), 64)
        manifest.append({"name": name, "file": "images/" + os.path.basename(path), "mode": im.mode,
                         "width": im.size[0], "height": im.size[1], "resolutions": resolutions})
    save_file(tensors, os.path.join(OUT, "reference.safetensors"))
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"{len(manifest)} images")


if __name__ == "__main__":
    main()
