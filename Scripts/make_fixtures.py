#!/usr/bin/env python3
"""Writes CLIP model fixtures and the reference outputs of OpenAI's `clip` package for the Swift tests.

For each architecture: a randomly initialised `clip.model.CLIP` (fixed seed) whose LayerNorm weights and
biases, linear and attention biases, BatchNorm statistics and logit scale are set to non-trivial values (so a
swapped or ignored tensor shows), saved as safetensors with the reference's key names, plus the reference's
`encode_image`, `encode_text` and logits on fixed inputs.

    python Scripts/make_fixtures.py                        # small fixtures -> Tests/CLIPTests/Fixtures
    python Scripts/make_fixtures.py --full .fixtures-full  # full-size ViT-B/32 and RN50 (≈1 GB, not committed)

Needs: torch, clip-anytorch (OpenAI's clip), safetensors, numpy.
"""
import argparse
import json
import os

import torch
from clip.model import CLIP, LayerNorm, ModifiedResNet
from safetensors.torch import save_file

# (name, CLIP constructor arguments, overrides, batch of images, batch of texts)
# CLIP(embed_dim, image_resolution, vision_layers, vision_width, vision_patch_size,
#      context_length, vocab_size, transformer_width, transformer_heads, transformer_layers)
SMALL = [
    # A small ViT with the standard head dimension 64 (2 vision heads, 1 text head).
    ("vit_small", dict(embed_dim=48, image_resolution=64, vision_layers=2, vision_width=128, vision_patch_size=16,
                       context_length=16, vocab_size=400, transformer_width=64, transformer_heads=1,
                       transformer_layers=2), dict(), 3, 4),
    # Head dimension 32 in both towers, resolution 80 (5x5 grid of 16-pixel patches), one layer each. The reference
    # derives vision heads as width // 64, so the vision attention is switched to 2 heads after construction.
    ("vit_hd32_r80", dict(embed_dim=40, image_resolution=80, vision_layers=1, vision_width=64, vision_patch_size=16,
                          context_length=12, vocab_size=300, transformer_width=96, transformer_heads=3,
                          transformer_layers=1), dict(vision_heads=2), 2, 3),
    # A small modified ResNet, one block per stage.
    ("rn_small", dict(embed_dim=32, image_resolution=64, vision_layers=(1, 1, 1, 1), vision_width=8,
                      vision_patch_size=None, context_length=10, vocab_size=300, transformer_width=64,
                      transformer_heads=2, transformer_layers=1), dict(), 2, 3),
    # Stages (1, 2, 1, 1), fed 80-pixel images: the last pooling floors 5x5 to 2x2.
    ("rn_odd", dict(embed_dim=24, image_resolution=64, vision_layers=(1, 2, 1, 1), vision_width=8,
                    vision_patch_size=None, context_length=8, vocab_size=200, transformer_width=64,
                    transformer_heads=1, transformer_layers=2), dict(input_size=80), 2, 2),
]

FULL = [
    ("vit_b32", dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=32,
                     context_length=77, vocab_size=49408, transformer_width=512, transformer_heads=8,
                     transformer_layers=12), dict(), 2, 3),
    ("rn50", dict(embed_dim=1024, image_resolution=224, vision_layers=(3, 4, 6, 3), vision_width=64,
                  vision_patch_size=None, context_length=77, vocab_size=49408, transformer_width=512,
                  transformer_heads=8, transformer_layers=12), dict(), 2, 3),
]


def perturb(model, g):
    """Gives every LayerNorm, bias and BatchNorm statistic a value its default initialisation would not."""
    def rnd(t, scale, offset=0.0):
        return torch.randn(t.shape, generator=g) * scale + offset

    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, LayerNorm):
                module.weight.copy_(rnd(module.weight, 0.2, 1.0))
                module.bias.copy_(rnd(module.bias, 0.1))
            elif isinstance(module, torch.nn.BatchNorm2d):
                module.weight.copy_(rnd(module.weight, 0.2, 0.8))
                module.bias.copy_(rnd(module.bias, 0.1))
                module.running_mean.copy_(rnd(module.running_mean, 0.1))
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=g) + 0.5)
        for name, p in model.named_parameters():
            if name.endswith("bias") and "ln_" not in name and "bn" not in name and "downsample.1" not in name:
                p.copy_(rnd(p, 0.05))
        if hasattr(model.visual, "class_embedding"):
            model.visual.class_embedding.copy_(rnd(model.visual.class_embedding, 0.5))
        model.logit_scale.fill_(float(torch.log(torch.tensor(1 / 0.07))) + 0.3)


