#!/usr/bin/env python3
"""Writes Tests/CLIPImageTests/Fixtures/resize_modes.safetensors: what open_clip's inference transform makes of the
committed test images (make_image_fixtures.py) in its other resize modes, for `ImagePreprocessor.ResizeMode`:

- NAME/squash/R, NAME/longest/R   the 8-bit RGB image after open_clip's resize steps and convert("RGB"), before
                                  ToTensor (U8 [R, R, 3]); R = 64 for every image, the odd 37 for the odd, wide,
                                  tall and small ones
- jpeg_420_photo/MODE/224/tensor  the whole transform's output (F32 [3, 224, 224])
- the same as NAME/MODE-bilinear/R and jpeg_420_photo/MODE-bilinear/224/tensor for MODE shortest and squash with
  interpolation="bilinear" (CLIPA's)

open_clip.transform.image_transform(R, is_train=False, resize_mode=MODE) is a Compose whose last two steps are
MaybeToTensor and Normalize; everything before them runs here on the PIL image.

Needs: open_clip_torch, Pillow, numpy, safetensors (the reference venv).
"""
import json
import os

import numpy as np
from PIL import Image
from safetensors.numpy import save_file
from open_clip.transform import image_transform

FIX = os.path.join(os.path.dirname(__file__), "..", "Tests", "CLIPImageTests", "Fixtures")


def main():
    manifest = json.load(open(os.path.join(FIX, "manifest.json")))
    tensors = {}
    for mode in ("squash", "longest"):
        for r in (64, 37):
            steps = image_transform(r, is_train=False, resize_mode=mode).transforms[:-2]
            for e in manifest:
                if r == 37 and not e["name"].endswith(("_odd", "_wide", "_tall", "_small")):
                    continue
                im = Image.open(os.path.join(FIX, e["file"]))
                for t in steps:
                    im = t(im)
                tensors[f"{e['name']}/{mode}/{r}"] = np.ascontiguousarray(np.array(im.convert("RGB"), dtype=np.uint8))
        full = image_transform(224, is_train=False, resize_mode=mode)
        for name in ("jpeg_420_photo",):
            e = next(x for x in manifest if x["name"] == name)
            tensors[f"{name}/{mode}/224/tensor"] = full(Image.open(os.path.join(FIX, e["file"]))).numpy().astype(np.float32)
    # CLIPA's bilinear filter (open_clip's interpolation="bilinear"), with the shortest and squash modes.
    for mode in ("shortest", "squash"):
        for r in (64, 37):
            steps = image_transform(r, is_train=False, resize_mode=mode, interpolation="bilinear").transforms[:-2]
            for e in manifest:
                if r == 37 and not e["name"].endswith(("_odd", "_wide", "_tall", "_small")):
                    continue
                im = Image.open(os.path.join(FIX, e["file"]))
                for t in steps:
                    im = t(im)
                tensors[f"{e['name']}/{mode}-bilinear/{r}"] = np.ascontiguousarray(np.array(im.convert("RGB"), dtype=np.uint8))
        full = image_transform(224, is_train=False, resize_mode=mode, interpolation="bilinear")
        e = next(x for x in manifest if x["name"] == "jpeg_420_photo")
        tensors[f"jpeg_420_photo/{mode}-bilinear/224/tensor"] = full(Image.open(os.path.join(FIX, e["file"]))).numpy().astype(np.float32)
    save_file(tensors, os.path.join(FIX, "resize_modes.safetensors"))
    print(f"{len(tensors)} references")


if __name__ == "__main__":
    main()
