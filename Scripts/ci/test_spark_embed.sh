#!/usr/bin/env bash
# clip embed as Spark's worker, for real, on Spark's local mode (CI): 2,000 synthetic images embedded by one
# `clip embed` process, by Scripts/spark_embed.py on local[2] (4 partitions), and again with one task killed mid-write
# and retried; Scripts/ci/check_spark_embed.py then checks every input appears exactly once with rows aligned, the
# retried run is bitwise the clean one, autofaiss indexes the output and finds known neighbours, and the output
# imports into `clip index`. Prints the throughput of both (a measurement, not a pass/fail bound).
# Needs: a release `clip` (CLIP_BINARY), Java 17, and a Python with pyspark, autofaiss and pyarrow (PYTHON).
set -euo pipefail
cd "$(dirname "$0")/../.."
clip=$(realpath "${CLIP_BINARY:-.build/release/clip}")
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
count=${COUNT:-2000}

"$clip" synthetic --count "$count" --size 64 --output "$work/images" > /dev/null
"$python" - "$work" <<'PY'
import os, sys
work = sys.argv[1]
names = sorted(n for n in os.listdir(f"{work}/images") if n.endswith(".png"))
with open(f"{work}/list.tsv", "w") as f:
    for n in names:
        caption = open(f"{work}/images/{n[:-4]}.txt").read().strip()
        f.write(f"{work}/images/{n}\t{caption}\n")
PY

start=$(date +%s.%N)
"$clip" embed --input-list "$work/list.tsv" --output-dir "$work/single" --enable-text
single=$(echo "$(date +%s.%N) - $start" | bc)

export PYSPARK_SUBMIT_ARGS="--master local[2,2] --conf spark.ui.enabled=false pyspark-shell"
export PYSPARK_PYTHON="$python"
start=$(date +%s.%N)
"$python" Scripts/spark_embed.py --input-list "$work/list.tsv" --output-dir "$work/spark" --partitions 4 \
    --clip "$clip" --enable-text 2> "$work/spark.log" || { tail -n 40 "$work/spark.log"; exit 1; }
spark=$(echo "$(date +%s.%N) - $start" | bc)
"$python" Scripts/spark_embed.py --input-list "$work/list.tsv" --output-dir "$work/killed" --partitions 4 \
    --clip "$clip" --enable-text --kill-first-attempt-of 1 2> "$work/killed.log" || { tail -n 40 "$work/killed.log"; exit 1; }
grep -q "killed on purpose" "$work/killed.log" || { echo "the test hook did not kill an attempt"; exit 1; }

"$python" Scripts/ci/check_spark_embed.py "$work"

# The same images as four webdataset shards (img2dataset's layout: key.png + key.txt), two shards per task.
"$python" - "$work" <<'PY'
import os, sys, tarfile
work = sys.argv[1]
names = sorted(n[:-4] for n in os.listdir(f"{work}/images") if n.endswith(".png"))
with open(f"{work}/tars.txt", "w") as listing:
    for s in range(4):
        path = f"{work}/shard-{s:05d}.tar"
        with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
            for n in names[s::4]:
                tar.add(f"{work}/images/{n}.png", arcname=f"{n}.png")
                tar.add(f"{work}/images/{n}.txt", arcname=f"{n}.txt")
        listing.write(path + "\n")
PY
"$python" Scripts/spark_embed.py --tar-list "$work/tars.txt" --output-dir "$work/tars" --partitions 2 \
    --clip "$clip" --enable-text 2> "$work/tars.log" || { tail -n 40 "$work/tars.log"; exit 1; }
"$python" - "$work" "$count" <<'PY'
import glob, json, sys
import numpy as np
work, count = sys.argv[1], int(sys.argv[2])
rows = 0
paths = set()
for part in sorted(glob.glob(f"{work}/tars/img_emb/img_emb_*.npy")):
    n = part.rsplit("_", 1)[1][:-4]
    meta = [json.loads(l) for l in open(f"{work}/tars/metadata/metadata_{n}.jsonl")]
    assert np.load(part).shape[0] == len(meta) and all(m["caption"] for m in meta)
    paths |= {m["image_path"] for m in meta}
    rows += len(meta)
assert rows == count == len(paths), f"tar shards: {rows} rows, {len(paths)} distinct, for {count} images"
print(f"tar shards: {rows} images from 4 shards in 2 tasks, each once, captions attached")
PY
"$clip" index import "$work/spark" --db "$work/index.sqlite" > /dev/null
query="$work/images/$(ls "$work/images" | grep png | sed -n 17p)"
top=$("$clip" search --db "$work/index.sqlite" --filepath-only --top 1 "$query")
[ "$top" = "$query" ] || { echo "clip search after import: expected $query, got $top"; exit 1; }
echo "grep -o -m1 avx: $(grep -o -m1 -E 'avx512f|avx2' /proc/cpuinfo || echo none); $count images: one clip embed process $(printf %.1f "$single") s, Spark local[2] (4 partitions, incl. start-up) $(printf %.1f "$spark") s; ratio $(echo "scale=2; $single / $spark" | bc)"
