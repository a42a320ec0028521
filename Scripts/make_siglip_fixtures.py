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

Needs: torch, transformers (5.x), safetensors.
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
}


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layer_norm1.weight") or name.endswith("layer_norm2.weight") or "layernorm.weight" in name \
                    or name.endswith("final_layer_norm.weight") or name.endswith("post_layernorm.weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif name == "logit_scale":
                p.fill_(math.log(10) + 0.3)
            elif name == "logit_bias":
                p.fill_(-2.5)
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p.shape[-1] if p.dim() > 1 else 1
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(max(fan_in, 1)) * (1.0 if p.dim() > 1 else 0.1))


def main():
    os.makedirs(OUT, exist_ok=True)
    for i, (name, sizes) in enumerate(MODELS.items()):
        config = SiglipConfig(text_config=sizes["text"], vision_config=sizes["vision"])
        model = SiglipModel(config).eval()
        randomize(model, 100 + i)
        folder = os.path.join(OUT, name)
        model.save_pretrained(folder, safe_serialization=True)
        res = sizes["vision"]["image_size"]
        SiglipImageProcessor(size={"height": res, "width": res}).save_pretrained(folder)
        g = torch.Generator().manual_seed(7)
        pixels = torch.randn(3, 3, res, res, generator=g)
        ctx, vocab = sizes["text"]["max_position_embeddings"], sizes["text"]["vocab_size"]
        tokens = torch.randint(0, vocab, (4, ctx), generator=g)
        tokens[0, 5:] = 1  # a padded caption: text, then </s> to the end, as the tokenizer pads
        tokens_short = torch.randint(0, vocab, (2, ctx - 5), generator=g)
        with torch.no_grad():
            out = model(input_ids=tokens, pixel_values=pixels)
            short = model.text_model(input_ids=tokens_short).pooler_output
        ref = {
            "pixels": pixels.contiguous(),
            "tokens": tokens.to(torch.int64).contiguous(),
            "image_features": out.image_embeds.contiguous(),
            "text_features": out.text_embeds.contiguous(),
            "logits_per_image": out.logits_per_image.contiguous(),
            "logits_per_text": out.logits_per_text.contiguous(),
            "tokens_short": tokens_short.to(torch.int64).contiguous(),
            "text_features_short": short.contiguous(),
        }
        # image_embeds / text_embeds are L2-normalised by SiglipModel; the raw pooled outputs are what encode* return.
        with torch.no_grad():
            ref["image_features"] = model.vision_model(pixel_values=pixels).pooler_output.contiguous()
            ref["text_features"] = model.text_model(input_ids=tokens).pooler_output.contiguous()
        save_file(ref, os.path.join(OUT, name + ".reference.safetensors"))
        print(name, {k: list(v.shape) for k, v in ref.items()})


if __name__ == "__main__":
    main()
