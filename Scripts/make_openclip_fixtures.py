#!/usr/bin/env python3
"""Random-weight models of every open_clip architecture `clip` loads, with open_clip's outputs for them.

For each loadable tag of Sources/CLIPHub/Resources/open_clip_pretrained.json (loadable = what `clip models
--loadable --json` says), the config `clip` builds for it (the architecture's, with the tag's quick_gelu and
preprocessing) is made into a model by open_clip itself (`open_clip.CLIP(**model_cfg)`), given random weights
with non-trivial LayerNorm and bias values, and run on fixed pixels and token ids. Tags whose configs coincide
are written once. Per model NAME:

  NAME.safetensors            the state dict, open_clip's key names (fp16 in the scaled-down fixtures: the
                              weights are rounded to fp16 before the reference runs, so nothing is lost)
  NAME.json                   the model config (open_clip's format, with preprocess_cfg)
  NAME.reference.safetensors  pixels, tokens, image_features, text_features, logits_per_image, logits_per_text

Default (the committed fixtures, Tests/CLIPTests/Fixtures/open_clip): each architecture scaled down while keeping
what distinguishes it (head widths, MLP ratio, patch size, ResNet stem and attention pool, the odd grid of
378-pixel models; GELU and QuickGELU once each for ViT and ResNet): 1 layer a tower, 2 heads in the image tower and 1 in the text tower, 1 Bottleneck a
ResNet stage, vocabulary 300, embeddings of 32; architectures that scale down to the same structure are written once.
CoCa models are built as open_clip.CoCa (its caption decoder included, so the checkpoint has every tensor a real
one has); one of their texts has a padding id inside it, which CoCa's key mask hides.
With --full DIR: the architectures at full size into DIR (gigabytes; ViT-bigG alone is 10 GB in fp32), for the
gated test `CLIP_OPENCLIP_FULL=DIR swift test --filter openCLIPArchitectures`; --only ARCH limits the set.

Also (without --full or --only) Tests/CLIPTests/Fixtures/metaclip2 and clipa: MetaCLIP 2 and CLIPA models through
the whole pipeline (see pipeline_fixture).

Needs: torch, open_clip_torch, transformers, safetensors, and a built `clip` (swift build) for the loadable list.
"""
import argparse
import copy
import json
import os
import subprocess

import torch
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(__file__), "..")
TABLE = os.path.join(ROOT, "Sources", "CLIPHub", "Resources", "open_clip_pretrained.json")
OUT = os.path.join(ROOT, "Tests", "CLIPTests", "Fixtures", "open_clip")


def loadable_entries():
    clip = os.path.join(ROOT, ".build", "debug", "clip")
    lines = subprocess.run([clip, "models", "--loadable", "--json"], check=True, capture_output=True, text=True).stdout
    names = {json.loads(l)["name"] for l in lines.splitlines() if l.strip()}
    table = json.load(open(TABLE))
    return table["models"], [e for e in table["pretrained"] if f"{e['model']}/{e['tag']}" in names]


def effective_config(models, entry):
    cfg = copy.deepcopy(models[entry["model"]])
    if "quick_gelu" in entry:
        cfg["quick_gelu"] = entry["quick_gelu"]
    cfg["preprocess_cfg"] = {k: entry[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in entry}
    return cfg


# Hugging Face text towers (open_clip's HFTextEncoder) by hf_model_name: transformers' configuration at full size,
# and scaled down to one 64-wide layer over a 302-id vocabulary. The Hub, where AutoConfig would read them, is out of
# reach, so AutoConfig.from_pretrained is answered from here.
HF_TEXT = {
    "xlm-roberta-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, vocab_size=250002),
    "xlm-roberta-large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096, vocab_size=250002),
}
HF_SCALED = dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=1, intermediate_size=128, vocab_size=302)


def hf_text_config(name, scaled, vocab=None):
    from transformers import XLMRobertaConfig

    sizes = dict(HF_SCALED if scaled else HF_TEXT[name])
    if vocab:
        sizes["vocab_size"] = vocab
    return XLMRobertaConfig(max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1,
                            bos_token_id=0, eos_token_id=2, hidden_act="gelu", **sizes)


