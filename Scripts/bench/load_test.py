#!/usr/bin/env python3
"""Load test of `clip serve` on loopback: throughput and latency per route, saturation, and overload.

Standard library only (asyncio over raw HTTP/1.1 keep-alive connections), so it runs anywhere Python does and
costs the server's cores little. Loopback only and bounded in requests and time.

  python3 Scripts/bench/load_test.py --url http://127.0.0.1:8080 closed --route image --concurrency 16 --seconds 30
  python3 Scripts/bench/load_test.py --url http://127.0.0.1:8080 open --route image --rate 40 --seconds 60
  python3 Scripts/bench/load_test.py --url http://127.0.0.1:8080 all --seconds 10      (every route, one after another)

closed: N clients each send a request as soon as their previous one is answered: the saturation throughput.
open:   requests arrive at a fixed rate whatever the server does (as real clients do): latency of accepted
        requests, the share refused (503 + Retry-After) and how fast refusals come, and whether any accepted
        request was lost (answered other than 200).
Prints one JSON object per run (and writes them with --json FILE).
"""
import argparse
import asyncio
import base64
import json
import os
import statistics
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_IMAGE = os.path.join(HERE, "..", "..", "Examples", "blue-star.png")


def bodies(route, image_path):
    """(method, path, headers, body) of one request of `route`."""
    image = open(image_path, "rb").read()
    b64 = base64.b64encode(image).decode()
    if route == "text":
        return "POST", "/v1/embeddings", {"Content-Type": "application/json"}, json.dumps({"input": "a photo of a blue star"}).encode()
    if route == "image":
        return "POST", "/v1/embeddings", {"Content-Type": "application/json"}, json.dumps({"input": [{"image": b64}]}).encode()
    if route == "immich":
        boundary = "----formdata-undici-012345678901"
        parts = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"entries\"\r\n\r\n"
                 + json.dumps({"clip": {"visual": {"modelName": "ViT-B-32__openai"}}}) + "\r\n"
                 + f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"blob\"\r\n"
                 + "Content-Type: application/octet-stream\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
        return "POST", "/predict", {"Content-Type": f"multipart/form-data; boundary={boundary}"}, parts
    if route == "knn":
        return "POST", "/knn-service", {"Content-Type": "application/json"}, json.dumps(
            {"text": "a blue star", "modality": "image", "num_images": 10}).encode()
    if route == "search":
        return "GET", "/api/search?" + urllib.parse.urlencode({"q": "a blue star", "top": 10}), {}, b""
    if route == "healthz":
        return "GET", "/healthz", {}, b""
    raise SystemExit(f"unknown route {route}")


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, host, port, key):
        self.host, self.port, self.key = host, port, key
        self.reader = self.writer = None

    async def request(self, method, path, headers, body):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Length: {len(body)}\r\n"
        for k, v in headers.items():
            head += f"{k}: {v}\r\n"
        if self.key:
            head += f"Authorization: Bearer {self.key}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("closed")
        status = int(status_line.split()[1])
        length, close = 0, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            if name.lower() == "connection" and "close" in value.lower():
                close = True
        await self.reader.readexactly(length)
        if close:
            self.close()
        return status

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Tally:
    """Latencies of answered (200) and refused (429/503) requests, and counts of everything else by kind."""

    def __init__(self):
        self.ok, self.refused, self.errors = [], [], {}

    async def send(self, conn, request):
        """One request on `conn`; returns its status, or None when the connection failed (then closed)."""
        start = time.monotonic()
        try:
            status = await conn.request(*request)
        except (ConnectionError, OSError, asyncio.IncompleteReadError) as e:
            self.errors[type(e).__name__] = self.errors.get(type(e).__name__, 0) + 1
            conn.close()
            return None
        took = time.monotonic() - start
        if status == 200:
            self.ok.append(took)
        elif status in (429, 503):
            self.refused.append(took)
        else:
            self.errors[str(status)] = self.errors.get(str(status), 0) + 1
        return status


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def summary(kind, route, seconds, ok, refused, errors, extra):
    ms = lambda v: None if v is None else round(v * 1000, 2)
    out = {"mode": kind, "route": route, "seconds": round(seconds, 2), "ok": len(ok),
           "throughput_per_s": round(len(ok) / seconds, 2) if seconds else 0,
           "p50_ms": ms(percentile(ok, 50)), "p99_ms": ms(percentile(ok, 99)), "max_ms": ms(max(ok) if ok else None),
           "refused": len(refused), "refused_p50_ms": ms(percentile(refused, 50)), "refused_p99_ms": ms(percentile(refused, 99)),
           "refused_max_ms": ms(max(refused) if refused else None),
           "errors": errors}
    out.update(extra)
    return out


