#!/usr/bin/env python3
"""Side-by-side throughput in one run: OpenAI's PyTorch CLIP, ONNX Runtime on the exported towers, and swift-clip's
`clip bench`, on random weights of the real architectures (throughput does not depend on weight values), fp32,
2 threads each, median of --repeat runs. Prints a table of rates and ratios.

    swift build -c release --product clip
    python Scripts/bench/bench_compare.py [--repeat 3] [--clip .build/release/clip] [--preprocess-only]
    python Scripts/bench/bench_compare.py --tower-rounds 5 [--model ViT-B-32.pt]   # the tower targets, round by round

--preprocess-only compares just JPEG decoding + preprocessing: Pillow + torchvision (clip's `_transform(224)`) on one
thread, as in the anchor table, against `clip bench --preprocess` (one thread and all cores).

ONNX Runtime also runs its own dynamic int8 quantisation of the image tower (`quantize_dynamic`, QInt8 weights),
the peer of `--precision int8`. OpenVINO (when installed) runs the same exported image tower in fp32 (best of its
latency and throughput hints) and in int8 from NNCF post-training quantisation (calibrated on random inputs). The first lines name the CPU (AVX-512 or AVX2) and the level `clip` runs at
(`--avx2-proxy` caps clip, OpenVINO and PyTorch to AVX2: a proxy for an AVX2-only machine, labelled as such;
see avx2_proxy.py).

Needs: torch, clip-anytorch, onnxruntime, onnx, numpy; optionally openvino and nncf. Whole processes (model load
included) are compared by Scripts/bench/bench_process.py.
"""
import argparse
import atexit
import gc
import os
import re
import shutil
import subprocess
import tempfile
import time

import avx2_proxy

avx2_proxy.apply()  # before torch loads: its ISA caps are read at load

import numpy as np
import torch

try:
    from clip.model import CLIP
except ImportError:  # clip's package imports torchvision; its model.py alone does not need it
    import importlib.util
    import site
    _path = next(os.path.join(b, "clip", "model.py") for b in site.getsitepackages()
                 if os.path.exists(os.path.join(b, "clip", "model.py")))
    _spec = importlib.util.spec_from_file_location("clip_model", _path)
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
    CLIP = _module.CLIP


def cpu_name():
    """The CPU's model name and its widest vector extension, e.g. "AMD EPYC (AVX-512)"."""
    with open("/proc/cpuinfo") as f:
        text = f.read()
    model = re.search(r"model name\s*:\s*(.*)", text)
    flags = re.search(r"flags\s*:\s*(.*)", text).group(1).split()
    kind = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{model.group(1) if model else 'unknown CPU'} ({kind})"


def median_time(fn, reps):
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def tokens(bs):
    t = torch.zeros(bs, 77, dtype=torch.long)
    t[:, 0], t[:, 1:6], t[:, 6] = 49406, 320, 49407  # five-word prompts padded to 77, as the anchors
    return t


def jpeg_folder():
    """32 640x480 JPEGs, as the anchors make them."""
    from PIL import Image
    folder = tempfile.mkdtemp()
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # checkpoints and ONNX exports are gigabytes
    rng = np.random.default_rng(0)
    for i in range(32):
        arr = (rng.random((480, 640, 3)) * 255).astype(np.uint8) // 8 * 8
        Image.fromarray(arr).save(os.path.join(folder, f"{i:02d}.jpg"), "JPEG", quality=90)
    return folder, sorted(os.path.join(folder, f) for f in os.listdir(folder))


def reference_transform():
    """clip's `_transform(224)`; without torchvision, the same steps in Pillow and numpy (said so in the output)."""
    try:
        import clip as clip_package
        return clip_package.clip._transform(224)
    except ImportError:
        from bench_process import preprocess  # the same steps in Pillow and numpy
        print("(torchvision missing: the peers preprocess with Pillow + numpy, the same steps as clip's _transform)")
        return lambda im: torch.from_numpy(preprocess(im))