def scaled_down(cfg):
    c = copy.deepcopy(cfg)
    v, t = c["vision_cfg"], c["text_cfg"]
    if isinstance(v["layers"], (list, tuple)):
        # ResNet: one Bottleneck a stage, a narrower stem; the attention pool keeps width*32/64 heads of 64.
        v["layers"], v["width"] = [1, 1, 1, 1], 8
        v["image_size"] = 64
    else:
        head = v.get("head_width", 64)
        grid = v["image_size"] // v["patch_size"]
        v["width"], v["layers"] = 2 * head, 1
        # An odd grid stays odd (378 / 14 = 27), an even one even.
        v["image_size"] = v["patch_size"] * (3 if grid % 2 else 4)
    if "hf_model_name" not in t:
        head_t = t["width"] // t["heads"]
        t["width"], t["heads"], t["layers"], t["vocab_size"] = head_t, 1, 1, 300
    c["embed_dim"] = 32
    if "multimodal_cfg" in c:
        # CoCa: the pooler keeps its 8 heads (4 wide over the 32-wide embedding) and a few of its 256 queries; the
        # caption decoder, which the embeddings never use, shrinks to one layer.
        v["attn_pooler_queries"] = 4
        m = c["multimodal_cfg"]
        m["width"], m["heads"], m["layers"], m["vocab_size"] = head_t, 1, 1, 300
    return c


def structure(cfg, model):
    """What the loader sees: the scaled config without preprocessing; the activation only for the first ViT
    and ResNet (it is applied the same way in every architecture)."""
    c = {k: v for k, v in cfg.items() if k not in ("preprocess_cfg", "quick_gelu")}
    if model.removesuffix("-quickgelu") in ("ViT-B-32", "RN50"):
        c["quick_gelu"] = cfg.get("quick_gelu", False)
    return json.dumps(c, sort_keys=True)


def build(cfg, seed, scaled=True):
    import open_clip
    from transformers import AutoConfig

    torch.manual_seed(seed)
    model_cfg = {k: v for k, v in cfg.items() if k not in ("preprocess_cfg", "custom_text")}
    if "hf_model_name" in cfg["text_cfg"]:
        vocab = cfg["text_cfg"].get("vocab_size")
        AutoConfig.from_pretrained = lambda name, **kw: hf_text_config(name, scaled, vocab)
        model_cfg["text_cfg"] = dict(cfg["text_cfg"], hf_model_pretrained=False)
        model = open_clip.CustomTextCLIP(**model_cfg)
    elif "multimodal_cfg" in cfg:
        model = open_clip.CoCa(**model_cfg)
    else:
        model = open_clip.CLIP(**model_cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias") or "ln" in name or name.endswith("bn1.weight") or ".bn" in name or name.endswith(("cls_emb", "gamma")) or "LayerNorm" in name:
                p.add_(torch.randn_like(p) * 0.1)
            # CoCa's decoder projection is left uninitialised (torch.empty) by open_clip: give it values, so that
            # the file regenerates byte-identical (it takes no part in the embeddings).
            if name == "text_decoder.text_projection":
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)) * 0.02)
            # Values an fp16 file holds exactly, so the scaled-down fixtures are stored at half the size.
            p.copy_(p.half().float())
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.copy_(torch.rand_like(b) + 0.5)
            elif name.endswith("running_mean"):
                b.copy_(torch.randn_like(b) * 0.1)
    return model.eval()


