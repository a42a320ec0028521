#!/usr/bin/env python3
"""Whole processes, as people run them, side by side in one run: the `clip` command from start to exit against ONNX
Runtime, OpenVINO (fp32, and int8 from NNCF post-training quantisation) and PyTorch doing the same job inside their
own process (model load included, interpreter start and imports not: that favours the peers).

    swift build -c release --product clip
    python Scripts/bench/bench_process.py [--repeat 3] [--clip .build/release/clip] [--work /tmp/bench-process]

Jobs: one image through `clip classify` and one text through `clip embed --text` (second run: the packed-weight cache
written by the first); 48 640x480 JPEGs embedded with ViT-B/32 (fp32 and int8) and with RN50; 512 prompts through the
ViT-B/32 text tower. Checkpoints are random-weight OpenAI-style TorchScript `.pt` files (fp16, as `~/.cache/clip`
holds them; throughput does not depend on weight values), written once into --work. Preprocessing for the peers is
Pillow bicubic resize + centre crop + numpy normalisation (clip's `_transform(224)` without torchvision). Prints the
CPU (AVX-512 or AVX2), medians of --repeat rounds (each runs every job once, a clip job next to its peers, after
a first round that is not counted) and the ratios, of the medians and round by round. `--avx2-proxy` caps clip, OpenVINO and
PyTorch to AVX2 on an AVX-512 CPU (avx2_proxy.py), labelled as a proxy.

Needs: torch, clip-anytorch (only its model.py is imported), onnx, onnxruntime, openvino, nncf, numpy, pillow.
"""
import argparse
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time

import avx2_proxy

avx2_proxy.apply()  # before torch loads: its ISA caps are read at load

import numpy as np
import torch
from PIL import Image

MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32).reshape(3, 1, 1)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32).reshape(3, 1, 1)


def clip_model_module():
    """OpenAI's clip/model.py alone (its package imports torchvision, which the peers do not need)."""
    import site
    for base in site.getsitepackages():
        path = os.path.join(base, "clip", "model.py")
        if os.path.exists(path):
            spec = importlib.util.spec_from_file_location("clip_model", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    sys.exit("clip-anytorch is not installed (pip install clip-anytorch 'setuptools<70')")


ARCHS = {"ViT-B-32": (512, 224, 12, 768, 32, 77, 49408, 512, 8, 12),
         "RN50": (1024, 224, (3, 4, 6, 3), 64, None, 77, 49408, 512, 8, 12)}


def preprocess(source):
    """clip's `_transform(224)` of a file or a PIL image: [3, 224, 224] float32."""
    im = (source if isinstance(source, Image.Image) else Image.open(source)).convert("RGB")
    w, h = im.size
    s = 224 / min(w, h)
    im = im.resize((max(224, round(w * s)), max(224, round(h * s))), Image.BICUBIC)
    w, h = im.size
    left, top = (w - 224) // 2, (h - 224) // 2
    a = np.asarray(im.crop((left, top, left + 224, top + 224)), dtype=np.float32).transpose(2, 0, 1) / 255
    return (a - MEAN) / STD


def prepare(work, cm):
    os.makedirs(work, exist_ok=True)
    torch.manual_seed(0)
    for name, args in ARCHS.items():
        pt, onnx_path = os.path.join(work, name + ".pt"), os.path.join(work, name + "-image.onnx")
        if os.path.exists(pt) and os.path.exists(onnx_path):
            continue
        m = cm.CLIP(*args).float().eval()

        class V(torch.nn.Module):
            def __init__(s, m): super().__init__(); s.m = m
            def forward(s, x): return s.m.encode_image(x)

        torch.onnx.export(V(m), torch.randn(2, 3, 224, 224), onnx_path, input_names=["x"], dynamic_axes={"x": {0: "b"}},
                          opset_version=17, dynamo=False)
        torch.save(m.state_dict(), os.path.join(work, name + "-fp32-state.pt"))
        cm.convert_weights(m)
        with torch.no_grad():
            traced = torch.jit.trace(m, (torch.randn(1, 3, 224, 224).half(), torch.zeros(1, 77, dtype=torch.long)),
                                     check_trace=False)
        traced.save(pt)
    folder = os.path.join(work, "jpegs")
    if not os.path.isdir(folder):
        os.makedirs(folder)
        rng = np.random.default_rng(0)
        for i in range(48):
            arr = (rng.random((480, 640, 3)) * 255).astype(np.uint8) // 8 * 8
            Image.fromarray(arr).save(os.path.join(folder, f"{i:02d}.jpg"), "JPEG", quality=90)
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder))
    int8 = os.path.join(work, "ViT-B-32-image-int8.xml")
    if not os.path.exists(int8):
        import nncf
        import openvino as ov
        model = ov.Core().read_model(os.path.join(work, "ViT-B-32-image.onnx"))
        calibration = [np.stack([preprocess(f) for f in files[i:i + 4]]) for i in range(0, 32, 4)]
        quantized = nncf.quantize(model, nncf.Dataset(calibration), model_type=nncf.ModelType.TRANSFORMER,
                                  subset_size=len(calibration))
        ov.save_model(quantized, int8)
    return files