def compare_preprocessing(a, files):
    from PIL import Image
    torch.set_num_threads(1)
    pre = reference_transform()
    ref = len(files) / median_time(lambda: [pre(Image.open(f)) for f in files], max(a.repeat, 5))
    out = subprocess.run([a.clip, "bench", "--preprocess", *files], capture_output=True, text=True, check=True).stdout
    one = float(re.search(r"decode \+ preprocess, 1 thread: ([\d.]+) img/s", out).group(1))
    many = float(re.search(r"decode \+ preprocess, \d+ threads \(files\): ([\d.]+) img/s", out).group(1))
    torch.set_num_threads(a.threads)
    print(f"decode + preprocess 640x480 JPEG: Pillow + torchvision (1 thread) {ref:.1f} img/s; "
          f"swift-clip 1 thread {one:.1f} img/s ({one / ref:.2f}x), all cores {many:.1f} img/s ({many / ref:.2f}x)")


def openvino_tower(a, onnx_path, results, reference, xi):
    """OpenVINO fp32 (best of its latency and throughput hints) and NNCF int8 on the exported image tower."""
    try:
        import openvino as ov
    except ImportError:
        print("OpenVINO not installed: pip install openvino nncf")
        return
    core = ov.Core()

    def best_rate(model, bs, precision_hint):
        rates = []
        for hint in ("LATENCY", "THROUGHPUT"):
            req = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": a.threads, "PERFORMANCE_HINT": hint,
                                                    "INFERENCE_PRECISION_HINT": precision_hint}).create_infer_request()
            x = np.random.randn(bs, 3, 224, 224).astype(np.float32)
            rates.append(bs / median_time(lambda: req.infer({0: x}), a.repeat))
        return max(rates)

    model = core.read_model(onnx_path)
    for bs in (1, 16):
        results[("ViT-B/32", "image", bs, "ov")] = best_rate(model, bs, "f32")
    try:
        import nncf
    except ImportError:
        print("NNCF not installed: no OpenVINO int8 (pip install nncf)")
        return
    rng = np.random.default_rng(1)
    calibration = [rng.standard_normal((4, 3, 224, 224)).astype(np.float32) for _ in range(8)]
    quantized = nncf.quantize(model, nncf.Dataset(calibration), model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(calibration))
    for bs in (1, 16):
        results[("ViT-B/32", "image", bs, "ov-int8")] = best_rate(quantized, bs, "f32")
    q = core.compile_model(quantized, "CPU", {"INFERENCE_NUM_THREADS": a.threads}).create_infer_request().infer({0: xi})[0]
    cos = (reference * q).sum(1) / np.linalg.norm(reference, axis=1) / np.linalg.norm(q, axis=1)
    print(f"OpenVINO NNCF int8 vs fp32 image embeddings (random weights): cosine min {cos.min():.5f}")


