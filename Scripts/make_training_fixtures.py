#!/usr/bin/env python3
"""Writes the training fixtures of Tests/CLIPTrainingTests/Fixtures from open_clip (the reference for training).

A small CLIP with odd sizes (24-pixel images in 6-pixel patches, 4 vision heads of 16, 3 text heads of 16, an
embedding of 40, QuickGELU) built by open_clip, its LayerNorms and biases perturbed so their gradients are not
trivial:

  small_clip.safetensors          the initial weights (OpenAI key names) and the model's config as metadata
  small_clip_gradients.safetensors  one batch (pixels, tokens), its ClipLoss and every parameter's gradient
  small_clip_run.safetensors      5 batches and the loss of each of 50 steps of AdamW (betas 0.9/0.98, eps 1e-6,
                                  weight decay 0.2 on matrices other than embeddings), warm-up + cosine learning rate,
                                  gradient-norm clipping at 1, logit scale clamped to [0, ln 100]

Everything runs in float64, so the fixtures are the exact values that fp32 implementations approximate.

Usage: python Scripts/make_training_fixtures.py [output-dir]   (needs torch, open_clip_torch, safetensors)

       python Scripts/make_training_fixtures.py --check-checkpoint MODEL.safetensors [--clip .build/release/clip]
           loads a checkpoint written by `clip train` in the reference `clip` package's build_model and in open_clip,
           unchanged (strict key matching), and checks that both give swift-clip's embeddings (`clip embed --raw`)
           for the example images and a few captions within 1e-5 relative error (fails otherwise).
"""
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
from safetensors.torch import save_file

CONFIG = dict(embed_dim=40, image_size=24, patch_size=6, vision_width=64, vision_head_width=16, vision_layers=2,
              context_length=13, vocab_size=100, text_width=48, text_heads=3, text_layers=2)


def build_model():
    torch.manual_seed(0)
    c = CONFIG
    vision = CLIPVisionCfg(layers=c["vision_layers"], width=c["vision_width"], head_width=c["vision_head_width"],
                           patch_size=c["patch_size"], image_size=c["image_size"])
    text = CLIPTextCfg(context_length=c["context_length"], vocab_size=c["vocab_size"], width=c["text_width"],
                       heads=c["text_heads"], layers=c["text_layers"])
    model = CLIP(c["embed_dim"], vision, text, quick_gelu=True).double()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and not name.endswith("class_embedding"):  # LayerNorm gains and every bias
                p.add_(0.1 * torch.randn_like(p))
    return model


def batch(generator, n):
    c = CONFIG
    pixels = torch.randn(n, 3, c["image_size"], c["image_size"], generator=generator, dtype=torch.float64)
    tokens = torch.zeros(n, c["context_length"], dtype=torch.long)
    for i in range(n):
        length = int(torch.randint(1, c["context_length"] - 1, (1,), generator=generator))
        tokens[i, 0] = c["vocab_size"] - 2  # start of text
        tokens[i, 1:length] = torch.randint(1, c["vocab_size"] - 2, (length - 1,), generator=generator)
        tokens[i, length] = c["vocab_size"] - 1  # end of text: the largest id
    return pixels, tokens


def loss_of(model, pixels, tokens):
    image = model.encode_image(pixels)
    text = model.encode_text(tokens)
    return ClipLoss()(F.normalize(image, dim=-1), F.normalize(text, dim=-1), model.logit_scale.exp())


def state(model):
    return {k: v.detach().float().contiguous() for k, v in model.state_dict().items() if k != "attn_mask"}


def run(model, batches, steps=50, lr=2e-3, warmup=5, max_norm=1.0):
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.2}, {"params": rest, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.98), eps=1e-6)
    losses = []
    for step in range(steps):
        rate = lr * (step + 1) / warmup if step < warmup else \
            0.5 * (1 + math.cos(math.pi * (step - warmup) / (steps - warmup))) * lr
        for group in opt.param_groups:
            group["lr"] = rate
        pixels, tokens = batches[step % len(batches)]
        opt.zero_grad()
        loss = loss_of(model, pixels, tokens)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
    return losses


