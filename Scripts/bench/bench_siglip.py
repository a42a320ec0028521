#!/usr/bin/env python3
"""SigLIP ViT-B/16 (224 px, 64 tokens) side by side in one run: transformers' SiglipModel and open_clip's
ViT-B-16-SigLIP (timm image tower) in PyTorch, against `clip bench` on the same random SiglipModel folder. fp32,
2 threads each, median of --repeat timed runs after a warm-up; rates and ratios.

    swift build -c release --product clip
    python Scripts/bench/bench_siglip.py [--batch 8] [--repeat 5] [--clip .build/release/clip] [--naflex]

With --naflex: SigLIP 2 NaFlex B/16 instead (transformers' Siglip2Model, google/siglip2-base-patch16-naflex's
configuration), every image a full 16×16 grid (256 patches, the default budget, no padding) in both.

Needs: torch, transformers, open_clip_torch, timm (and bench_compare.py's clip-anytorch). The folder (800 MB) is written to a temporary directory and
removed afterwards.
"""
import argparse
import re
import shutil
import subprocess
import tempfile

import avx2_proxy

avx2_proxy.apply()  # before torch loads: its ISA caps are read at load

import torch

from bench_compare import median_time


def main():
    ap = argparse.ArgumentParser(allow_abbrev=False)  # avx2_proxy.apply looks for the whole flag
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--clip", default=".build/release/clip")
    ap.add_argument("--naflex", action="store_true", help="SigLIP 2 NaFlex B/16 (Siglip2Model) instead")
    ap.add_argument("--avx2-proxy", action="store_true", help="cap every side to AVX2 where it can be (avx2_proxy.py)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    cpu = open("/proc/cpuinfo").read()
    print("CPU:", re.search(r"model name\s*:\s*(.*)", cpu).group(1),
          "| AVX-512" if " avx512f" in cpu else "| AVX2 (no AVX-512)", "| torch", torch.__version__, "| threads 2")
    avx2_proxy.print_label(openvino=False, onnxruntime=False)

    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel
    import open_clip

    if args.naflex:
        return naflex(args)

    b = args.batch
    pixels = torch.randn(b, 3, 224, 224)
    tokens = torch.randint(0, 32000, (b, 64))
    rows = []

    hf = SiglipModel(SiglipConfig()).eval()
    with torch.inference_mode():
        rows.append(("transformers SiglipModel",
                     b / median_time(lambda: hf.vision_model(pixel_values=pixels), args.repeat),
                     b / median_time(lambda: hf.text_model(input_ids=tokens), args.repeat)))
    folder = tempfile.mkdtemp()
    try:
        hf.save_pretrained(folder)
        SiglipImageProcessor(size={"height": 224, "width": 224}).save_pretrained(folder)
        del hf
        oc = open_clip.create_model("ViT-B-16-SigLIP").eval()
        with torch.inference_mode():
            rows.append(("open_clip ViT-B-16-SigLIP",
                         b / median_time(lambda: oc.encode_image(pixels), args.repeat),
                         b / median_time(lambda: oc.encode_text(tokens), args.repeat)))
        del oc
        rows.append(clip_bench(args, folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print_rows(rows, f"batch {b}, fp32")


def clip_bench(args, folder):
    """`clip bench` on a model folder → (name with its CPU level, img/s, txt/s)."""
    out = subprocess.run([args.clip, "bench", "--model", folder, "--batch", str(args.batch), "--repeat", str(args.repeat)],
                         check=True, capture_output=True, text=True).stdout
    img = float(re.search(r"image batch \d+: ([\d.]+) img/s", out).group(1))
    txt = float(re.search(r"text batch \d+: ([\d.]+) txt/s", out).group(1))
    level = re.search(r"CPU level: (\S+)", out).group(1)
    return (f"swift-clip ({level})", img, txt)


def print_rows(rows, title):
    """Rates and their ratios to the first row's."""
    print(title)
    print(f"{'':28s} {'img/s':>8s} {'× HF':>6s} {'txt/s':>8s} {'× HF':>6s}")
    for name, i, t in rows:
        print(f"{name:28s} {i:8.2f} {i / rows[0][1]:6.2f} {t:8.2f} {t / rows[0][2]:6.2f}")


def naflex(args):
    from transformers import Siglip2Config, Siglip2Model
    from transformers.models.siglip2.image_processing_pil_siglip2 import Siglip2ImageProcessorPil

    b = args.batch
    pixels = torch.randn(b, 256, 768)
    mask = torch.ones(b, 256, dtype=torch.int32)
    shapes = torch.tensor([[16, 16]] * b)
    tokens = torch.randint(0, 256000, (b, 64))
    hf = Siglip2Model(Siglip2Config(text_config=dict(vocab_size=256000))).eval()
    with torch.inference_mode():
        rows = [("transformers Siglip2Model",
                 b / median_time(lambda: hf.vision_model(pixel_values=pixels, pixel_attention_mask=mask,
                                                         spatial_shapes=shapes), args.repeat),
                 b / median_time(lambda: hf.text_model(input_ids=tokens), args.repeat))]
    folder = tempfile.mkdtemp()
    try:
        hf.save_pretrained(folder)
        Siglip2ImageProcessorPil(patch_size=16, max_num_patches=256).save_pretrained(folder)
        del hf
        rows.append(clip_bench(args, folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print_rows(rows, f"batch {b}, fp32, 256 patches per image")


if __name__ == "__main__":
    main()
