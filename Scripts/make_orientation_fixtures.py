#!/usr/bin/env python3
"""Writes Tests/CLIPImageTests/Fixtures/orientation: a 23×15 picture saved with each EXIF orientation 1–8, as PNG
(eXIf chunk), JPEG (APP1) and lossless WebP (EXIF chunk), and what Pillow's ImageOps.exif_transpose makes of each
(reference.safetensors, uint8 [height, width, 3] under "png/N", "jpeg/N" and "webp/N"). And the places Pillow also
finds an orientation: XMP's tiff:Orientation when there is no EXIF one (JPEG APP1 XMP, PNG iTXt
XML:com.adobe.xmp, WebP XMP chunk: xmp_N.EXT, "xmp-EXT/N"), and a PNG whose eXIf chunk follows the image data
(late_exif_N.png, "late-png/N").

    python3 -m venv /tmp/venv-pil && /tmp/venv-pil/bin/pip install pillow numpy safetensors
    /tmp/venv-pil/bin/python Scripts/make_orientation_fixtures.py

Made with Pillow 13.0.0. An odd, non-square size, so that a swapped width and height or an off-by-one flip shows.
"""
import io
import os
import struct

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "CLIPImageTests", "Fixtures", "orientation")


def picture(w, h):
    # Distinct corners and gradients: any flip or turn moves them.
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 255 // (w - 1)).astype(np.uint8)
    g = (y * 255 // (h - 1)).astype(np.uint8)
    b = ((x + 2 * y) * 7 % 256).astype(np.uint8)
    a = np.stack([r, g, b], axis=-1)
    a[0:3, 0:3] = [255, 0, 0]
    return a


def chunk_list(data):
    chunks, at = [], 8
    while at < len(data):
        n = struct.unpack(">I", data[at:at + 4])[0]
        chunks.append(data[at:at + 12 + n])
        at += 12 + n
    return chunks


def main():
    os.makedirs(OUT, exist_ok=True)
    tensors = {}
    base = Image.fromarray(picture(23, 15))
    for o in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        for fmt, ext, kwargs in (("png", "png", {}), ("jpeg", "jpg", {"quality": 95, "subsampling": 0})):
            path = os.path.join(OUT, f"orientation_{o}.{ext}")
            base.save(path, format=fmt.upper(), exif=exif.tobytes(), **kwargs)
            with Image.open(path) as im:
                assert im.getexif().get(0x0112) == o
                tensors[f"{fmt}/{o}"] = np.ascontiguousarray(np.array(ImageOps.exif_transpose(im).convert("RGB"), dtype=np.uint8))
        path = os.path.join(OUT, f"orientation_{o}.webp")
        base.save(path, format="WEBP", lossless=True, exif=exif.tobytes())
        with Image.open(path) as im:
            assert im.getexif().get(0x0112) == o
            tensors[f"webp/{o}"] = np.ascontiguousarray(np.array(ImageOps.exif_transpose(im).convert("RGB"), dtype=np.uint8))
    for o in (3, 6, 8):
        xmp = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
               f'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="{o}"/></rdf:RDF></x:xmpmeta>')
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", xmp)
        for fmt, ext, kwargs in (("png", "png", {"pnginfo": info}), ("jpeg", "jpg", {"quality": 95, "subsampling": 0, "xmp": xmp.encode()}),
                                 ("webp", "webp", {"lossless": True, "xmp": xmp.encode()})):
            path = os.path.join(OUT, f"xmp_{o}.{ext}")
            base.save(path, format=fmt.upper(), **kwargs)
            with Image.open(path) as im:
                assert im.getexif().get(0x0112) == o, (path, im.getexif())
                tensors[f"xmp-{fmt}/{o}"] = np.ascontiguousarray(np.array(ImageOps.exif_transpose(im).convert("RGB"), dtype=np.uint8))
        # The eXIf chunk moved after IDAT (the chunks are independent; each carries its own CRC).
        exif = Image.Exif()
        exif[0x0112] = o
        buffer = io.BytesIO()
        base.save(buffer, format="PNG", exif=exif.tobytes())
        chunks, at, data = [], 8, buffer.getvalue()
        while at < len(data):
            n = struct.unpack(">I", data[at:at + 4])[0]
            chunks.append(data[at:at + 12 + n])
            at += 12 + n
        exif_chunk = next(c for c in chunks if c[4:8] == b"eXIf")
        rest = [c for c in chunks if c[4:8] != b"eXIf"]
        last_idat = max(i for i, c in enumerate(rest) if c[4:8] == b"IDAT")
        rest.insert(last_idat + 1, exif_chunk)
        path = os.path.join(OUT, f"late_exif_{o}.png")
        with open(path, "wb") as f:
            f.write(data[:8] + b"".join(rest))
        with Image.open(path) as im:
            assert im.getexif().get(0x0112) == o
            tensors[f"late-png/{o}"] = np.ascontiguousarray(np.array(ImageOps.exif_transpose(im).convert("RGB"), dtype=np.uint8))
    # Both EXIF (6) and XMP (3): EXIF wins. Two eXIf chunks, 3 before the image data and 6 after: the last wins.
    exif = Image.Exif()
    exif[0x0112] = 6
    xmp3 = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            '<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="3"/></rdf:RDF></x:xmpmeta>')
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp3)
    path = os.path.join(OUT, "exif_and_xmp.png")
    base.save(path, format="PNG", exif=exif.tobytes(), pnginfo=info)
    with Image.open(path) as im:
        assert im.getexif().get(0x0112) == 6
        tensors["exif-and-xmp/6"] = np.ascontiguousarray(np.array(ImageOps.exif_transpose(im).convert("RGB"), dtype=np.uint8))
    early = Image.Exif()
    early[0x0112] = 3
    buffer = io.BytesIO()
    base.save(buffer, format="PNG", exif=early.tobytes())
    data = buffer.getvalue()
    late = open(os.path.join(OUT, "late_exif_6.png"), "rb").read()
    late_chunk = next(c for c in chunk_list(late) if c[4:8] == b"eXIf")
    chunks = chunk_list(data)
    last_idat = max(i for i, c in enumerate(chunks) if c[4:8] == b"IDAT")
    chunks.insert(last_idat + 1, late_chunk)
    path = os.path.join(OUT, "two_exif.png")
    with open(path, "wb") as f:
        f.write(data[:8] + b"".join(chunks))
    with Image.open(path) as im:
        turned = ImageOps.exif_transpose(im)
        print("two eXIf chunks: Pillow reads", im.getexif().get(0x0112))
        tensors[f"two-exif/{im.getexif().get(0x0112)}"] = np.ascontiguousarray(np.array(turned.convert("RGB"), dtype=np.uint8))
    save_file(tensors, os.path.join(OUT, "reference.safetensors"))
    print(f"{len(tensors)} references in {OUT}")


if __name__ == "__main__":
    main()
