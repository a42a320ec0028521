#!/usr/bin/env python3
"""Training throughput side by side in one run: open_clip in PyTorch against `clip train`, on the same architecture
(the default model's, or --architecture tiny), the same batch size, fp32, 2 threads each. Prints images/s and peak
resident memory of each and their ratio.

PyTorch trains on random pixels and captions generated before timing (no data cost); `clip train` renders its
synthetic images in a background thread during the run (its data cost is included). Both use AdamW, clipping at 1,
the same warm-up; PyTorch runs the full 77-token context as open_clip does, swift-clip only the batch's longest
caption (the causal mask makes the rest irrelevant; the gradients are the same).

    swift build -c release --product clip
    python Scripts/bench/bench_train.py [--steps 20] [--batch-size 128] [--clip .build/release/clip]

Needs: torch, open_clip_torch.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

ARCHITECTURES = {
    "default": dict(embed=64, image=64, patch=8, vwidth=128, vlayers=4, twidth=64, tlayers=4),
    "tiny": dict(embed=32, image=16, patch=8, vwidth=64, vlayers=1, twidth=64, tlayers=1),
}


def torch_child(arch, steps, batch, threads):
    import torch
    import torch.nn.functional as F
    from open_clip.loss import ClipLoss
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
    torch.set_num_threads(threads)
    a = ARCHITECTURES[arch]
    model = CLIP(a["embed"], CLIPVisionCfg(layers=a["vlayers"], width=a["vwidth"], head_width=64, patch_size=a["patch"],
                                           image_size=a["image"]),
                 CLIPTextCfg(context_length=77, vocab_size=49408, width=a["twidth"], heads=a["twidth"] // 64,
                             layers=a["tlayers"]), quick_gelu=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2)
    loss_fn = ClipLoss()
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(4):
        pixels = torch.randn(batch, 3, a["image"], a["image"], generator=g)
        tokens = torch.zeros(batch, 77, dtype=torch.long)
        tokens[:, 0] = 49406
        tokens[:, 1:8] = torch.randint(1, 40000, (batch, 7), generator=g)
        tokens[:, 8] = 49407
        batches.append((pixels, tokens))

    def step(i):
        pixels, tokens = batches[i % 4]
        opt.zero_grad()
        img = model.encode_image(pixels)
        txt = model.encode_text(tokens)
        loss = loss_fn(F.normalize(img, dim=-1), F.normalize(txt, dim=-1), model.logit_scale.exp())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, 4.6052)

    for i in range(2):
        step(i)
    t = time.perf_counter()
    for i in range(steps):
        step(i)
    dt = time.perf_counter() - t
    print(f"RATE {steps * batch / dt:.2f}")


def run_measured(cmd, env=None):
    """Runs cmd, returns (stdout+stderr, peak RSS in MiB of that child alone)."""
    with tempfile.TemporaryFile(mode="w+") as log:
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, text=True)
        _, status, usage = os.wait4(p.pid, 0)
        log.seek(0)
        out = log.read()
    if status != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out}")
    return out, usage.ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--architecture", default="default", choices=sorted(ARCHITECTURES))
    ap.add_argument("--clip", default=".build/release/clip")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--torch-child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.torch_child:
        torch_child(a.architecture, a.steps, a.batch_size, a.threads)
        return
    with open("/proc/cpuinfo") as f:
        flags = re.search(r"^flags\s*:(.*)$", f.read(), re.M).group(1).split()
    isa = "avx512f" if "avx512f" in flags else ("avx2" if "avx2" in flags else "other")
    print(f"CPU: {isa}; {a.architecture} architecture, batch {a.batch_size}, {a.steps} timed steps, {a.threads} threads")
    # Each measurement in its own process, so that peak RSS is its own.
    out, torch_rss = run_measured([sys.executable, __file__, "--torch-child", "--steps", str(a.steps), "--batch-size",
                                   str(a.batch_size), "--architecture", a.architecture, "--threads", str(a.threads)])
    torch_rate = float(re.search(r"RATE ([\d.]+)", out).group(1))
    env = dict(os.environ, CLIP_NUM_THREADS=str(a.threads))
    with tempfile.TemporaryDirectory() as d:
        out, clip_rss = run_measured([a.clip, "train", "--data", "synthetic", "--architecture", a.architecture,
                                      "--steps", str(a.steps + 2), "--batch-size", str(a.batch_size), "--output",
                                      f"{d}/m.safetensors", "--log-every", "1", "--learning-rate", "1e-4",
                                      "--checkpoint-every", "1000000"], env)
    # Rate over the timed steps: from the line of step 2 to the last line.
    times = [(int(m.group(1)), float(m.group(2))) for m in re.finditer(r"step (\d+) .*? ([\d.]+) images/s", out)]
    first, last = times[1], times[-1]
    t_first, t_last = first[0] * a.batch_size / first[1], last[0] * a.batch_size / last[1]
    clip_rate = (last[0] - first[0]) * a.batch_size / (t_last - t_first)
    print(f"{'':14}{'images/s':>10}{'peak RSS MiB':>14}")
    print(f"{'PyTorch':14}{torch_rate:10.1f}{torch_rss:14.0f}")
    print(f"{'swift-clip':14}{clip_rate:10.1f}{clip_rss:14.0f}")
    print(f"ratio swift-clip / PyTorch: {clip_rate / torch_rate:.2f}x throughput, {clip_rss / torch_rss:.2f}x memory")


if __name__ == "__main__":
    main()
