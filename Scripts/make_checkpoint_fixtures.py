#!/usr/bin/env python3
"""Writes the same random CLIP weights in every checkpoint form people hold, with reference outputs, into
Tests/CLIPTests/Fixtures/formats (run after make_fixtures.py, whose weights it reuses):

- vit_small_torchscript.pt   torch.jit.trace of the model in fp16 (OpenAI's convert_weights), torch.jit.save
- vit_small_state_dict.pt    torch.save of the fp32 state dict
- vit_small_training.pt      a training checkpoint: {"epoch", "name", "state_dict": {"module." + key: ...}}
- vit_small_views.pt         a state dict whose tensors are transposed views and slices sharing one storage
- vit_small_bigendian.pt     the state dict with byteorder "big" and byte-swapped storages
- rn_small_mixed.pt          a ResNet state dict stored in a mix of float64, bfloat16 and float16
- hf_vit_hd32/               a Hugging Face CLIPModel folder (head dim 32) checked against transformers' CLIPModel
- hf_mixed_towers/           the same weights with each tower's own hidden_act (vision GELU, text QuickGELU) and
                             LayerNorm ε (vision 1e-6), as CLIPConfig allows; its reference is transformers' own output
- vit_small_openclip.json    an open_clip config (GELU, own mean/std) with outputs of the GELU model
- NAME.reference.safetensors reference outputs of clip's model on each form's (rounded) weights

Needs: torch, clip-anytorch, safetensors, transformers.
"""
import io
import json
import os
import struct
import zipfile

import torch
from clip.model import CLIP, QuickGELU, convert_weights
from safetensors.torch import load_file, save_file

FIX = os.path.join(os.path.dirname(__file__), "..", "Tests", "CLIPTests", "Fixtures")
OUT = os.path.join(FIX, "formats")

VIT = dict(embed_dim=48, image_resolution=64, vision_layers=2, vision_width=128, vision_patch_size=16,
           context_length=16, vocab_size=400, transformer_width=64, transformer_heads=1, transformer_layers=2)
RN = dict(embed_dim=32, image_resolution=64, vision_layers=(1, 1, 1, 1), vision_width=8, vision_patch_size=None,
          context_length=10, vocab_size=300, transformer_width=64, transformer_heads=2, transformer_layers=1)
TINY = dict(embed_dim=16, image_resolution=32, vision_layers=1, vision_width=64, vision_patch_size=16,
            context_length=8, vocab_size=100, transformer_width=64, transformer_heads=1, transformer_layers=1)
VIT_HD32 = dict(embed_dim=40, image_resolution=80, vision_layers=1, vision_width=64, vision_patch_size=16,
                context_length=12, vocab_size=300, transformer_width=96, transformer_heads=3, transformer_layers=1)


def model_from(args, state, vision_heads=None):
    m = CLIP(**args).eval()
    if vision_heads:
        for b in m.visual.transformer.resblocks:
            b.attn.num_heads = vision_heads
            b.attn.head_dim = b.attn.embed_dim // vision_heads
    m.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return m


def write_reference(name, model, io_name):
    if isinstance(io_name, tuple):
        pixels, tokens = io_name
    else:
        io_ = load_file(os.path.join(FIX, f"{io_name}.reference.safetensors"))
        pixels, tokens = io_["pixels"], io_["tokens"]
    with torch.no_grad():
        img, txt = model.encode_image(pixels), model.encode_text(tokens)
        per_image, per_text = model(pixels, tokens)
    save_file({"pixels": pixels, "tokens": tokens, "image_features": img.contiguous(), "text_features": txt.contiguous(),
               "logits_per_image": per_image.contiguous(), "logits_per_text": per_text.contiguous()},
              os.path.join(OUT, f"{name}.reference.safetensors"))
    return img, txt