async def closed_loop(host, port, key, route, concurrency, seconds, max_requests, image):
    request = bodies(route, image)
    tally = Tally()
    deadline = time.monotonic() + seconds
    count = 0

    async def client():
        nonlocal count
        conn = Connection(host, port, key)
        while time.monotonic() < deadline and count < max_requests:
            count += 1
            if await tally.send(conn, request) in (429, 503):
                await asyncio.sleep(0.05)
        conn.close()

    begin = time.monotonic()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return summary("closed", route, time.monotonic() - begin, tally.ok, tally.refused, tally.errors, {"concurrency": concurrency})


async def open_loop(host, port, key, route, rate, seconds, image):
    request = bodies(route, image)
    tally = Tally()
    idle = []  # keep-alive connections not in use

    async def one():
        conn = idle.pop() if idle else Connection(host, port, key)
        if await tally.send(conn, request) is not None:
            idle.append(conn)

    tasks = []
    begin = time.monotonic()
    n = int(rate * seconds)
    for i in range(n):
        delay = begin + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    for c in idle:
        c.close()
    return summary("open", route, time.monotonic() - begin, tally.ok, tally.refused, tally.errors, {"rate_per_s": rate, "sent": n})


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--api-key", default=os.environ.get("CLIP_API_KEY"))
    p.add_argument("--image", default=DEFAULT_IMAGE)
    p.add_argument("--json", help="also write the results here (a JSON list)")
    sub = p.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("closed")
    c.add_argument("--route", default="image")
    c.add_argument("--concurrency", type=int, default=16)
    c.add_argument("--seconds", type=float, default=20)
    c.add_argument("--max-requests", type=int, default=1_000_000)
    o = sub.add_parser("open")
    o.add_argument("--route", default="image")
    o.add_argument("--rate", type=float, required=True)
    o.add_argument("--seconds", type=float, default=60)
    a = sub.add_parser("all")
    a.add_argument("--seconds", type=float, default=10)
    a.add_argument("--concurrency", type=int, default=8)
    args = p.parse_args()

    url = urllib.parse.urlparse(args.url)
    if url.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("load_test.py runs against loopback only")
    host, port = url.hostname, url.port or 80
    if args.mode == "closed":
        runs = [asyncio.run(closed_loop(host, port, args.api_key, args.route, args.concurrency, min(args.seconds, 600), args.max_requests, args.image))]
    elif args.mode == "open":
        if args.rate * args.seconds > 200_000:
            raise SystemExit("rate × seconds is bounded at 200,000 requests")
        runs = [asyncio.run(open_loop(host, port, args.api_key, args.route, args.rate, min(args.seconds, 900), args.image))]
    else:
        runs = [asyncio.run(closed_loop(host, port, args.api_key, r, args.concurrency, min(args.seconds, 120), 1_000_000, args.image))
                for r in ["healthz", "text", "image", "immich", "knn", "search"]]
    for r in runs:
        print(json.dumps(r))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=1)
    bad = sum(sum(r["errors"].values()) for r in runs)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