def tower_rounds(a):
    """The issue's tower targets as rounds: ViT-B/32's image tower, fp32, at batch 1 and 16, each round running
    `clip bench` right before OpenVINO (best of its two hints) and ONNX Runtime on the same exported tower, so a slow
    spell of the machine lands on both sides of a round's ratio. Prints every round and the median and range of the
    rounds' ratios."""
    import onnxruntime as ort
    import openvino as ov
    print(f"CPU: {cpu_name()}; CLIP_CPU={os.environ.get('CLIP_CPU', '(native)')}")
    avx2_proxy.print_label()
    m = CLIP(512, 224, 12, 768, 32, 77, 49408, 512, 8, 12).float().eval()
    tmp = tempfile.mkdtemp()
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)

    class V(torch.nn.Module):
        def __init__(s, m): super().__init__(); s.m = m
        def forward(s, x): return s.m.encode_image(x)

    path = os.path.join(tmp, "v.onnx")
    torch.onnx.export(V(m), torch.randn(2, 3, 224, 224), path, input_names=["x"], dynamic_axes={"x": {0: "b"}},
                      opset_version=17, dynamo=False)
    del m
    gc.collect()
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    # Idle intra-op threads would otherwise spin on the cores the next `clip bench` needs.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    core = ov.Core()
    model = core.read_model(path)
    compiled = {hint: core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": a.threads, "PERFORMANCE_HINT": hint,
                                                        "INFERENCE_PRECISION_HINT": "f32"}).create_infer_request()
                for hint in ("LATENCY", "THROUGHPUT")}
    env = dict(os.environ, CLIP_NUM_THREADS=str(a.threads))
    source = ["--model", a.model] if a.model else ["--architecture", "ViT-B/32"]
    ratios = {(bs, peer): [] for bs in (1, 16) for peer in ("ov", "ort")}
    for r in range(a.tower_rounds):
        for bs in (1, 16):
            out = subprocess.run([a.clip, "bench", *source, "--images-only", "--batch", str(bs), "--repeat",
                                  str(a.repeat)], capture_output=True, text=True, env=env, check=True).stdout
            ours = float(re.search(r"image batch \d+: ([\d.]+) img/s", out).group(1))
            x = np.random.randn(bs, 3, 224, 224).astype(np.float32)
            ov_rate = max(bs / median_time(lambda: req.infer({0: x}), a.repeat) for req in compiled.values())
            ort_rate = bs / median_time(lambda: session.run(None, {"x": x}), a.repeat)
            ratios[(bs, "ov")].append(ours / ov_rate)
            ratios[(bs, "ort")].append(ours / ort_rate)
            print(f"round {r + 1} batch {bs:>2}: swift-clip {ours:6.2f} img/s, OpenVINO {ov_rate:6.2f} "
                  f"({ours / ov_rate:.2f}x), ONNX Runtime {ort_rate:6.2f} ({ours / ort_rate:.2f}x)", flush=True)
            time.sleep(0.5)
    print(f"\nViT-B/32 image tower fp32, {a.tower_rounds} rounds: median of the rounds' ratios (range)")
    for bs in (1, 16):
        for peer, name in (("ov", "OpenVINO fp32"), ("ort", "ONNX Runtime fp32")):
            v = ratios[(bs, peer)]
            print(f"  batch {bs:>2} vs {name:<18} {float(np.median(v)):.2f}x ({min(v):.2f}-{max(v):.2f})")


