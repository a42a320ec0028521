#!/usr/bin/env python3
"""open_clip's timm image towers side by side in one run: PyTorch (open_clip + timm, fp32, --threads threads) and ONNX
Runtime (the image tower exported by torch.onnx, --threads intra-op threads) against swift-clip's `clip bench --model
FILE --images-only`, on random weights of the real architectures (throughput does not depend on weight values), batch
1 and 16, median of --repeat runs each. Prints rates and ratios. MobileCLIP's FastViT towers are reparameterised
(timm's `reparameterize_model`, as MobileCLIP's inference does) before PyTorch runs them and before the export.

    swift build -c release --product clip
    python Scripts/bench/bench_timm_towers.py [--models convnext_base MobileCLIP-S2 EVA02-B-16] [--repeat 5] [--no-onnx]

Each model is written once to a temporary safetensors file, with its open_clip config beside it (EVA's heads and
rotary embedding are not in the weights); ConvNeXt is timed at 224 pixels (the towers are convolutional;
convnext_large_d's tags use 256 or 320, which scales both sides alike), EVA and PE-Core at their config's size. The first lines name the CPU and the level
`clip` runs at (CLIP_CPU forces a lower one). Needs torch, open_clip_torch, timm, safetensors (the versions of
Scripts/fixtures/requirements-reference.txt).
"""
import argparse
import atexit
import json
import os
import re
import shutil
import subprocess
import tempfile

import copy
import gc

import avx2_proxy

avx2_proxy.apply()  # before torch loads: its ISA caps are read at load

import open_clip
import torch
from safetensors.torch import save_file

from bench_compare import cpu_name, median_time


def main():
    ap = argparse.ArgumentParser(allow_abbrev=False)  # avx2_proxy.apply looks for the whole flag
    ap.add_argument("--models", nargs="*", default=["convnext_base", "convnext_large_d", "EVA02-B-16", "PE-Core-B-16",
                                                    "MobileCLIP-S2"])
    ap.add_argument("--no-onnx", action="store_true", help="skip ONNX Runtime")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clip", default=".build/release/clip")
    ap.add_argument("--avx2-proxy", action="store_true", help="cap every side to AVX2 where it can be (avx2_proxy.py)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"CPU: {cpu_name()}; {a.threads} threads each; CLIP_CPU={os.environ.get('CLIP_CPU', '(native)')}")
    avx2_proxy.print_label(openvino=False)
    tmp = tempfile.mkdtemp()
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # checkpoints and ONNX exports are gigabytes
    print(f"{'model':<18} {'batch':>5} {'PyTorch img/s':>14} {'ORT img/s':>10} {'swift-clip img/s':>17} {'vs PyTorch':>11} {'vs ORT':>7}")
    for name in a.models:
        model, _, _ = open_clip.create_model_and_transforms(name, pretrained=None)
        model.eval()
        # The checkpoint and its config: `clip bench` times the tower at the config's size; PyTorch gets the same.
        cfg = open_clip.get_model_config(name)
        size = 224 if name.startswith("convnext") else cfg["vision_cfg"]["image_size"]
        path = os.path.join(tmp, name + ".safetensors")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
        with open(path + ".json", "w") as f:
            json.dump(cfg, f)
        visual = model.visual
        if "fastvit" in cfg["vision_cfg"].get("timm_model_name", ""):
            from timm.utils.model import reparameterize_model
            visual = reparameterize_model(copy.deepcopy(model.visual))
        session = None if a.no_onnx else onnx_session(visual, size, os.path.join(tmp, name + ".onnx"), a.threads)
        rates = {}
        for bs in (1, 16):
            x = torch.randn(bs, 3, size, size)
            with torch.inference_mode():
                ref = bs / median_time(lambda: visual(x), a.repeat)
            ort = bs / median_time(lambda: session.run(None, {"pixels": x.numpy()}), a.repeat) if session else None
            rates[bs] = (ref, ort)
        # swift-clip runs after the ONNX Runtime session is gone: its idle intra-op threads spin and took ~40 % of
        # the two cores from the `clip bench` process while the session lived (ViTamin-S: 8.5 against 12.3 img/s).
        del session
        gc.collect()
        for bs in (1, 16):
            ref, ort = rates[bs]
            out = subprocess.run([a.clip, "bench", "--model", path, "--openclip-config", path + ".json", "--images-only",
                                  "--batch", str(bs), "--repeat", str(a.repeat)],
                                 capture_output=True, text=True, check=True).stdout
            ours = float(re.search(r"image batch \d+: ([\d.]+) img/s", out).group(1))
            ort_text = f"{ort:>10.2f}" if ort else f"{'-':>10}"
            vs_ort = f"{ours / ort:>6.2f}x" if ort else f"{'-':>7}"
            print(f"{name:<18} {bs:>5} {ref:>14.2f} {ort_text} {ours:>17.2f} {ours / ref:>10.2f}x {vs_ort}")


def onnx_session(visual, size, path, threads):
    """The image tower exported to ONNX (batch dynamic) and loaded by ONNX Runtime with `threads` intra-op threads, or
    None when the export fails (the reason is printed)."""
    import onnxruntime as ort

    try:
        torch.onnx.export(visual, (torch.randn(1, 3, size, size),), path, input_names=["pixels"], output_names=["features"],
                          dynamic_axes={"pixels": {0: "batch"}}, opset_version=17, dynamo=False)
    except Exception as e:  # noqa: BLE001 - any exporter failure means no ORT column, not no benchmark
        print(f"  (ONNX export failed: {type(e).__name__}: {str(e)[:120]})")
        return None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


if __name__ == "__main__":
    main()
