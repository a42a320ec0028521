#!/usr/bin/env python3
"""Reference outputs of the seed example's whole pipeline, for the `clip` command tests
(Tests/CLIPTests/Fixtures/pipeline): a tiny ViT with CLIP's full 49,408-token vocabulary (random, fixed seed,
stored as fp16 safetensors) run the way the reference does it — clip's `_transform`, `clip.tokenize`,
`encode_image`/`encode_text`, softmax of exp(logit_scale) × cosine, and the prompt-ensemble averaging of OpenAI's
ImageNet notebook — on images from the image fixtures.

Needs: torch, clip-anytorch, safetensors, Pillow (run make_fixtures.py and make_image_fixtures.py first).
"""
import json
import os
import sys

import torch
from PIL import Image
from safetensors.torch import save_file

import clip
from clip.clip import _transform
from clip.model import CLIP

HERE = os.path.dirname(__file__)
sys.path.insert(0, HERE)
from make_fixtures import perturb  # noqa: E402

OUT = os.path.join(HERE, "..", "Tests", "CLIPTests", "Fixtures", "pipeline")
IMAGES = os.path.join(HERE, "..", "Tests", "CLIPImageTests", "Fixtures", "images")
ARGS = dict(embed_dim=32, image_resolution=64, vision_layers=1, vision_width=64, vision_patch_size=16,
            context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1, transformer_layers=1)
LABELS = ["a diagram", "a dog", "a cat"]
# Exactly 64x64 images need no resampling, so their embeddings can be compared at 1e-5.
FILES = ["png_rgb_exact.png", "jpeg_420_exact.jpg", "jpeg_420_mid.jpg", "webp_lossy_alpha_odd.webp"]
TEXTS = ["a diagram", "a photo of a dog", "Ünïcödé &amp; emoji 🐶"]
TEMPLATES = {"verbatim": ["{}"], "default": ["a photo of a {}."]}


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(4242)
    m = CLIP(**ARGS).eval()
    perturb(m, torch.Generator().manual_seed(4243))
    state = {k: v.detach().half().contiguous() for k, v in m.state_dict().items()}
    save_file(state, os.path.join(OUT, "tiny_vit.safetensors"))
    m.load_state_dict({k: v.float() for k, v in state.items()})  # the reference runs on the rounded weights

    import json as _json
    templates = dict(TEMPLATES)
    # The paper's ImageNet ensemble, as the Swift side ships it (OpenAI's notebooks/imagenet_data.json).
    templates["imagenet"] = _json.loads(open(os.path.join(HERE, "imagenet_templates.json")).read())
    assert len(templates["imagenet"]) == 80

    pre = _transform(64)
    with torch.no_grad():
        pixels = torch.stack([pre(Image.open(os.path.join(IMAGES, f))) for f in FILES])
        image_raw = m.encode_image(pixels)
        image_norm = image_raw / image_raw.norm(dim=-1, keepdim=True)
        text_raw = m.encode_text(clip.tokenize(TEXTS))
        text_norm = text_raw / text_raw.norm(dim=-1, keepdim=True)
        scale = m.logit_scale.exp()
        probs = {}
        for name, ts in templates.items():
            weights = []
            for label in LABELS:
                e = m.encode_text(clip.tokenize([t.format(label) for t in ts]))
                e = e / e.norm(dim=-1, keepdim=True)
                e = e.mean(dim=0)
                weights.append(e / e.norm())
            w = torch.stack(weights)
            probs[name] = (scale * image_norm @ w.t()).softmax(dim=-1).tolist()
        # The seed example itself: model(image, text) logits over the verbatim labels.
        logits_per_image, _ = m(pixels, clip.tokenize(LABELS))
        seed_probs = logits_per_image.softmax(dim=-1).tolist()
    ref = {"files": FILES, "labels": LABELS, "texts": TEXTS, "probs": probs, "seed_probs": seed_probs,
           "image_embeddings_raw": image_raw.tolist(), "image_embeddings": image_norm.tolist(),
           "text_embeddings_raw": text_raw.tolist(), "text_embeddings": text_norm.tolist(),
           "cosine": (image_norm @ text_norm.t()).tolist()}
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(ref, f)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
