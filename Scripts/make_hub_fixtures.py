#!/usr/bin/env python3
"""Writes Tests/CLIPHubTests/Fixtures/hf_cache: a Hugging Face Hub cache exactly as Python leaves it after
`open_clip.create_model_and_transforms("hf-hub:test-org/tiny-openclip")`, with open_clip's outputs for that model.

How: a tiny open_clip model (random weights, GELU, its own mean/std) is saved the way open_clip publishes models
(`open_clip_config.json` = {"model_cfg", "preprocess_cfg"}, `open_clip_model.safetensors`); a loopback server
speaks the Hub's resolve protocol for it (small files answered with their git blob id as ETag, the weights
redirected to a "CDN" with X-Linked-Etag = SHA-256 and X-Linked-Size, X-Repo-Commit on every answer); open_clip
itself then downloads it through the installed huggingface_hub with HF_ENDPOINT pointing there. The resulting
`models--test-org--tiny-openclip` folder (blobs, refs, snapshots with relative symlinks, .no_exist markers) is
copied into the fixtures together with reference.json: open_clip's encode_image / encode_text of fixed inputs.

Needs: torch, open_clip_torch, huggingface_hub, safetensors (the reference venv).
"""
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "CLIPHubTests", "Fixtures", "hf_cache")
REPO = "test-org/tiny-openclip"
COMMIT = "4e1f3a7c2b9d8e6f5a4b3c2d1e0f9a8b7c6d5e4f"

MODEL_CFG = {
    "embed_dim": 32,
    "quick_gelu": False,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 64, "heads": 2, "layers": 2},
}
MEAN, STD = (0.5, 0.45, 0.4), (0.25, 0.3, 0.35)


def make_repository(folder):
    import open_clip
    from open_clip.push_to_hf_hub import save_config_for_hf
    from safetensors.torch import save_file
    from pathlib import Path

    torch.manual_seed(1234)
    model = open_clip.CLIP(**MODEL_CFG)
    # Non-trivial LayerNorm and bias values, so a mis-loaded parameter shows.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias") or "ln" in name:
                p.add_(torch.randn_like(p) * 0.1)
    model.visual.image_mean, model.visual.image_std = MEAN, STD
    model.eval()
    save_config_for_hf(model, Path(folder) / "open_clip_config.json", model_config=MODEL_CFG)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(folder, "open_clip_model.safetensors"))


def git_blob_id(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def serve(folder):
    """The folder's files as one repository at COMMIT, read at each request (the folder is filled after the
    server starts: huggingface_hub reads HF_ENDPOINT when it is first imported)."""

    class Hub(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def answer(self, body):
            files = {n: open(os.path.join(folder, n), "rb").read() for n in os.listdir(folder)}
            by_sha = {hashlib.sha256(d).hexdigest(): d for d in files.values()}
            parts = self.path.split("?")[0].split("/")
            if parts[1] == "cdn" and parts[2] in by_sha:
                data = by_sha[parts[2]]
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)
                return
            if len(parts) != 6 or "/".join(parts[1:3]) != REPO or parts[3] != "resolve":
                self.send_response(401)
                self.send_header("X-Error-Code", "RepoNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            name = parts[5]
            if name not in files:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = files[name]
            if name.endswith(".safetensors"):
                sha = hashlib.sha256(data).hexdigest()
                self.send_response(302)
                self.send_header("Location", f"http://localhost:{self.server.server_port}/cdn/{sha}")
                self.send_header("X-Linked-Etag", f'"{sha}"')
                self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("ETag", f'"{git_blob_id(data)}"')
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("ETag", f'"{git_blob_id(data)}"')
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

        def do_HEAD(self):
            self.answer(False)

        def do_GET(self):
            self.answer(True)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main():
    work = tempfile.mkdtemp()
    repo = os.path.join(work, "repo")
    os.makedirs(repo)
    server = serve(repo)
    cache = os.path.join(work, "cache")
    os.environ.update(HF_ENDPOINT=f"http://127.0.0.1:{server.server_port}", HF_HUB_CACHE=cache,
                      HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_XET="1")
    os.environ.pop("HF_HUB_OFFLINE", None)
    # Imported after the environment is set: huggingface_hub reads it at import.
    import open_clip

    make_repository(repo)
    model, _, _ = open_clip.create_model_and_transforms("hf-hub:" + REPO)
    model.eval()
    r = MODEL_CFG["vision_cfg"]["image_size"]
    pixels = (torch.arange(3 * r * r, dtype=torch.float32) % 17 / 17 - 0.5).reshape(1, 3, r, r)
    vocab, ctx = MODEL_CFG["text_cfg"]["vocab_size"], MODEL_CFG["text_cfg"]["context_length"]
    tokens = torch.tensor([[1, 5, 7, vocab - 1] + [0] * (ctx - 4), [3, 900, vocab - 1] + [0] * (ctx - 3)])
    with torch.no_grad():
        image = model.encode_image(pixels)
        text = model.encode_text(tokens)
    server.shutdown()

    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    shutil.copytree(os.path.join(cache, "models--test-org--tiny-openclip"),
                    os.path.join(OUT, "models--test-org--tiny-openclip"), symlinks=True)
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump({"repository": REPO, "commit": COMMIT, "pixels": f"(i % 17) / 17 - 0.5 over [1, 3, {r}, {r}]",
                   "tokens": tokens.tolist(), "image_features": image[0].tolist(), "text_features": text.tolist(),
                   "mean": list(MEAN), "std": list(STD)}, f, indent=1)
    for root, dirs, names in os.walk(OUT):
        for n in sorted(dirs + names):
            p = os.path.join(root, n)
            print(os.path.relpath(p, OUT), "->", os.readlink(p) if os.path.islink(p) else "")
    shutil.rmtree(work)


if __name__ == "__main__":
    sys.exit(main())