def check_checkpoint(path, clip_binary):
    import json
    import subprocess

    import clip as clip_package
    import open_clip
    from clip.model import build_model
    from PIL import Image
    from safetensors.torch import load_file

    state = load_file(path)
    images = sorted(str(p) for p in (Path(__file__).parent.parent / "Examples").glob("*.png"))
    texts = ["a blue star", "a red heart", "two small green circles on a white background"]
    args = [clip_binary, "embed", "--model", path, "--raw"] + sum((["--image", i] for i in images), []) + \
        sum((["--text", t] for t in texts), [])
    ours = json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)

    reference = build_model({k: v.clone() for k, v in state.items()}).float().eval()  # strict load_state_dict
    reference.load_state_dict(state, strict=True)  # build_model rounds to fp16; compare the fp32 values
    resolution = reference.visual.input_resolution
    preprocess = clip_package.clip._transform(resolution)
    pixels = torch.stack([preprocess(Image.open(p)) for p in images])
    tokens = clip_package.tokenize(texts)

    vision = state["visual.conv1.weight"]
    cfg = dict(embed_dim=state["text_projection"].shape[1],
               vision_cfg=CLIPVisionCfg(layers=reference.visual.transformer.layers, width=vision.shape[0],
                                        patch_size=vision.shape[2], image_size=resolution),
               text_cfg=CLIPTextCfg(context_length=state["positional_embedding"].shape[0],
                                    vocab_size=state["token_embedding.weight"].shape[0],
                                    width=state["ln_final.weight"].shape[0],
                                    heads=state["ln_final.weight"].shape[0] // 64,
                                    layers=reference.transformer.layers), quick_gelu=True)
    other = CLIP(**cfg).eval()
    other.load_state_dict(state, strict=True)
    worst = 0.0
    with torch.no_grad():
        for name, model in [("clip", reference), ("open_clip", other)]:
            for kind, got, want in [("image", model.encode_image(pixels), ours["image_embeddings"]),
                                    ("text", model.encode_text(tokens), ours["text_embeddings"])]:
                want = torch.tensor(want)
                e = ((got - want).norm() / want.norm()).item()
                worst = max(worst, e)
                print(f"{name:9} {kind:5} relative error {e:.2e}")
    if worst > 1e-5:
        sys.exit(f"FAIL: {path} differs from the references by {worst:.2e}")
    print(f"OK: {path} loads unchanged in clip.build_model and open_clip; embeddings within {worst:.1e}")


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--check-checkpoint":
        binary = sys.argv[sys.argv.index("--clip") + 1] if "--clip" in sys.argv else ".build/release/clip"
        return check_checkpoint(sys.argv[2], binary)
    out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent.parent / "Tests/CLIPTrainingTests/Fixtures")
    out.mkdir(parents=True, exist_ok=True)
    metadata = {k: str(v) for k, v in CONFIG.items()}
    model = build_model()
    save_file(state(model), str(out / "small_clip.safetensors"), metadata=metadata)

    g = torch.Generator().manual_seed(1)
    pixels, tokens = batch(g, 6)
    loss = loss_of(model, pixels, tokens)
    loss.backward()
    grads = {"grad." + n: p.grad.float().contiguous() for n, p in model.named_parameters()}
    grads.update(pixels=pixels.float(), tokens=tokens.float(), loss=loss.detach().float().reshape(1))
    save_file(grads, str(out / "small_clip_gradients.safetensors"))

    model = build_model()
    batches = [batch(g, 8) for _ in range(5)]
    losses = run(model, batches)
    tensors = {"losses": torch.tensor(losses, dtype=torch.float64).float()}
    for i, (p, t) in enumerate(batches):
        tensors[f"pixels.{i}"] = p.float()
        tensors[f"tokens.{i}"] = t.float()
    save_file(tensors, str(out / "small_clip_run.safetensors"))
    print("loss", loss.item(), "run", losses[0], "->", losses[-1])


if __name__ == "__main__":
    main()
