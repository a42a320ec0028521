#!/usr/bin/env python3
"""Writes Tests/CLIPImageTests/Fixtures/heif: small HEIC files (pillow-heif's libheif with x265) and AVIF files
(Pillow's AVIF plugin), odd sizes, with and without alpha, a 10-bit HEIC and one of each with a rotation, and what
Pillow (with pillow-heif registered) decodes from each: reference.safetensors, uint8 [height, width, channels] under
the file's name, and exif_transpose of it under NAME/transposed. swift-clip decodes HEIC with Debian's libheif and
AVIF with Debian's libavif, so the comparison is across library versions (the HEVC and AV1 decoders are exact; the
YCbCr → RGB conversions may round differently).

    python3 -m venv /tmp/venv-pil && /tmp/venv-pil/bin/pip install pillow pillow-heif numpy safetensors
    /tmp/venv-pil/bin/python Scripts/make_heif_fixtures.py

Made with Pillow 13.0.0 and pillow-heif 1.9.0 (libheif 1.23.7).
"""
import json
import os

import numpy as np
import pillow_heif
from PIL import Image, ImageOps
from safetensors.numpy import save_file

pillow_heif.register_heif_opener()
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "CLIPImageTests", "Fixtures", "heif")


def picture(w, h, alpha=False):
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(x / 7.0) * np.cos(y / 9.0)
    g = 255 * x / (w - 1)
    b = 255 * y / (h - 1)
    channels = [r, g, b]
    if alpha:
        channels.append(np.where((x - w / 2) ** 2 + (y - h / 2) ** 2 < (min(w, h) / 3) ** 2, 255, 90))
    a = np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8)
    a[0:4, 0:4, :3] = [255, 0, 0]  # a corner that shows a turn
    return a


def main():
    os.makedirs(OUT, exist_ok=True)
    made = {}
    made["heic_rgb.heic"] = lambda p: Image.fromarray(picture(67, 45)).save(p, format="HEIF", quality=90)
    made["heic_rgba.heic"] = lambda p: Image.fromarray(picture(51, 38, alpha=True), "RGBA").save(p, format="HEIF", quality=90)

    def ten_bit(p):
        a = picture(49, 33).astype(np.uint16) * 4 + 1  # 10-bit values
        heif = pillow_heif.from_bytes(mode="RGB;16", size=(49, 33), data=(a * 64).astype("<u2").tobytes())
        heif.save(p, quality=90)
    made["heic_10bit.heic"] = ten_bit

    def rotated(p):
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.fromarray(picture(40, 26)).save(p, format="HEIF", quality=90, exif=exif.tobytes())
    made["heic_rotated.heic"] = rotated
    made["avif_rgb.avif"] = lambda p: Image.fromarray(picture(67, 45)).save(p, format="AVIF", quality=90)
    made["avif_rgba.avif"] = lambda p: Image.fromarray(picture(51, 38, alpha=True), "RGBA").save(p, format="AVIF", quality=90)

    def avif_rotated(p):
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.fromarray(picture(40, 26)).save(p, format="AVIF", quality=90, exif=exif.tobytes())
    made["avif_rotated.avif"] = avif_rotated

    def avif_animated(p):
        frames = [Image.fromarray(picture(45, 31)), Image.fromarray(255 - picture(45, 31))]
        frames[0].save(p, format="AVIF", quality=90, save_all=True, append_images=frames[1:], duration=100)
    made["avif_animated.avif"] = avif_animated

    tensors, manifest = {}, []
    for name, make in made.items():
        path = os.path.join(OUT, name)
        make(path)
        with Image.open(path) as im:
            mode = "RGBA" if "A" in im.mode else "RGB"
            a = np.ascontiguousarray(np.array(im.convert(mode), dtype=np.uint8))
            # Pillow's AVIF plugin leaves the pixels as stored and reports irot/imir as the EXIF orientation;
            # pillow-heif turns HEIC pixels itself.
            turned = np.ascontiguousarray(np.array(ImageOps.exif_transpose(im).convert(mode), dtype=np.uint8))
        tensors[name] = a
        tensors[name + "/transposed"] = turned
        manifest.append({"file": name, "width": a.shape[1], "height": a.shape[0], "channels": a.shape[2]})
    save_file(tensors, os.path.join(OUT, "reference.safetensors"))
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(json.dumps(manifest))


if __name__ == "__main__":
    main()
