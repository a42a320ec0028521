#!/usr/bin/env python3
"""Checks the outputs Scripts/ci/test_spark_embed.sh made (argument: its work folder)."""
import glob
import json
import os
import sys

import numpy as np
import pyarrow.parquet as pq

work = sys.argv[1]
inputs = [line.split("\t")[0] for line in open(f"{work}/list.tsv").read().splitlines()]


def load(folder):
    """(path -> (image row, text row)) over every partition, checking alignment and exactly-once."""
    rows = {}
    parts = sorted(glob.glob(f"{folder}/img_emb/img_emb_*.npy"))
    assert parts, f"{folder}: no partitions"
    for img_path in parts:
        n = img_path.rsplit("_", 1)[1][:-4]
        img = np.load(img_path)
        txt = np.load(f"{folder}/text_emb/text_emb_{n}.npy")
        meta = [json.loads(l) for l in open(f"{folder}/metadata/metadata_{n}.jsonl")]
        assert img.dtype == np.float32 and img.shape[0] == len(meta) == txt.shape[0], (img_path, img.shape, len(meta))
        assert np.allclose(np.linalg.norm(img, axis=1), 1, atol=1e-5)
        if os.path.exists(f"{folder}/metadata/metadata_{n}.parquet"):
            assert pq.read_table(f"{folder}/metadata/metadata_{n}.parquet").column("image_path").to_pylist() == [m["image_path"] for m in meta]
        for r, m in enumerate(meta):
            assert m["image_path"] not in rows, f"{m['image_path']} appears twice in {folder}"
            rows[m["image_path"]] = (img[r], txt[r], n)
    leftovers = [p for p in glob.glob(f"{folder}/**/.*", recursive=True)]
    assert not leftovers, f"temporary files left: {leftovers}"
    return rows, parts


single, _ = load(f"{work}/single")
spark, spark_parts = load(f"{work}/spark")
killed, killed_parts = load(f"{work}/killed")
for name, rows in [("single", single), ("spark", spark), ("killed", killed)]:
    assert sorted(rows) == sorted(inputs), f"{name}: {len(rows)} rows for {len(inputs)} inputs"
assert len(spark_parts) == 4 and len(glob.glob(f"{work}/spark/metadata/*.parquet")) == 4
# The retried partition was written again from scratch: the whole output is bitwise the clean run's.
for a, b in zip(spark_parts, killed_parts):
    assert open(a, "rb").read() == open(b, "rb").read(), f"{b} differs from {a} after the retry"
worst = max(float(np.abs(single[p][0] - spark[p][0]).max()) for p in inputs)
assert worst <= 1e-5, f"Spark's embeddings differ from one process's by {worst}"

# autofaiss builds an index from the output; each of 20 known images finds itself first.
from autofaiss import build_index
import faiss

index_path = f"{work}/knn.index"
build_index(embeddings=f"{work}/spark/img_emb", index_path=index_path, index_infos_path=f"{work}/infos.json",
            max_index_memory_usage="1G", current_memory_available="2G", verbose=40)
index = faiss.read_index(index_path)
order = []
for part in spark_parts:
    n = part.rsplit("_", 1)[1][:-4]
    order += [json.loads(l)["image_path"] for l in open(f"{work}/spark/metadata/metadata_{n}.jsonl")]
found = 0
for i in range(0, len(order), len(order) // 20):
    _, ids = index.search(spark[order[i]][0][None, :], 1)
    found += int(order[ids[0][0]] == order[i] or np.allclose(spark[order[ids[0][0]]][0], spark[order[i]][0]))
assert found >= 19, f"autofaiss found {found} of 20 known images first"
print(f"checked: {len(inputs)} inputs exactly once in each output; retried run bitwise equal; autofaiss {found}/20; "
      f"Spark vs one process max difference {worst:.2e}")