def run_clip(clip, args, env):
    subprocess.run([clip] + args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def batches(files, size=16):
    return [files[i:i + size] for i in range(0, len(files), size)]


def main():
    ap = argparse.ArgumentParser(allow_abbrev=False)  # avx2_proxy.apply looks for the whole flag
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--clip", default=".build/release/clip")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "bench-process"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--avx2-proxy", action="store_true", help="cap every side to AVX2 where it can be (avx2_proxy.py)")
    a = ap.parse_args()
    if a.repeat < 1:
        ap.error("--repeat must be at least 1")
    cpuinfo = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    kind = "avx512f" if " avx512f" in cpuinfo else ("avx2" if " avx2" in cpuinfo else "neither AVX2 nor AVX-512")
    model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
    forced = os.environ.get("CLIP_CPU")
    print(f"CPU: {model.group(1) if model else 'unknown'} ({kind})"
          + (f"; clip forced to CLIP_CPU={forced} (a proxy, not that machine)" if forced and forced != "native" else ""))
    avx2_proxy.print_label()
    cm = clip_model_module()
    files = prepare(a.work, cm)
    torch.set_num_threads(a.threads)
    env = dict(os.environ, CLIP_NUM_THREADS=str(a.threads), CLIP_WEIGHT_CACHE=os.path.join(a.work, "weight-cache"))
    vit, rn = os.path.join(a.work, "ViT-B-32.pt"), os.path.join(a.work, "RN50.pt")
    prompts = [f"a photo of a number {i} thing" for i in range(512)]
    out = os.path.join(a.work, "out.npy")
    import onnxruntime as ort
    import openvino as ov

    def ort_job():
        so = ort.SessionOptions()
        so.intra_op_num_threads = a.threads
        s = ort.InferenceSession(os.path.join(a.work, "ViT-B-32-image.onnx"), so, providers=["CPUExecutionProvider"])
        for b in batches(files):
            s.run(None, {"x": np.stack([preprocess(f) for f in b])})

    def ov_job(path):
        def job():
            # OpenVINO's own compiled-model cache, the peer of clip's packed-weight cache; the latency hint runs one
            # request on every thread (the throughput hint gives each of its streams one thread, and a job that waits
            # for each batch uses one stream).
            core = ov.Core()
            core.set_property({"CACHE_DIR": os.path.join(a.work, "openvino-cache")})
            req = core.compile_model(path, "CPU", {"INFERENCE_NUM_THREADS": a.threads, "PERFORMANCE_HINT": "LATENCY",
                                                   "INFERENCE_PRECISION_HINT": "f32"}).create_infer_request()
            for b in batches(files):
                req.infer({0: np.stack([preprocess(f) for f in b])})
        return job

    def torch_rn_job():
        m = cm.CLIP(*ARCHS["RN50"])
        m.load_state_dict(torch.load(os.path.join(a.work, "RN50-fp32-state.pt")))
        m.eval()
        with torch.no_grad():
            for b in batches(files):
                m.encode_image(torch.from_numpy(np.stack([preprocess(f) for f in b])))

    def torch_text_job():
        m = cm.CLIP(*ARCHS["ViT-B-32"])
        m.load_state_dict(torch.load(os.path.join(a.work, "ViT-B-32-fp32-state.pt")))
        m.eval()
        tokens = torch.zeros(len(prompts), 77, dtype=torch.long)
        tokens[:, 0], tokens[:, 1:8], tokens[:, 8] = 49406, 320, 49407  # seven-token prompts, as the prompts above
        with torch.no_grad():
            for i in range(0, len(prompts), 64):
                m.encode_text(tokens[i:i + 64])

    images = sum((["--image", f] for f in files), [])
    texts = sum((["--text", p] for p in prompts), [])

    def ours(args):
        return lambda: run_clip(a.clip, args, env)

    # Each round runs every job once, a clip job next to its peers, so that a slow spell of this shared machine
    # lands on both sides of a ratio rather than on whichever side ran during it. The first round warms the page
    # cache and writes clip's packed-weight and label caches (and OpenVINO's), and is not counted.
    jobs = [("one image, clip classify, ViT-B/32 fp32", ours(["classify", "--model", vit, files[0], "--labels", "a cat", "a dog"])),
            ("one image, clip classify, ViT-B/32 int8", ours(["classify", "--precision", "int8", "--model", vit, files[0],
                                                               "--labels", "a cat", "a dog"])),
            ("one text, clip embed --text, ViT-B/32 fp32", ours(["embed", "--model", vit, "--text", "a cat"])),
            ("one text, clip embed --text, ViT-B/32 int8", ours(["embed", "--precision", "int8", "--model", vit, "--text", "a cat"])),
            ("48 JPEGs, ViT-B/32 fp32", ours(["embed", "--model", vit, "--output", out] + images)),
            ("ONNX Runtime + Pillow, 48 JPEGs ViT-B/32 fp32", ort_job),
            ("OpenVINO + Pillow, same, fp32", ov_job(os.path.join(a.work, "ViT-B-32-image.onnx"))),
            ("48 JPEGs, ViT-B/32 int8", ours(["embed", "--precision", "int8", "--model", vit, "--output", out] + images)),
            ("OpenVINO + Pillow, same, NNCF int8", ov_job(os.path.join(a.work, "ViT-B-32-image-int8.xml"))),
            ("48 JPEGs, RN50 fp32", ours(["embed", "--model", rn, "--output", out] + images)),
            ("PyTorch + Pillow, 48 JPEGs RN50", torch_rn_job),
            ("512 prompts, ViT-B/32 text fp32", ours(["embed", "--model", vit, "--output", out] + texts)),
            ("PyTorch, 512 prompts ViT-B/32 text", torch_text_job)]
    times = {label: [] for label, _ in jobs}
    for r in range(a.repeat + 1):
        for label, job in jobs:
            t = time.perf_counter()
            job()
            if r > 0:
                times[label].append(time.perf_counter() - t)
    median = {label: float(np.median(ts)) for label, ts in times.items()}
    peers = {"ONNX Runtime + Pillow, 48 JPEGs ViT-B/32 fp32", "OpenVINO + Pillow, same, fp32",
             "OpenVINO + Pillow, same, NNCF int8", "PyTorch + Pillow, 48 JPEGs RN50", "PyTorch, 512 prompts ViT-B/32 text"}

    print(f"\nswift-clip, whole `clip` process (median of {a.repeat} rounds after a first)")
    for label, _ in jobs:
        if label not in peers:
            print(f"  {label:<48}{median[label]:8.3f} s")
    print("\npeers, timed inside their process (model load included)")
    for label, _ in jobs:
        if label in peers:
            print(f"  {label:<48}{median[label]:8.3f} s")
    print("\nratios (peer time / swift-clip time; > 1: swift-clip faster): of the medians; the median and range of the "
          "rounds' own ratios")
    for label, peer, mine in [
            ("48 JPEGs fp32 vs ONNX Runtime fp32", "ONNX Runtime + Pillow, 48 JPEGs ViT-B/32 fp32", "48 JPEGs, ViT-B/32 fp32"),
            ("48 JPEGs fp32 vs OpenVINO fp32", "OpenVINO + Pillow, same, fp32", "48 JPEGs, ViT-B/32 fp32"),
            ("48 JPEGs int8 vs ONNX Runtime fp32", "ONNX Runtime + Pillow, 48 JPEGs ViT-B/32 fp32", "48 JPEGs, ViT-B/32 int8"),
            ("48 JPEGs int8 vs OpenVINO int8", "OpenVINO + Pillow, same, NNCF int8", "48 JPEGs, ViT-B/32 int8"),
            ("48 JPEGs RN50 vs PyTorch", "PyTorch + Pillow, 48 JPEGs RN50", "48 JPEGs, RN50 fp32"),
            ("512 prompts vs PyTorch", "PyTorch, 512 prompts ViT-B/32 text", "512 prompts, ViT-B/32 text fp32")]:
        per_round = [p / m for p, m in zip(times[peer], times[mine])]
        print(f"  {label:<48}{median[peer] / median[mine]:8.2f}x   rounds: median {np.median(per_round):.2f}x, "
              f"{min(per_round):.2f}-{max(per_round):.2f}x")


if __name__ == "__main__":
    main()