def rewrite_big_endian(src, dst):
    """Same archive, byteorder 'big', every storage byte-swapped by its element size."""
    zin = zipfile.ZipFile(src)
    prefix = [n for n in zin.namelist() if n.endswith("data.pkl")][0][: -len("data.pkl")]
    sizes = {}

    class U(__import__("pickle").Unpickler):
        # Inert: only the persistent ids (storage type and key) are of interest.
        def find_class(self, mod, name):
            if mod == "torch" and name.endswith("Storage"):
                return name
            if mod == "collections" and name == "OrderedDict":
                return __import__("collections").OrderedDict
            return lambda *a, **k: None

        def persistent_load(self, pid):
            sizes[pid[2]] = {"FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "DoubleStorage": 8, "LongStorage": 8}[pid[1]]
            return None

    U(io.BytesIO(zin.read(prefix + "data.pkl"))).load()
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == prefix + "byteorder":
                data = b"big"
            elif info.filename.startswith(prefix + "data/"):
                key = info.filename[len(prefix + "data/"):]
                n = sizes[key]
                data = b"".join(data[i:i + n][::-1] for i in range(0, len(data), n))
            zout.writestr(info.filename, data)


def hf_state(state):
    """OpenAI key names → Hugging Face CLIPModel key names."""
    out = {}
    for k, v in state.items():
        if k in ("input_resolution", "context_length", "vocab_size"):
            continue
        if k.startswith("visual.transformer.resblocks.") or k.startswith("transformer.resblocks."):
            tower = "vision_model" if k.startswith("visual.") else "text_model"
            rest = k.split("resblocks.")[1]
            i, sub = rest.split(".", 1)
            p = f"{tower}.encoder.layers.{i}."
            if sub in ("attn.in_proj_weight", "attn.in_proj_bias"):
                kind = "weight" if sub.endswith("weight") else "bias"
                q, kk, vv = v.chunk(3, dim=0)
                out[p + f"self_attn.q_proj.{kind}"], out[p + f"self_attn.k_proj.{kind}"], out[p + f"self_attn.v_proj.{kind}"] = q, kk, vv
                continue
            sub = (sub.replace("attn.out_proj", "self_attn.out_proj").replace("ln_1", "layer_norm1")
                   .replace("ln_2", "layer_norm2").replace("mlp.c_fc", "mlp.fc1").replace("mlp.c_proj", "mlp.fc2"))
            out[p + sub] = v
            continue
        m = {"token_embedding.weight": "text_model.embeddings.token_embedding.weight",
             "positional_embedding": "text_model.embeddings.position_embedding.weight",
             "ln_final.weight": "text_model.final_layer_norm.weight", "ln_final.bias": "text_model.final_layer_norm.bias",
             "visual.class_embedding": "vision_model.embeddings.class_embedding",
             "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
             "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
             "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight", "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
             "visual.ln_post.weight": "vision_model.post_layernorm.weight", "visual.ln_post.bias": "vision_model.post_layernorm.bias",
             "logit_scale": "logit_scale"}
        if k in m:
            out[m[k]] = v
        elif k == "visual.proj":
            out["visual_projection.weight"] = v.t().contiguous()
        elif k == "text_projection":
            out["text_projection.weight"] = v.t().contiguous()
        else:
            raise KeyError(k)
    out["text_model.embeddings.position_ids"] = torch.arange(state["positional_embedding"].shape[0])[None]
    return {k: v.contiguous() for k, v in out.items()}


def hf_config(vision_act="quick_gelu", vision_eps=1e-5):
    """transformers' CLIPConfig for vit_hd32_r80 (head dim 32 in both towers); the vision tower's activation and
    LayerNorm ε may differ from the text tower's, as CLIPConfig allows."""
    from transformers import CLIPConfig
    return CLIPConfig(
        text_config=dict(vocab_size=300, hidden_size=96, intermediate_size=384, num_hidden_layers=1, num_attention_heads=3,
                         max_position_embeddings=12, hidden_act="quick_gelu", layer_norm_eps=1e-5, eos_token_id=299,
                         bos_token_id=298, pad_token_id=0),
        vision_config=dict(hidden_size=64, intermediate_size=256, num_hidden_layers=1, num_attention_heads=2,
                           image_size=80, patch_size=16, hidden_act=vision_act, layer_norm_eps=vision_eps),
        projection_dim=40)


def hf_mixed_towers():
    """A Hugging Face folder whose towers differ in activation and LayerNorm ε; the reference is transformers'
    CLIPModel itself (OpenAI's package has one activation for both towers)."""
    from transformers import CLIPModel
    hd = load_file(os.path.join(FIX, "vit_hd32_r80.safetensors"))
    folder = os.path.join(OUT, "hf_mixed_towers")
    os.makedirs(folder, exist_ok=True)
    cfg = hf_config(vision_act="gelu", vision_eps=1e-6)
    hf = CLIPModel(cfg).eval()
    hs = hf_state(hd)
    hf.load_state_dict({k: v for k, v in hs.items() if "position_ids" not in k}, strict=False)
    save_file(hs, os.path.join(folder, "model.safetensors"))
    cfg.save_pretrained(folder)
    io_ = load_file(os.path.join(FIX, "vit_hd32_r80.reference.safetensors"))
    with torch.no_grad():
        out = hf(input_ids=io_["tokens"], pixel_values=io_["pixels"])
        img = hf.get_image_features(pixel_values=io_["pixels"])
        txt = hf.get_text_features(input_ids=io_["tokens"])
    img, txt = getattr(img, "pooler_output", img), getattr(txt, "pooler_output", txt)
    save_file({"pixels": io_["pixels"], "tokens": io_["tokens"], "image_features": img.contiguous(),
               "text_features": txt.contiguous(), "logits_per_image": out.logits_per_image.contiguous(),
               "logits_per_text": out.logits_per_text.contiguous()},
              os.path.join(OUT, "hf_mixed_towers.reference.safetensors"))


def main():
    import sys
    if sys.argv[1:] == ["--only", "hf_mixed_towers"]:
        hf_mixed_towers()
        return
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(2)
    vit = load_file(os.path.join(FIX, "vit_small.safetensors"))

    # TorchScript, fp16 as OpenAI ships it.
    m = model_from(VIT, vit)
    convert_weights(m)
    example = (torch.zeros(1, 3, 64, 64, dtype=torch.float16), torch.zeros(1, 16, dtype=torch.long))
    traced = torch.jit.trace(m, example, check_trace=False)
    torch.jit.save(traced, os.path.join(OUT, "vit_small_torchscript.pt"))
    write_reference("vit_small_torchscript", model_from(VIT, traced.state_dict()), "vit_small")

    # torch.save forms of fp32 weights: the small ViT, and a tiny one for the variants.
    torch.save(vit, os.path.join(OUT, "vit_small_state_dict.pt"))
    write_reference("vit_small_state_dict", model_from(VIT, vit), "vit_small")
    import sys
    sys.path.insert(0, os.path.dirname(__file__))
    from make_fixtures import make_tokens, perturb
    torch.manual_seed(77)
    tiny_model = CLIP(**TINY).eval()
    perturb(tiny_model, torch.Generator().manual_seed(78))
    tiny = {k: v.contiguous() for k, v in tiny_model.state_dict().items()}
    g = torch.Generator().manual_seed(79)
    tiny_io = (torch.randn((2, 3, 32, 32), generator=g), make_tokens(g, 2, 8, 100))
    torch.save({"epoch": 3, "name": "test-run", "state_dict": {"module." + k: v for k, v in tiny.items()}},
               os.path.join(OUT, "vit_tiny_training.pt"))
    views = dict(tiny)
    views["visual.proj"] = tiny["visual.proj"].t().contiguous().t()          # stride (1, rows)
    packed = torch.cat([tiny["ln_final.weight"], tiny["ln_final.bias"]])
    views["ln_final.weight"], views["ln_final.bias"] = packed[:64], packed[64:]  # one storage, offset 64
    views["text_projection"] = tiny["text_projection"].t().contiguous().t()
    torch.save(views, os.path.join(OUT, "vit_tiny_views.pt"))
    torch.save(tiny, os.path.join(OUT, "vit_tiny_little.pt"))
    rewrite_big_endian(os.path.join(OUT, "vit_tiny_little.pt"), os.path.join(OUT, "vit_tiny_bigendian.pt"))
    os.remove(os.path.join(OUT, "vit_tiny_little.pt"))
    assert all(torch.equal(a, b) for a, b in zip(torch.load(os.path.join(OUT, "vit_tiny_bigendian.pt")).values(), tiny.values()))
    write_reference("vit_tiny", model_from(TINY, tiny), tiny_io)

    # A ResNet with storages of three float types.
    rn = load_file(os.path.join(FIX, "rn_small.safetensors"))
    mixed = {}
    for i, (k, v) in enumerate(rn.items()):
        if v.is_floating_point():
            v = v.to([torch.float64, torch.bfloat16, torch.float16, torch.float32][i % 4])
        mixed[k] = v
    torch.save(mixed, os.path.join(OUT, "rn_small_mixed.pt"))
    write_reference("rn_small_mixed", model_from(RN, mixed), "rn_small")

    # A Hugging Face folder (head dim 32 in both towers), checked against transformers.
    from transformers import CLIPModel
    hd = load_file(os.path.join(FIX, "vit_hd32_r80.safetensors"))
    folder = os.path.join(OUT, "hf_vit_hd32")
    os.makedirs(folder, exist_ok=True)
    cfg = hf_config()
    hf = CLIPModel(cfg).eval()
    hs = hf_state(hd)
    missing, unexpected = hf.load_state_dict({k: v for k, v in hs.items() if "position_ids" not in k}, strict=False)
    assert not unexpected and all("position_ids" in k for k in missing), (missing, unexpected)
    save_file(hs, os.path.join(folder, "model.safetensors"))
    cfg.save_pretrained(folder)
    with open(os.path.join(folder, "preprocessor_config.json"), "w") as f:
        json.dump({"crop_size": {"height": 80, "width": 80}, "size": {"shortest_edge": 80}, "do_center_crop": True,
                   "image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25], "resample": 3,
                   "image_processor_type": "CLIPImageProcessor"}, f)
    img, txt = write_reference("hf_vit_hd32", model_from(VIT_HD32, hd, vision_heads=2), "vit_hd32_r80")
    io_ = load_file(os.path.join(FIX, "vit_hd32_r80.reference.safetensors"))
    with torch.no_grad():
        hf_img = hf.get_image_features(pixel_values=io_["pixels"])
        hf_txt = hf.get_text_features(input_ids=io_["tokens"])
    for a, b in [(hf_img, img), (hf_txt, txt)]:
        a = getattr(a, "pooler_output", a)
        err = float((a - b).norm() / b.norm())
        assert err < 1e-5, err

    # An open_clip config: GELU instead of QuickGELU, its own normalisation.
    oc = {"embed_dim": 48, "quick_gelu": False,
          "vision_cfg": {"image_size": 64, "layers": 2, "width": 128, "patch_size": 16, "head_width": 64},
          "text_cfg": {"context_length": 16, "vocab_size": 400, "width": 64, "heads": 1, "layers": 2},
          "preprocess_cfg": {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}}
    with open(os.path.join(OUT, "vit_small_openclip.json"), "w") as f:
        json.dump(oc, f, indent=1)
    g = model_from(VIT, vit)
    for mod in list(g.modules()):
        for name, child in list(mod.named_children()):
            if isinstance(child, QuickGELU):
                setattr(mod, name, torch.nn.GELU())
    write_reference("vit_small_openclip", g, "vit_small")
    hf_mixed_towers()
    print("wrote", sorted(os.listdir(OUT)))


if __name__ == "__main__":
    main()
