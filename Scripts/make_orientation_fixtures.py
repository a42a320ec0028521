#!/usr/bin/env python3
"""Writes Tests/CLIPImageTests/Fixtures/orientation: a 23×15 picture saved with each EXIF orientation 1–8, as PNG
(eXIf chunk) and as JPEG (APP1), and what Pillow's ImageOps.exif_transpose makes of each (reference.safetensors,
uint8 [height, width, 3] under "png/N" and "jpeg/N").

    python3 -m venv /tmp/venv-pil && /tmp/venv-pil/bin/pip install pillow numpy safetensors
    /tmp/venv-pil/bin/python Scripts/make_orientation_fixtures.py

Made with Pillow 13.0.0. An odd, non-square size, so that a swapped width and height or an off-by-one flip shows.
"""
import os

import numpy as np
from PIL import Image, ImageOps
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
    save_file(tensors, os.path.join(OUT, "reference.safetensors"))
    print(f"{len(tensors)} references in {OUT}")


if __name__ == "__main__":
    main()
