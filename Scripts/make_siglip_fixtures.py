#!/usr/bin/env python3
"""Random-weight Hugging Face `SiglipModel` folders with transformers' outputs for them.

SigLIP differs from CLIP in every part `clip` had fixed: a patch convolution with bias, no class token and no
LayerNorm before the image transformer, GELU's tanh approximation, a multi-head attention-pooling head ("MAP")
instead of the class token, no image projection, a text transformer without causal mask read at its last position,
a text head with bias, and a learned logit bias. The models here are scaled down with sizes that do not divide
evenly (a 5×5 patch grid, 3 image heads of 16, a text width unlike the embedding), with non-trivial LayerNorm and
bias values, so a wrong transpose, mask or pooling position shows.

Per model NAME under Tests/CLIPTests/Fixtures/siglip:

  NAME/                       config.json, model.safetensors, preprocessor_config.json (save_pretrained)
  NAME.reference.safetensors  pixels, tokens, image_features, text_features, logits_per_image, logits_per_text,
                              tokens_short and text_features_short (rows shorter than the context)

`hf_siglip_spm` is the same structure with the 3,000-piece SentencePiece model of the tokenizer tests
(Tests/CLIPTokenizerTests/Fixtures/sentencepiece/unigram_nfkc.model) as its `spiece.model`, for the whole pipeline:
its reference holds `Examples/blue-star.png` as SiglipImageProcessor prepares it, three labels' rows as open_clip
tokenizes them (canonicalize, encode, </s>, padded with </s>), and the sigmoid probabilities
(`classify_pixels`, `classify_tokens`, `classify_probabilities`).

open_clip names SigLIP differently: a timm image tower (`visual.trunk.`, exact GELU, heads fixed by the timm
family) and its own text tower (`text.`, GELU or its tanh form by `act_kwargs`). `openclip_ARCH` are open_clip's
own configs for ARCH with the towers scaled down (timm.create_model given a smaller width, depth and image size;
the text tower 40 wide, one layer, 300 tokens), built by open_clip as `open_clip.CustomTextCLIP`, weights
rounded to fp16 and stored so, with NAME.json (the model config with its preprocess_cfg) and the same reference
tensors as above.

Needs: torch, transformers (5.x), safetensors, sentencepiece, open_clip_torch, timm, Pillow; run
Scripts/make_sentencepiece_fixtures.py first.
"""
import json
import math
import os

import torch
from safetensors.torch import save_file
from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

ROOT = os.path.join(os.path.dirname(__file__), "..")
OUT = os.path.join(ROOT, "Tests", "CLIPTests", "Fixtures", "siglip")

MODELS = {
    # B/16-like structure scaled down: 40-pixel images in 8-pixel patches.
    "hf_siglip_tiny": dict(
        vision=dict(hidden_size=48, intermediate_size=100, num_hidden_layers=2, num_attention_heads=3,
                    image_size=40, patch_size=8, layer_norm_eps=1e-6, hidden_act="gelu_pytorch_tanh"),
        text=dict(hidden_size=40, intermediate_size=72, num_hidden_layers=2, num_attention_heads=2,
                  vocab_size=300, max_position_embeddings=16, projection_size=48, layer_norm_eps=1e-6,
                  hidden_act="gelu_pytorch_tanh", pad_token_id=1, eos_token_id=1),
    ),
    "hf_siglip_spm": dict(
        vision=dict(hidden_size=48, intermediate_size=100, num_hidden_layers=2, num_attention_heads=3,
                    image_size=40, patch_size=8, layer_norm_eps=1e-6, hidden_act="gelu_pytorch_tanh"),
        text=dict(hidden_size=40, intermediate_size=72, num_hidden_layers=2, num_attention_heads=2,
                  vocab_size=3000, max_position_embeddings=16, projection_size=48, layer_norm_eps=1e-6,
                  hidden_act="gelu_pytorch_tanh", pad_token_id=1, eos_token_id=1),
    ),
}
SPM = os.path.join(ROOT, "Tests", "CLIPTokenizerTests", "Fixtures", "sentencepiece", "unigram_nfkc.model")
LABELS = ["a red heart", "a blue star", "A green circle!"]


