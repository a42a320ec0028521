#!/usr/bin/env python3
"""Writes Tests/CLIPHubTests/Fixtures/hf_cache_snapshot: a Hugging Face Hub cache exactly as `hf download
test-org/tiny-hf` (huggingface_hub's snapshot_download) leaves it for a Hugging Face CLIPModel repository, which has
no open_clip_config.json and so no `.no_exist` marker for it: snapshot_download lists the repository's files and
fetches those, it never asks for one that is absent. clip must load such a cache offline (HF_HUB_OFFLINE=1).

The repository is Tests/CLIPTests/Fixtures/formats/hf_vit_hd32 (config.json, preprocessor_config.json,
model.safetensors), served by a loopback server that speaks the Hub's API (`/api/models/REPO/revision/REV`) and
resolve protocol (small files answered with their git blob id as ETag, the weights redirected to a "CDN" with
X-Linked-Etag = SHA-256 and X-Linked-Size, X-Repo-Commit on every answer).

    python3 -m venv /tmp/venv-hf && /tmp/venv-hf/bin/pip install huggingface_hub
    /tmp/venv-hf/bin/python Scripts/make_hub_snapshot_fixture.py
"""
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, "Tests", "CLIPTests", "Fixtures", "formats", "hf_vit_hd32")
OUT = os.path.join(ROOT, "Tests", "CLIPHubTests", "Fixtures", "hf_cache_snapshot")
REPO = "test-org/tiny-hf"
COMMIT = "89abcdef0123456789abcdef0123456789abcdef"


def git_blob_id(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def serve(files):
    by_sha = {hashlib.sha256(d).hexdigest(): d for d in files.values()}

    class Hub(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def send(self, status, headers, body=b"", write=True):
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if write:
                self.wfile.write(body)

        def answer(self, write):
            path = self.path.split("?")[0]
            parts = path.split("/")
            if path.startswith(f"/api/models/{REPO}/tree/"):
                entries = []
                for n, d in sorted(files.items()):
                    e = {"type": "file", "path": n, "size": len(d), "oid": git_blob_id(d)}
                    if n.endswith(".safetensors"):
                        e["lfs"] = {"oid": hashlib.sha256(d).hexdigest(), "size": len(d), "pointerSize": 134}
                    entries.append(e)
                return self.send(200, {"Content-Type": "application/json"}, json.dumps(entries).encode(), write)
            if path.startswith(f"/api/models/{REPO}/revision/"):
                siblings = [{"rfilename": n, "size": len(d)} for n, d in sorted(files.items())]
                body = json.dumps({"id": REPO, "sha": COMMIT, "siblings": siblings, "private": False}).encode()
                return self.send(200, {"Content-Type": "application/json"}, body, write)
            if parts[1] == "cdn" and parts[2] in by_sha:
                return self.send(200, {}, by_sha[parts[2]], write)
            if len(parts) != 6 or "/".join(parts[1:3]) != REPO or parts[3] != "resolve":
                print("unexpected request:", self.command, self.path, file=sys.stderr)
                return self.send(401, {"X-Error-Code": "RepoNotFound"})
            name = parts[5]
            if name not in files:
                return self.send(404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT})
            data = files[name]
            if name.endswith(".safetensors"):
                sha = hashlib.sha256(data).hexdigest()
                return self.send(302, {"Location": f"http://localhost:{self.server.server_port}/cdn/{sha}",
                                       "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data)),
                                       "ETag": f'"{git_blob_id(data)}"', "X-Repo-Commit": COMMIT})
            self.send(200, {"ETag": f'"{git_blob_id(data)}"', "X-Repo-Commit": COMMIT}, data, write)

        def do_HEAD(self):
            self.answer(False)

        def do_GET(self):
            self.answer(True)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main():
    files = {n: open(os.path.join(SOURCE, n), "rb").read() for n in sorted(os.listdir(SOURCE))}
    server = serve(files)
    work = tempfile.mkdtemp()
    cache = os.path.join(work, "cache")
    os.environ.update(HF_ENDPOINT=f"http://127.0.0.1:{server.server_port}", HF_HUB_CACHE=cache,
                      HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_XET="1")
    os.environ.pop("HF_HUB_OFFLINE", None)
    import huggingface_hub  # after the environment: it is read at import

    huggingface_hub.snapshot_download(REPO)
    server.shutdown()
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    name = "models--" + REPO.replace("/", "--")
    shutil.copytree(os.path.join(cache, name), os.path.join(OUT, name), symlinks=True)
    with open(os.path.join(OUT, "written-by.json"), "w") as f:
        json.dump({"huggingface_hub": huggingface_hub.__version__, "call": f"snapshot_download({REPO!r})",
                   "repository": REPO, "commit": COMMIT}, f, indent=1)
        f.write("\n")
    for root, dirs, names in os.walk(OUT):
        for n in sorted(dirs + names):
            p = os.path.join(root, n)
            print(os.path.relpath(p, OUT), "->", os.readlink(p) if os.path.islink(p) else "")
    shutil.rmtree(work)


if __name__ == "__main__":
    sys.exit(main())