def set_vision_heads(model, heads):
    for block in model.visual.transformer.resblocks:
        block.attn.num_heads = heads
        block.attn.head_dim = block.attn.embed_dim // heads


def config_json(model, args, overrides, input_size):
    v = model.visual
    if isinstance(v, ModifiedResNet):
        vision = dict(type="resnet", layers=list(args["vision_layers"]), width=args["vision_width"],
                      heads=v.attnpool.num_heads, output_grid=round((v.attnpool.positional_embedding.shape[0] - 1) ** 0.5))
    else:
        vision = dict(type="vit", width=args["vision_width"], layers=args["vision_layers"],
                      heads=v.transformer.resblocks[0].attn.num_heads, patch_size=args["vision_patch_size"],
                      grid=args["image_resolution"] // args["vision_patch_size"])
    text = dict(context_length=args["context_length"], vocab_size=args["vocab_size"],
                width=args["transformer_width"], heads=args["transformer_heads"], layers=args["transformer_layers"])
    return dict(embed_dim=args["embed_dim"], vision=vision, text=text, input_size=input_size)


def make_tokens(g, n, ctx, vocab):
    """Rows like clip.tokenize's: start token, random ids, end token (the row's largest id), zero padding.
    Lengths include a one-token text, and a text filling the whole context."""
    sot, eot = vocab - 2, vocab - 1
    lengths = [1, ctx - 2, max(1, ctx // 3), max(1, ctx // 2)][:n]
    rows = []
    for length in lengths:
        ids = torch.randint(1, vocab - 2, (length,), generator=g).tolist()
        row = [sot] + ids + [eot]
        rows.append(row + [0] * (ctx - len(row)))
    return torch.tensor(rows, dtype=torch.int64)


def reference(model, pixels, tokens):
    with torch.no_grad():
        img = model.encode_image(pixels)
        txt = model.encode_text(tokens)
        per_image, per_text = model(pixels, tokens)
    return {"image_features": img, "text_features": txt, "logits_per_image": per_image, "logits_per_text": per_text}


def write(out_dir, name, model, args, overrides, n_img, n_txt, seed, dtypes=("F32",)):
    g = torch.Generator().manual_seed(seed + 1)
    input_size = overrides.get("input_size", args["image_resolution"])
    pixels = torch.randn((n_img, 3, input_size, input_size), generator=g)
    tokens = make_tokens(g, n_txt, args["context_length"], args["vocab_size"])
    cfg = config_json(model, args, overrides, input_size)
    for dtype in dtypes:
        state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        suffix = "" if dtype == "F32" else "_" + dtype.lower()
        if dtype != "F32":
            torch_dtype = {"F16": torch.float16, "BF16": torch.bfloat16}[dtype]
            state = {k: (v.to(torch_dtype) if v.is_floating_point() else v) for k, v in state.items()}
            # The reference runs on the rounded weights widened back to fp32, which is what the Swift side computes.
            rounded = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
            ref_model = CLIP(**args).eval()
            if "vision_heads" in overrides:
                set_vision_heads(ref_model, overrides["vision_heads"])
            ref_model.load_state_dict(rounded)
        else:
            ref_model = model
        save_file(state, os.path.join(out_dir, f"{name}{suffix}.safetensors"))
        outs = reference(ref_model, pixels, tokens)
        io = {"pixels": pixels.contiguous(), "tokens": tokens.contiguous()}
        io.update({k: v.contiguous() for k, v in outs.items()})
        save_file(io, os.path.join(out_dir, f"{name}{suffix}.reference.safetensors"))
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        json.dump(cfg, f, indent=1)
        f.write("\n")


def build(args, overrides, seed):
    torch.manual_seed(seed)
    model = CLIP(**args).float().eval()
    if "vision_heads" in overrides:
        set_vision_heads(model, overrides["vision_heads"])
    perturb(model, torch.Generator().manual_seed(seed + 100))
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "Tests", "CLIPTests", "Fixtures"))
    ap.add_argument("--full", metavar="DIR", help="write the full-size ViT-B/32 and RN50 fixtures to DIR instead")
    a = ap.parse_args()
    torch.set_num_threads(2)
    specs, out = (FULL, a.full) if a.full else (SMALL, a.out)
    os.makedirs(out, exist_ok=True)
    for i, (name, args, overrides, n_img, n_txt) in enumerate(specs):
        model = build(args, overrides, seed=1000 + i)
        dtypes = ("F32", "F16", "BF16") if name == "vit_small" else ("F32",)
        write(out, name, model, args, overrides, n_img, n_txt, seed=1000 + i, dtypes=dtypes)
        print(f"wrote {name} ({sum(p.numel() for p in model.parameters())} parameters)")


if __name__ == "__main__":
    main()
