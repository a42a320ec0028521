#!/usr/bin/env python3
"""Writes Sources/CLIPHub/Resources/open_clip_pretrained.json: open_clip's pretrained table as `clip` needs it to
resolve `--model ARCH --pretrained TAG` (and `ARCH/TAG`, and immich's `ARCH__TAG`) the way open_clip does.

For every (architecture, tag) of `open_clip.list_pretrained()`: the Hub repository and file open_clip downloads
(`hf_hub` split as open_clip splits it: a trailing slash means open_clip_pytorch_model.bin, whose
open_clip_model.safetensors is tried first), and the tag's preprocessing and quick_gelu. For every architecture: its
built-in model config (open_clip's `model_configs/ARCH.json`). Whether `clip` can load an architecture is decided
in Swift from that config, by the same check that refuses unimplemented open_clip settings at load time.

Run in the reference venv (open_clip_torch installed; no network needed): python Scripts/make_openclip_table.py
"""
import json
import os

import open_clip
from open_clip.pretrained import get_pretrained_cfg

OUT = os.path.join(os.path.dirname(__file__), "..", "Sources", "CLIPHub", "Resources", "open_clip_pretrained.json")


def main():
    models, pretrained = {}, []
    for arch, tag in open_clip.list_pretrained():
        cfg = get_pretrained_cfg(arch, tag)
        hub = cfg.get("hf_hub", "")
        if not hub:
            raise SystemExit(f"{arch}/{tag} has no hf_hub entry; the table assumes every tag is on the Hub")
        repository, filename = os.path.split(hub.rstrip("/") if hub.endswith("/") else hub)
        if hub.endswith("/"):
            repository, filename = hub.rstrip("/"), ""
        entry = {"model": arch, "tag": tag, "repository": repository, "file": filename or "open_clip_pytorch_model.bin"}
        for k in ("quick_gelu", "mean", "std", "interpolation", "resize_mode", "fill_color"):
            if k in cfg:
                entry[k] = list(cfg[k]) if isinstance(cfg[k], tuple) else cfg[k]
        pretrained.append(entry)
        if arch not in models:
            models[arch] = open_clip.get_model_config(arch)
    with open(OUT, "w") as f:
        json.dump({"open_clip_version": open_clip.__version__, "models": models, "pretrained": pretrained}, f,
                  indent=None, separators=(",", ":"), sort_keys=True)
        f.write("\n")
    print(f"{len(pretrained)} tags of {len(models)} architectures -> {OUT}")


if __name__ == "__main__":
    main()