def references(model, cfg, seed):
    g = torch.Generator().manual_seed(seed)
    r = cfg["vision_cfg"]["image_size"]
    pixels = torch.randn(2, 3, r, r, generator=g)
    text = cfg["text_cfg"]
    ctx = text.get("context_length", 77)
    vocab = text["vocab_size"] if "vocab_size" in text else model.text.config.vocab_size
    tokens = torch.zeros(3, ctx, dtype=torch.int64)
    if text.get("pool_type") == "eos" or "hf_model_name" in text:
        # XLM-R rows (MetaCLIP 2): <s> 0, pieces from id 4, </s> (eos_id) where the features are read, <pad> 1.
        tokens.fill_(1)
        for i, n in enumerate((5, ctx, 2)):
            tokens[i, :n] = torch.randint(4, vocab, (n,), generator=g)
            tokens[i, 0], tokens[i, n - 1] = 0, cfg["text_cfg"].get("eos_id", 2)
    else:
        for i, n in enumerate((5, ctx, 2)):
            tokens[i, :n] = torch.randint(1, vocab - 1, (n,), generator=g)
            tokens[i, n - 1] = vocab - 1  # the end token is the largest id (argmax pooling)
    if "multimodal_cfg" in cfg:
        tokens[0, 2] = 0  # CoCa masks keys after padding ids, so one inside a text is masked too
    with torch.no_grad():
        img = model.encode_image(pixels, normalize=False)
        txt = model.encode_text(tokens, normalize=False)
        scale = model.logit_scale.exp()
        a, b = img / img.norm(dim=-1, keepdim=True), txt / txt.norm(dim=-1, keepdim=True)
        per_image = scale * a @ b.t()
    return {"pixels": pixels, "tokens": tokens, "image_features": img, "text_features": txt,
            "logits_per_image": per_image, "logits_per_text": per_image.t().contiguous()}


FIXTURES = os.path.join(ROOT, "Tests", "CLIPTests", "Fixtures")
TOKENIZERS = os.path.join(ROOT, "Tests", "CLIPTokenizerTests", "Fixtures")
LABELS = ["a red heart", "a blue star", "A green circle!"]
# Whole-pipeline models: output folder, architecture, test tokenizer folder, its file, its vocabulary size, HFTokenizer
# arguments.
PIPELINES = [
    ("metaclip2", "ViT-H-14-worldwide", "sentencepiece/xlmr", "sentencepiece.bpe.model", 3002, {"clean": "whitespace"}),
    ("clipa", "ViT-L-14-CLIPA", "wordpiece", "vocab.txt", 3000, {"strip_sep_token": True}),
    ("xlm-roberta", "xlm-roberta-base-ViT-B-32", "sentencepiece/xlmr", "sentencepiece.bpe.model", 3002, {"clean": "whitespace"}),
]


