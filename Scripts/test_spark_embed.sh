#!/usr/bin/env bash
# clip embed as Spark's worker, for real, on Spark's local mode (CI): 2,000 synthetic images embedded by one
# `clip embed` process, by Scripts/spark_embed.py on local[2] (4 partitions), and again with one task killed mid-write
# and retried; Scripts/check_spark_embed.py then checks every input appears exactly once with rows aligned, the
# retried run is bitwise the clean one, autofaiss indexes the output and finds known neighbours, and the output
# imports into `clip index`. Prints the throughput of both (a measurement, not a pass/fail bound).
# Needs: a release `clip` (CLIP_BINARY), Java 17, and a Python with pyspark, autofaiss and pyarrow (PYTHON).
set -euo pipefail
cd "$(dirname "$0")/.."
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

"$python" Scripts/check_spark_embed.py "$work"
"$clip" index import "$work/spark" --db "$work/index.sqlite" > /dev/null
query="$work/images/$(ls "$work/images" | grep png | sed -n 17p)"
top=$("$clip" search --db "$work/index.sqlite" --filepath-only --top 1 "$query")
[ "$top" = "$query" ] || { echo "clip search after import: expected $query, got $top"; exit 1; }
echo "grep -o -m1 avx: $(grep -o -m1 -E 'avx512f|avx2' /proc/cpuinfo || echo none); $count images: one clip embed process $(printf %.1f "$single") s, Spark local[2] (4 partitions, incl. start-up) $(printf %.1f "$spark") s; ratio $(echo "scale=2; $single / $spark" | bc)"
