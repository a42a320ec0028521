#!/usr/bin/env python3
"""Real clients against a running `clip serve`, with their defaults (issue 34):

1. LangChain's OpenAIEmbeddings as its documentation sets it up (chunk_size 1000: 1,000 texts per request), only
   check_embedding_ctx_length=False (that option counts tokens with tiktoken's OpenAI vocabularies, downloaded).
2. 16 OpenAI SDK clients at once, each sending 64 images in one request, with the SDK's default retries (2) and
   timeout: every one must succeed.

    python Scripts/ci/check_serve_clients.py --url http://127.0.0.1:PORT --image Examples/blue-star.png

Needs: pip install openai langchain-openai. Exits 1 with the failures listed.
"""
import argparse
import base64
import concurrent.futures
import sys
import time


def langchain(url, model):
    from langchain_openai import OpenAIEmbeddings
    texts = [f"a photo of thing number {i}" for i in range(2500)]
    emb = OpenAIEmbeddings(model=model, base_url=url + "/v1", api_key="unused", check_embedding_ctx_length=False)
    started = time.time()
    vectors = emb.embed_documents(texts)
    assert len(vectors) == len(texts), f"LangChain: {len(vectors)} vectors for {len(texts)} texts"
    assert len({len(v) for v in vectors}) == 1, "LangChain: vectors of different lengths"
    query = emb.embed_query("a photo")
    assert len(query) == len(vectors[0])
    print(f"LangChain OpenAIEmbeddings: {len(texts)} texts in {time.time() - started:.1f} s (chunk_size {emb.chunk_size})")


def sdk_clients(url, model, image, clients, per_client):
    import openai
    data = "data:image/png;base64," + base64.b64encode(open(image, "rb").read()).decode()

    def one(i):
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused")  # defaults: max_retries=2, timeout 600 s
        started = time.time()
        r = client.embeddings.create(model=model, input=[{"image": data}] * per_client, encoding_format="float")
        assert len(r.data) == per_client, f"client {i}: {len(r.data)} embeddings"
        return time.time() - started

    failures = []
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(one, i) for i in range(clients)]
        times = []
        for i, f in enumerate(futures):
            try:
                times.append(f.result())
            except Exception as e:  # noqa: BLE001 - every failure is reported
                failures.append(f"client {i}: {type(e).__name__}: {e}")
    if failures:
        raise AssertionError(f"{len(failures)} of {clients} SDK clients failed:\n" + "\n".join(failures))
    print(f"{clients} OpenAI SDK clients x {per_client} images: all succeeded, slowest {max(times):.1f} s")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--model", default="swift-clip-shapes")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--images-per-client", type=int, default=64)
    a = p.parse_args()
    problems = []
    for name, run in (("langchain", lambda: langchain(a.url, a.model)),
                      ("sdk", lambda: sdk_clients(a.url, a.model, a.image, a.clients, a.images_per_client))):
        try:
            run()
        except Exception as e:  # noqa: BLE001
            problems.append(f"{name}: {type(e).__name__}: {e}")
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