def main():
    ap = argparse.ArgumentParser(allow_abbrev=False)  # avx2_proxy.apply looks for the whole flag
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--clip", default=".build/release/clip")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--preprocess-only", action="store_true")
    ap.add_argument("--tower-rounds", type=int, default=0,
                    help="only ViT-B/32's fp32 image tower against OpenVINO and ONNX Runtime, in this many rounds")
    ap.add_argument("--model", help="with --tower-rounds: a ViT-B/32 checkpoint for `clip bench --model` "
                                    "(loads from the packed-weight cache instead of drawing random weights)")
    ap.add_argument("--avx2-proxy", action="store_true", help="cap every side to AVX2 where it can be (avx2_proxy.py)")
    a = ap.parse_args()
    if a.tower_rounds > 0:
        torch.set_num_threads(a.threads)
        tower_rounds(a)
        return
    if a.preprocess_only:
        compare_preprocessing(a, jpeg_folder()[1])
        return
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    hw = "avx512f" if " avx512f" in flags else ("avx2" if " avx2" in flags else "neither AVX2 nor AVX-512")
    model = re.search(r"model name\s*:\s*(.*)", flags)
    level = re.search(r"CPU level: (\S+)", subprocess.run([a.clip, "bench", "--images-only", "--repeat", "1", "--batch", "1",
                                                          "--architecture", "RN50"], capture_output=True,
                                                         text=True).stdout)
    forced = os.environ.get("CLIP_CPU")
    print(f"CPU: {model.group(1) if model else 'unknown'} ({hw}); swift-clip runs at level "
          f"{level.group(1) if level else '?'}" + (f" (forced by CLIP_CPU={forced}: a proxy, not that machine)"
                                                   if forced and forced != "native" else ""))
    avx2_proxy.print_label()
    archs = {"ViT-B/32": lambda: CLIP(512, 224, 12, 768, 32, 77, 49408, 512, 8, 12),
             "RN50": lambda: CLIP(1024, 224, (3, 4, 6, 3), 64, None, 77, 49408, 512, 8, 12)}
    rows = []  # (case, torch, ort, ours)
    results = {}
    with torch.no_grad():
        for name, make in archs.items():
            m = make().float().eval()
            for bs in (1, 16):
                x = torch.randn(bs, 3, 224, 224)
                results[(name, "image", bs, "torch")] = bs / median_time(lambda: m.encode_image(x), a.repeat)
                tk = tokens(bs)
                results[(name, "text", bs, "torch")] = bs / median_time(lambda: m.encode_text(tk), a.repeat)
            if name == "ViT-B/32":
                try:
                    import onnxruntime as ort
                except ImportError:
                    ort = None
                if ort is not None:
                    tmp = tempfile.mkdtemp()
                    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # checkpoints and ONNX exports are gigabytes

                    class V(torch.nn.Module):
                        def __init__(s, m): super().__init__(); s.m = m
                        def forward(s, x): return s.m.encode_image(x)

                    class T(torch.nn.Module):
                        def __init__(s, m): super().__init__(); s.m = m
                        def forward(s, t): return s.m.encode_text(t)

                    torch.onnx.export(V(m), torch.randn(2, 3, 224, 224), os.path.join(tmp, "v.onnx"), input_names=["x"],
                                      dynamic_axes={"x": {0: "b"}}, opset_version=17, dynamo=False)
                    torch.onnx.export(T(m), tokens(2), os.path.join(tmp, "t.onnx"), input_names=["t"],
                                      dynamic_axes={"t": {0: "b"}}, opset_version=17, dynamo=False)
                    so = ort.SessionOptions()
                    so.intra_op_num_threads = a.threads
                    sv = ort.InferenceSession(os.path.join(tmp, "v.onnx"), so, providers=["CPUExecutionProvider"])
                    st = ort.InferenceSession(os.path.join(tmp, "t.onnx"), so, providers=["CPUExecutionProvider"])
                    from onnxruntime.quantization import QuantType, quantize_dynamic
                    quantize_dynamic(os.path.join(tmp, "v.onnx"), os.path.join(tmp, "v8.onnx"), weight_type=QuantType.QInt8)
                    sq = ort.InferenceSession(os.path.join(tmp, "v8.onnx"), so, providers=["CPUExecutionProvider"])
                    for bs in (1, 16):
                        xi = np.random.randn(bs, 3, 224, 224).astype(np.float32)
                        results[(name, "image", bs, "ort")] = bs / median_time(lambda: sv.run(None, {"x": xi}), a.repeat)
                        results[(name, "image", bs, "ort-int8")] = bs / median_time(lambda: sq.run(None, {"x": xi}),
                                                                                    a.repeat)
                        ti = tokens(bs).numpy()
                        results[(name, "text", bs, "ort")] = bs / median_time(lambda: st.run(None, {"t": ti}), a.repeat)
                    xi = np.random.randn(4, 3, 224, 224).astype(np.float32)
                    f, q = sv.run(None, {"x": xi})[0], sq.run(None, {"x": xi})[0]
                    cos = (f * q).sum(1) / np.linalg.norm(f, axis=1) / np.linalg.norm(q, axis=1)
                    print(f"ONNX Runtime int8 vs fp32 image embeddings (random weights): cosine min {cos.min():.5f}")
                    openvino_tower(a, os.path.join(tmp, "v.onnx"), results, f, xi)
                    # Live sessions keep spinning intra-op threads that take the cores from the `clip` processes
                    # timed below (bench_timm_towers.py measured ~40 % of them).
                    del sv, st, sq
                    gc.collect()
            del m
    # End to end: a folder of 640x480 JPEGs (as the anchors make them), decoded, preprocessed and embedded with
    # ViT-B/32 in batches of 16 — PyTorch with Pillow/torchvision in the loop, and `clip bench --folder`.
    from PIL import Image
    folder, files = jpeg_folder()
    pre = reference_transform()
    m = archs["ViT-B/32"]().float().eval()

    def torch_folder():
        with torch.no_grad():
            for s in range(0, len(files), 16):
                x = torch.stack([pre(Image.open(f)) for f in files[s:s + 16]])
                e = m.encode_image(x)
                e / e.norm(dim=-1, keepdim=True)

    results[("ViT-B/32", "folder", 16, "torch")] = len(files) / median_time(torch_folder, a.repeat)
    del m
    env = dict(os.environ, CLIP_NUM_THREADS=str(a.threads))
    gemm = subprocess.run([a.clip, "bench", "--gemm", "--repeat", "1"], capture_output=True, text=True).stdout
    precisions = ["fp32"] + [p for p in ("bf16", "int8") if f"packed {p}" in gemm]
    for precision in precisions:
        for name in archs:
            for bs in (1, 16):
                out = subprocess.run([a.clip, "bench", "--architecture", name, "--batch", str(bs), "--repeat",
                                      str(a.repeat), "--precision", precision],
                                     capture_output=True, text=True, env=env, check=True).stdout
                tag = "ours" if precision == "fp32" else f"ours-{precision}"
                results[(name, "image", bs, tag)] = float(re.search(r"image batch \d+: ([\d.]+) img/s", out).group(1))
                results[(name, "text", bs, tag)] = float(re.search(r"text batch \d+: ([\d.]+) txt/s", out).group(1))
                results[(name, "rss", bs, tag)] = re.search(r"peak RSS: (\d+) MiB", out).group(1)
        out = subprocess.run([a.clip, "bench", "--architecture", "ViT-B/32", "--batch", "16", "--repeat", str(a.repeat),
                              "--precision", precision, "--folder", folder],
                             capture_output=True, text=True, env=env, check=True).stdout
        results[("ViT-B/32", "folder", 16, "ours" if precision == "fp32" else f"ours-{precision}")] = float(
            re.search(r"([\d.]+) img/s end to end", out).group(1))
    for tag, label in [("ours", "swift-clip fp32"), ("ours-bf16", "swift-clip bf16 (vs fp32 PyTorch / ORT)"),
                       ("ours-int8", "swift-clip int8 (vs fp32 PyTorch / ORT)")]:
        if (list(archs)[0], "image", 1, tag) not in results:
            continue
        print(f"\n{label}")
        print(f"{'case':<28}{'PyTorch':>10}{'ONNX RT':>10}{'swift-clip':>12}{'vs PyTorch':>12}{'vs ORT':>9}")
        for name in archs:
            for kind in ("image", "text"):
                for bs in (1, 16):
                    t = results.get((name, kind, bs, "torch"))
                    o = results.get((name, kind, bs, "ort"))
                    s = results[(name, kind, bs, tag)]
                    unit = "img/s" if kind == "image" else "txt/s"
                    print(f"{name + ' ' + kind + ' bs' + str(bs) + ' (' + unit + ')':<28}{t:>10.2f}"
                          f"{(f'{o:.2f}' if o else '-'):>10}{s:>12.2f}{s / t:>11.2f}×"
                          f"{(f'{s / o:.2f}×' if o else '-'):>9}")
        t, s_ = results[("ViT-B/32", "folder", 16, "torch")], results[("ViT-B/32", "folder", 16, tag)]
        tower = results[("ViT-B/32", "image", 16, tag)]
        print(f"{'ViT-B/32 folder of 640x480 JPEGs, bs16 (img/s)':<48}{t:>8.2f} (PyTorch + Pillow){s_:>10.2f}{s_ / t:>8.2f}×"
              f"  ({s_ / tower:.2f}× its own image tower)")
        for bs in (1, 16):
            s_ = results[("ViT-B/32", "image", bs, tag)]
            for peer, name in (("ov", "OpenVINO fp32"), ("ov-int8", "OpenVINO NNCF int8")):
                v = results.get(("ViT-B/32", "image", bs, peer))
                if v and (peer == "ov" or tag == "ours-int8"):
                    print(f"ViT-B/32 image bs{bs}: {name} {v:.2f} img/s; {label} {s_:.2f} ({s_ / v:.2f}× {name})")
        if tag == "ours-int8":
            for bs in (1, 16):
                q = results.get(("ViT-B/32", "image", bs, "ort-int8"))
                if q:
                    s8 = results[("ViT-B/32", "image", bs, tag)]
                    print(f"ViT-B/32 image bs{bs}: ONNX Runtime int8 (dynamic quantisation) {q:.2f} img/s; "
                          f"swift-clip int8 {s8:.2f} ({s8 / q:.2f}× ORT int8)")
        print(f"peak RSS, ViT-B/32 bs16 (image+text): {results[('ViT-B/32', 'rss', 16, tag)]} MiB")
    print()
    compare_preprocessing(a, files)


if __name__ == "__main__":
    main()