def pipeline_fixture(models, out, arch, tokenizer_dir, tokenizer_file, vocab, kwargs):
    """A model through the whole pipeline: ARCH's structure scaled down, with a test tokenizer's vocabulary
    (Scripts/make_sentencepiece_fixtures.py, make_wordpiece_fixtures.py), in an open_clip Hub repository's layout
    (open_clip_config.json, open_clip_model.safetensors) with the tokenizer file beside; reference.safetensors holds
    Examples/blue-star.png as open_clip's transform prepares it (the tag's resize mode and interpolation), the labels'
    rows as open_clip's HFTokenizer writes them, and the softmax probabilities."""
    import shutil

    import open_clip
    from open_clip.tokenizer import HFTokenizer
    from PIL import Image

    folder, source = os.path.join(FIXTURES, out), os.path.join(TOKENIZERS, tokenizer_dir)
    entry = next(e for e in json.load(open(TABLE))["pretrained"] if e["model"] == arch)
    cfg = scaled_down(effective_config(models, entry))
    cfg["text_cfg"]["vocab_size"] = vocab
    model = build(cfg, 4242)
    os.makedirs(folder, exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in model.state_dict().items()}, os.path.join(folder, "open_clip_model.safetensors"))
    pre = cfg.pop("preprocess_cfg")
    with open(os.path.join(folder, "open_clip_config.json"), "w") as f:
        json.dump({"model_cfg": cfg, "preprocess_cfg": pre}, f, indent=1)
    shutil.copyfile(os.path.join(source, tokenizer_file), os.path.join(folder, tokenizer_file))
    tokens = HFTokenizer(source, context_length=cfg["text_cfg"].get("context_length", 77), **kwargs)(LABELS)
    size = cfg["vision_cfg"]["image_size"]
    transform = open_clip.image_transform(size, is_train=False, mean=pre["mean"], std=pre["std"],
                                          interpolation=pre["interpolation"], resize_mode=pre["resize_mode"])
    pixels = transform(Image.open(os.path.join(ROOT, "Examples", "blue-star.png")).convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        img, txt = model.encode_image(pixels, normalize=True), model.encode_text(tokens, normalize=True)
        probs = (model.logit_scale.exp() * img @ txt.t()).softmax(dim=-1)
    save_file({"classify_pixels": pixels.contiguous(), "classify_tokens": tokens.contiguous(),
               "classify_probabilities": probs.contiguous()}, os.path.join(folder, "reference.safetensors"))
    print(f"{out} pipeline -> {folder}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", metavar="DIR", help="full-size models into DIR instead of the scaled-down fixtures")
    ap.add_argument("--only", nargs="*", help="architectures to write")
    args = ap.parse_args()
    models, entries = loadable_entries()
    out = args.full or OUT
    os.makedirs(out, exist_ok=True)
    written, seen = [], {}

    def write(cfg, name, note):
        seed = 1000 + len(written)
        model = build(cfg, seed, scaled=not args.full)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        if not args.full:
            state = {k: v.half() if v.is_floating_point() and "running_" not in k else v for k, v in state.items()}
        save_file(state, os.path.join(out, name + ".safetensors"))
        with open(os.path.join(out, name + ".json"), "w") as f:
            json.dump(cfg, f, indent=1)
        save_file({k: v.contiguous() for k, v in references(model, cfg, seed).items()},
                  os.path.join(out, name + ".reference.safetensors"))
        written.append(name)
        print(f"{name}: {note}")

    def tags(hugging_face_text):
        for e in entries:
            if args.only and e["model"] not in args.only:
                continue
            cfg = effective_config(models, e)
            if cfg.get("custom_text") and "multimodal_cfg" not in cfg:
                continue  # SigLIP (timm image tower, own text tower): Scripts/make_siglip_fixtures.py writes those
            if ("hf_model_name" in cfg["text_cfg"]) != hugging_face_text:
                continue
            if not args.full:
                cfg = scaled_down(cfg)
            key = json.dumps(cfg, sort_keys=True) if args.full else structure(cfg, e["model"])
            if key in seen:
                continue
            name = e["model"] + ("-quickgelu" if cfg.get("quick_gelu") and not e["model"].endswith("quickgelu") else "")
            name += "" if cfg["preprocess_cfg"].get("resize_mode", "shortest") == "shortest" else "-" + cfg["preprocess_cfg"]["resize_mode"]
            if name in written:
                name += "-" + e["tag"]
            seen[key] = name
            write(cfg, name, f"from {e['model']}/{e['tag']}")

    # Seeds follow the order models are written in; models added later come last, so earlier fixtures regenerate
    # byte-identical.
    tags(hugging_face_text=False)
    if not args.full and not args.only:
        # Settings open_clip implements that no pretrained tag uses, on ViT-B-32's scaled structure.
        base = scaled_down(effective_config(models, next(e for e in entries if e["model"] == "ViT-B-32")))
        for name, section, changes in VARIANTS:
            cfg = copy.deepcopy(base)
            cfg[section].update(changes)
            write(cfg, name, f"ViT-B-32 with {section} {changes}")
    tags(hugging_face_text=True)
    print(f"{len(written)} models -> {out}")
    if not args.full and not args.only:
        for p in PIPELINES:
            pipeline_fixture(models, *p)


# Variants of ViT-B-32 with open_clip settings that no pretrained tag uses: text pooling at the first position,
# average pooling with ln_post before it (CLIPA's puts it after), layer scale with patch dropout.
VARIANTS = [
    ("ViT-B-32-text-first", "text_cfg", {"pool_type": "first"}),
    ("ViT-B-32-avg-ln-first", "vision_cfg", {"pool_type": "avg", "final_ln_after_pool": False}),
    # Layer scale (ViT-M-16-alt's ls_init_value, larger so that it shows) and patch dropout, off at inference.
    ("ViT-B-32-layer-scale", "vision_cfg", {"ls_init_value": 0.5, "patch_dropout": 0.5}),
]


if __name__ == "__main__":
    main()