def hf_norm(name, p):
    return name.endswith("layer_norm1.weight") or name.endswith("layer_norm2.weight") or "layernorm.weight" in name \
        or name.endswith("final_layer_norm.weight") or name.endswith("post_layernorm.weight")


def openclip_norm(name, p):
    return p.dim() == 1 and ("norm" in name or "ln_" in name) and name.endswith("weight")


def randomize(model, g, is_norm, vector_scale=1.0, half=False):
    """Random weights from generator `g` with non-trivial LayerNorm (`is_norm`) and bias values and the SigLIP logit
    scale and bias; other 1-D parameters scaled by `vector_scale`; `half` rounds every value to fp16."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if is_norm(name, p):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif name == "logit_scale":
                p.fill_(math.log(10) + 0.3)
            elif name == "logit_bias":
                p.fill_(-2.5)
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p.shape[-1] if p.dim() > 1 else 1
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(max(fan_in, 1)) * (1.0 if p.dim() > 1 else vector_scale))
            if half:
                p.copy_(p.half().float())


def classification(model, folder, res, ctx):
    import shutil

    import sentencepiece as spm
    from open_clip.tokenizer import basic_clean, canonicalize_text
    from PIL import Image

    shutil.copyfile(SPM, os.path.join(folder, "spiece.model"))
    sp = spm.SentencePieceProcessor(model_file=SPM)
    rows = []
    for label in LABELS:
        ids = sp.encode(canonicalize_text(basic_clean(label)))[: ctx - 1] + [sp.eos_id()]
        rows.append(ids + [sp.eos_id()] * (ctx - len(ids)))
    tokens = torch.tensor(rows, dtype=torch.int64)
    image = Image.open(os.path.join(ROOT, "Examples", "blue-star.png")).convert("RGB")
    pixels = SiglipImageProcessor(size={"height": res, "width": res})(image, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        out = model(input_ids=tokens, pixel_values=pixels)
    return {"classify_pixels": pixels.contiguous(), "classify_tokens": tokens.contiguous(),
            "classify_probabilities": torch.sigmoid(out.logits_per_image).contiguous()}


# open_clip architecture → (scaled vision width, image size): heads stay timm's width (64 for base, 72 for so400m).
OPENCLIP = {"ViT-B-16-SigLIP": (128, 48), "ViT-SO400M-14-SigLIP-384": (144, 56), "ViT-B-16-SigLIP2": (128, 48)}


def openclip_fixtures(full=None, only=None):
    import copy

    import open_clip
    import open_clip.timm_model as tm

    configs = os.path.join(os.path.dirname(open_clip.__file__), "model_configs")
    for i, (arch, (width, size)) in enumerate(OPENCLIP.items()):
        if only and arch not in only:
            continue
        cfg = json.load(open(os.path.join(configs, arch + ".json")))
        cfg = copy.deepcopy(cfg)
        if not full:
            cfg["embed_dim"] = width
            cfg["vision_cfg"]["image_size"] = size
            cfg["text_cfg"].update(width=40, heads=2, layers=1, vocab_size=300, context_length=16)
        size = cfg["vision_cfg"]["image_size"]
        vocab, ctx = cfg["text_cfg"]["vocab_size"], cfg["text_cfg"]["context_length"]
        head = 72 if "SO400M" in arch else 64
        real = tm.timm.create_model

        def scaled(name, **kw):
            return real(name, embed_dim=width, depth=1, num_heads=width // head, img_size=size, **kw)

        if not full:
            tm.timm.create_model = scaled
        try:
            torch.manual_seed(200 + i)
            model = open_clip.CustomTextCLIP(**{k: v for k, v in cfg.items() if k != "custom_text"}).eval()
        finally:
            tm.timm.create_model = real
        g = torch.Generator().manual_seed(300 + i)
        randomize(model, g, openclip_norm, half=not full)
        name = "openclip_" + arch
        out = full or OUT
        state = {k: (v if full else v.half()).contiguous() for k, v in model.state_dict().items()}
        save_file(state, os.path.join(out, name + ".safetensors"))
        cfg["preprocess_cfg"] = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bicubic",
                                 "resize_mode": "squash"}
        json.dump(cfg, open(os.path.join(out, name + ".json"), "w"), indent=1)
        pixels = torch.randn(3, 3, size, size, generator=g)
        tokens = torch.randint(0, vocab, (4, ctx), generator=g)
        tokens[0, 5:] = 1
        with torch.no_grad():
            image = model.encode_image(pixels)
            text = model.encode_text(tokens)
            per_image = model.logit_scale.exp() * torch.nn.functional.normalize(image, dim=-1) @ \
                torch.nn.functional.normalize(text, dim=-1).T + model.logit_bias
        ref = {"pixels": pixels, "tokens": tokens, "image_features": image, "text_features": text,
               "logits_per_image": per_image, "logits_per_text": per_image.T.contiguous()}
        save_file({k: v.contiguous() for k, v in ref.items()}, os.path.join(out, name + ".reference.safetensors"))
        print(name, sorted(state)[:3], len(state), "tensors")


def main():
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--full", metavar="DIR", help="open_clip's SigLIP architectures at full size into DIR, for the gated "
                    "test CLIP_OPENCLIP_FULL=DIR swift test --filter openCLIPArchitectures, and a SiglipModel of "
                    "google/siglip-base-patch16-224's configuration (hf_siglip_base) for CLIP_SIGLIP_FULL=DIR "
                    "swift test --filter sigLIPParity")
    ap.add_argument("--only", nargs="*", help="architectures to write with --full")
    args = ap.parse_args()
    if args.full:
        os.makedirs(args.full, exist_ok=True)
        if not args.only or "hf_siglip_base" in args.only:
            hf_fixture("hf_siglip_base", SiglipConfig(), args.full, 400)
        archs = [a for a in args.only or OPENCLIP if a != "hf_siglip_base"]
        if archs:
            openclip_fixtures(args.full, archs)
        return
    os.makedirs(OUT, exist_ok=True)
    openclip_fixtures()
    for i, (name, sizes) in enumerate(MODELS.items()):
        hf_fixture(name, SiglipConfig(text_config=sizes["text"], vision_config=sizes["vision"]), OUT, 100 + i)


def hf_fixture(name, config, out, seed):
    """A random SiglipModel folder `out/name` and its reference tensors (`name == "hf_siglip_spm"` adds the
    classification of the example image)."""
    model = SiglipModel(config).eval()
    randomize(model, torch.Generator().manual_seed(seed), hf_norm, vector_scale=0.1)
    folder = os.path.join(out, name)
    model.save_pretrained(folder, safe_serialization=True)
    res = config.vision_config.image_size
    SiglipImageProcessor(size={"height": res, "width": res}).save_pretrained(folder)
    g = torch.Generator().manual_seed(7)
    pixels = torch.randn(3, 3, res, res, generator=g)
    ctx, vocab = config.text_config.max_position_embeddings, config.text_config.vocab_size
    tokens = torch.randint(0, vocab, (4, ctx), generator=g)
    tokens[0, 5:] = 1  # a padded caption: text, then </s> to the end, as the tokenizer pads
    tokens_short = torch.randint(0, vocab, (2, ctx - 5), generator=g)
    with torch.no_grad():
        out_ = model(input_ids=tokens, pixel_values=pixels)
        short = model.text_model(input_ids=tokens_short).pooler_output
        # SiglipModel's image_embeds / text_embeds are L2-normalised; the pooled outputs are what encode* return.
        image = model.vision_model(pixel_values=pixels).pooler_output
        text = model.text_model(input_ids=tokens).pooler_output
    ref = {
        "pixels": pixels.contiguous(),
        "tokens": tokens.to(torch.int64).contiguous(),
        "image_features": image.contiguous(),
        "text_features": text.contiguous(),
        "logits_per_image": out_.logits_per_image.contiguous(),
        "logits_per_text": out_.logits_per_text.contiguous(),
        "tokens_short": tokens_short.to(torch.int64).contiguous(),
        "text_features_short": short.contiguous(),
    }
    if name == "hf_siglip_spm":
        ref.update(classification(model, folder, res, ctx))
    save_file(ref, os.path.join(out, name + ".reference.safetensors"))
    print(name, {k: list(v.shape) for k, v in ref.items()})


if __name__ == "__main__":
    main()
