#!/usr/bin/env python3
"""Embed millions of images on a Spark cluster, with swift-clip as the worker.

Spark splits an input list (one image per line: a path, or path<TAB>caption) or a list of webdataset tar shards
into partitions; each task pipes its lines into `clip embed --input-list - --output-dir OUT --part N` (or hands its
shards to `clip embed --input-tar …`) on its executor, which writes partition N of
clip-retrieval's layout (img_emb/img_emb_{N}.npy, text_emb/text_emb_{N}.npy, metadata/metadata_{N}.jsonl) and renames
it into place only when whole. A retried task rewrites the same partition, so retries never duplicate rows. With
pyarrow available, each task also writes metadata/metadata_{N}.parquet (clip-retrieval's own metadata format).

    spark-submit --master yarn --num-executors 50 --executor-cores 4 --conf spark.task.cpus=4 \\
        --files /opt/swift-clip/clip Scripts/spark_embed.py \\
        --input-list hdfs:///data/images.tsv --output-dir /mnt/shared/embeddings --partitions 2000 --clip ./clip

OUT must be a filesystem every executor writes to (NFS, Lustre, a FUSE-mounted bucket); the image paths must be
readable on the executors. docs/cluster.md has the Slurm and Kubernetes equivalents.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--input-list", help="text file (any path Spark reads): path or path<TAB>caption per line")
    source.add_argument("--tar-list", help="text file of webdataset tar shards, one path per line: whole shards go to each task")
    ap.add_argument("--output-dir", required=True, help="shared folder for clip-retrieval's layout")
    ap.add_argument("--partitions", type=int, default=0, help="partitions (default: Spark's default parallelism)")
    ap.add_argument("--clip", default="clip", help="the clip binary on the executors")
    ap.add_argument("--model", default="default", help="--model for clip embed")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--enable-text", action="store_true", help="also embed the captions")
    ap.add_argument("--no-parquet", action="store_true", help="JSON-lines metadata only")
    # Test hook: the first attempt of this partition is killed (SIGKILL) once it has started writing, as a lost
    # executor would be; Spark must retry it (local[N,F] with F >= 2, or spark.task.maxFailures on a cluster).
    ap.add_argument("--kill-first-attempt-of", type=int, default=-1, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def write_parquet(output_dir, part):
    """metadata_{N}.jsonl -> metadata_{N}.parquet, written to a temporary name and renamed."""
    try:
        import pyarrow.json as pj
        import pyarrow.parquet as pq
    except ImportError:
        return False
    source = os.path.join(output_dir, "metadata", f"metadata_{part}.jsonl")
    target = os.path.join(output_dir, "metadata", f"metadata_{part}.parquet")
    temporary = os.path.join(output_dir, "metadata", f".metadata_{part}.parquet.{os.getpid()}.tmp")
    if os.path.getsize(source) == 0:
        import pyarrow as pa
        table = pa.table({"image_path": pa.array([], pa.string())})
    else:
        table = pj.read_json(source)
    pq.write_table(table, temporary)
    os.replace(temporary, target)
    return True


def embed_partition(args, index, lines):
    from pyspark import TaskContext

    ctx = TaskContext.get()
    attempt = ctx.attemptNumber() if ctx else 0
    cpus = int(ctx.cpus()) if ctx and hasattr(ctx, "cpus") else 1
    env = dict(os.environ, CLIP_NUM_THREADS=str(max(cpus, 1)))
    lines = [line for line in lines if line.strip()]
    if not lines:
        return
    command = [args.clip, "embed", "--output-dir", args.output_dir, "--part", str(index),
               "--model", args.model, "--batch-size", str(args.batch_size)]
    if args.tar_list:
        command += ["--input-tar"] + lines
        data = b""
    else:
        command += ["--input-list", "-"]
        data = "".join(line + "\n" for line in lines).encode()
    if args.enable_text:
        command.append("--enable-text")
    started = time.time()
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    if index == args.kill_first_attempt_of and attempt == 0:
        process.stdin.write(data)
        process.stdin.close()
        folder = os.path.join(args.output_dir, "img_emb")
        deadline = time.time() + 120
        while time.time() < deadline and process.poll() is None:
            if any(name.startswith(f".img_emb_{index}.npy") and os.path.getsize(os.path.join(folder, name)) > 4096
                   for name in (os.listdir(folder) if os.path.isdir(folder) else [])):
                break
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
        raise RuntimeError(f"partition {index}: attempt {attempt} killed on purpose (test hook)")
    out, err = process.communicate(data)
    if process.returncode != 0:
        raise RuntimeError(f"partition {index}: clip embed exited with {process.returncode}: {err.decode(errors='replace')[-2000:]}")
    parquet = False if args.no_parquet else write_parquet(args.output_dir, index)
    yield json.dumps({"partition": index, "attempt": attempt, "seconds": round(time.time() - started, 3),
                      "summary": out.decode().strip(), "parquet": parquet})


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName("swift-clip embed").getOrCreate()
    sc = spark.sparkContext
    partitions = args.partitions or sc.defaultParallelism
    lines = sc.textFile(args.input_list or args.tar_list, minPartitions=partitions)
    started = time.time()
    reports = lines.mapPartitionsWithIndex(lambda i, it: embed_partition(args, i, it)).collect()
    seconds = time.time() - started
    for r in reports:
        print(r)
    print(json.dumps({"partitions": len(reports), "seconds": round(seconds, 3)}))
    spark.stop()


if __name__ == "__main__":
    main()
