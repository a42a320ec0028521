#!/usr/bin/env python3
"""Hostile clients against a running `clip serve`, over raw sockets where a library would be too polite (issue 30).

Builds a small photo library with traps in it (a text file named .jpg, a link to /etc/hostname), indexes it, starts
`clip serve` on it, and runs every case below while a monitor asks /healthz five times a second. Each case must end
with the status it names within its time bound; /healthz must answer within 1 s throughout; the server's peak
resident memory must stay under 1 GiB; no secret byte may appear in any answer.

    python3 Scripts/fuzz/hostile_server.py --clip .build/release/clip       # needs Pillow (the image bombs)

Exit status 0 when every case held; each failure is printed with what was seen.
"""
import argparse
import base64
import http.client
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECRET = b"TOP SECRET password=hunter2"
failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what, flush=True)
    if not ok:
        failures.append(what)


class Server:
    def __init__(self, clip, db, *flags):
        self.log = tempfile.NamedTemporaryFile(delete=False)
        self.proc = subprocess.Popen([clip, "serve", "--index", db, "--port", "0", "--log-level", "warning", *flags],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(300):
            text = open(self.log.name).read()
            if "listening on http://" in text:
                self.port = int(text.split("listening on http://")[1].split(":")[1].split()[0].strip("/"))
                return
            if self.proc.poll() is not None:
                raise SystemExit("clip serve did not start:\n" + text)
            time.sleep(0.1)
        raise SystemExit("clip serve did not say where it listens")

    def peak_mib(self):
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


def raw(port, data, timeout=6.0, send_all=True):
    """Sends bytes on a new connection; returns (status or None, reply bytes, seconds until the reply ended)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(timeout)
    start = time.time()
    out = b""
    try:
        if send_all:
            s.sendall(data)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out:
                head, _, body = out.partition(b"\r\n\r\n")
                length = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                if length and len(body) >= length[0]:
                    break
    except (socket.timeout, ConnectionResetError, BrokenPipeError):
        pass
    finally:
        s.close()
    status = int(out.split(b" ")[1]) if out.startswith(b"HTTP/1.1 ") else None
    return status, out, time.time() - start


def request(port, method, path, body=None, headers=None, timeout=10):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


class HealthMonitor(threading.Thread):
    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.worst, self.failures, self.stopping = port, 0.0, 0, False

    def run(self):
        while not self.stopping:
            start = time.time()
            try:
                status, _ = request(self.port, "GET", "/healthz", timeout=5)
                if status != 200:
                    self.failures += 1
            except Exception:
                self.failures += 1
            self.worst = max(self.worst, time.time() - start)
            time.sleep(0.2)


def drained_to_close(s, timeout=5):
    """Reads what the server sent; True when it closed the connection (an end or a reset) within `timeout`."""
    s.settimeout(timeout)
    try:
        while s.recv(1 << 20):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
    finally:
        s.close()


def multipart(boundary, parts):
    out = b""
    for name, value, filename in parts:
        out += b"--" + boundary + b"\r\n"
        disposition = b'Content-Disposition: form-data; name="' + name + b'"'
        if filename:
            disposition += b'; filename="' + filename + b'"'
        out += disposition + b"\r\n\r\n" + value + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


def webp(width, height):
    from PIL import Image
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, "WEBP", lossless=True, quality=0, method=0)
    return buffer.getvalue()


def timed(bound, what, fn):
    start = time.time()
    result = fn()
    took = time.time() - start
    check(took <= bound, f"{what}: answered in {took:.2f} s (bound {bound} s)")
    return result


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--clip", default=os.path.join(ROOT, ".build/release/clip"))
    args = p.parse_args()
    work = tempfile.mkdtemp()
    lib = os.path.join(work, "lib")
    os.makedirs(lib)
    for name in ("blue-star.png", "red-heart.png"):
        shutil.copy(os.path.join(ROOT, "Examples", name), lib)
    # A large photo, for a client that never reads its answer.
    from PIL import Image
    Image.frombytes("RGB", (2000, 2000), os.urandom(2000 * 2000 * 3)).save(os.path.join(lib, "noise.png"))
    with open(os.path.join(lib, "secret.jpg"), "wb") as f:
        f.write(SECRET + b"\n")
    os.symlink("/etc/hostname", os.path.join(lib, "system.jpg"))
    db = os.path.join(work, "index.sqlite")
    subprocess.run([args.clip, "index", lib, "--db", db], check=True, capture_output=True)
    # Short header and body timeouts keep the slow-client cases short; the defaults are longer, not different.
    server = Server(args.clip, db, "--header-timeout", "2", "--body-timeout", "3")
    port = server.port
    monitor = HealthMonitor(port)
    monitor.start()
    try:
        run_cases(port, work, lib)
    finally:
        monitor.stopping = True
        monitor.join()
        peak = server.peak_mib()
        server.stop()
    check(monitor.failures == 0, f"/healthz answered 200 throughout ({monitor.failures} failures)")
    check(monitor.worst <= 1.0, f"/healthz within 1 s throughout (worst {monitor.worst:.2f} s)")
    check(peak <= 1024, f"peak resident memory {peak:.0f} MiB (bound 1024)")
    shutil.rmtree(work)
    print(f"{len(failures)} failures")
    return 1 if failures else 0


def run_cases(port, work, lib):
    # Disclosure: only files that decoded as images, inside the indexed folders after resolving links.
    hostname = open("/etc/hostname", "rb").read().strip()
    for i in range(1, 6):
        for route in ("/files/", "/thumbnails/"):
            status, body = request(port, "GET", f"{route}{i}")
            check(SECRET not in body and body.strip() != hostname, f"GET {route}{i}: no secret bytes ({status})")
    served = [i for i in range(1, 6) if request(port, "GET", f"/files/{i}")[0] == 200]
    check(len(served) == 3, f"only the 3 images are served by /files (served: {served})")
    # A served file swapped for a link out of the library after indexing.
    star = os.path.join(lib, "blue-star.png")
    os.rename(star, star + ".bak")
    os.symlink("/etc/hostname", star)
    statuses = [request(port, "GET", f"/files/{i}")[0] for i in range(1, 6)]
    check(statuses.count(200) == 2, f"a file replaced by a link out of the library is not served ({statuses})")
    os.remove(star)
    os.rename(star + ".bak", star)

    # Wrong statuses.
    status, _, _ = timed(5, "chunk size 10^16", lambda: raw(port, b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n2386F26FC10000\r\n" + b"a" * (40 << 20)))
    check(status in (400, 413), f"chunk size 10^16: {status} (want 400 or 413)")
    chunked = b"".join(b"100000\r\n" + b"a" * 0x100000 + b"\r\n" for _ in range(40)) + b"0\r\n\r\n"
    status, out, _ = timed(5, "chunked body over the limit", lambda: raw(port, b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked))
    check(status == 413, f"chunked body over the limit: {status} (want 413)")
    # A PNG header of 2^32 - 1 by 2^32 - 1: a product that does not fit 64 bits must not be computed.
    huge = base64.b64encode(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR" + b"\xff" * 8).decode()
    status, _ = request(port, "POST", "/v1/embeddings", json.dumps({"input": [{"image": huge}]}),
                        {"Content-Type": "text/plain"})
    check(status == 400, f"a PNG header of 2^32-1 squared: {status} (want 400)")
    for values, want in (([1e-45] * 64, 200), ([0.0] * 64, 400)):
        status, body = request(port, "POST", "/knn-service", json.dumps({"embedding_input": values}),
                               {"Content-Type": "application/json"})
        check(status == want, f"knn-service embedding_input {values[0]!r} x64: {status} (want {want})")
    def urllib_big():
        try:
            urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/v1/embeddings", data=b"x" * (64 << 20),
                                                          headers={"Content-Type": "application/json"}), timeout=10)
            return 200
        except urllib.error.HTTPError as e:
            return e.code
        except Exception as e:
            return repr(e)
    status = timed(5, "64 MiB body from urllib", urllib_big)
    check(status == 413, f"64 MiB body from urllib (no Expect: 100-continue) sees 413: {status}")

    # A client that asks for a 12 MB file and never reads: closed after the body timeout (3 s here) without progress.
    ids = range(1, 8)
    noise = None
    for i in ids:
        status, body = request(port, "GET", f"/files/{i}")
        if status == 200 and len(body) > 5_000_000:
            noise = i
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET /files/{noise} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    time.sleep(6)
    closed = drained_to_close(s)
    check(noise is not None and closed, f"a client that never reads a 12 MB answer is closed (file {noise})")

    # Three such requests pipelined: the first answer read whole, then nothing. The second answer's deadline must not
    # be cancelled when the first one's last byte goes out.
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(f"GET /files/{noise} HTTP/1.1\r\nHost: x\r\n\r\n".encode() * 3)
    s.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
    while len(body) < length:
        body += s.recv(min(1 << 20, length - len(body)))
    time.sleep(8)
    check(drained_to_close(s), "pipelined answers to a client that stopped reading after the first: closed")

    # Slow clients: a keep-alive connection dripping its second request's headers is closed.
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(10)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)
    s.recv(65536)
    start, closed = time.time(), False
    try:
        for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
            s.send(bytes([b]))
            time.sleep(0.5)
            if time.time() - start > 8:
                break
        closed = s.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError, socket.timeout):
        closed = True
    check(closed and time.time() - start <= 5, f"a dripping keep-alive request is closed ({time.time() - start:.1f} s)")
    s.close()

    # Decoding bombs: 24 concurrent /predict with a tiny lossless WebP of 12000 x 12000.
    bomb = webp(12000, 12000)
    boundary = b"clipbound"
    entries = json.dumps({"clip": {"visual": {"modelName": "x"}}}).encode()
    form = multipart(boundary, [(b"entries", entries, None), (b"image", bomb, b"a.webp")])
    headers = {"Content-Type": "multipart/form-data; boundary=clipbound"}
    results = []
    def predict():
        try:
            results.append(request(port, "POST", "/predict", form, headers, timeout=30)[0])
        except Exception as e:
            results.append(repr(e))
    start = time.time()
    threads = [threading.Thread(target=predict) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(all(r == 413 for r in results) and time.time() - start <= 5,
          f"24 concurrent {len(bomb)}-byte WebP bombs: {sorted(set(map(str, results)))} in {time.time() - start:.1f} s")
    # Images within the limit still decode, four at a time, without holding the other routes.
    big = webp(4000, 4000)
    form = multipart(boundary, [(b"entries", entries, None), (b"image", big, b"b.webp")])
    results.clear()
    threads = [threading.Thread(target=predict) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(all(r == 200 for r in results), f"4 concurrent 4000 x 4000 images: {results}")

    # Forms: one 30 MiB text part; 20,000 tiny parts.
    textual = json.dumps({"clip": {"textual": {"modelName": "x"}}}).encode()
    form = multipart(boundary, [(b"entries", textual, None), (b"text", b"a cat " * (5 << 20), None)])
    status, _ = timed(5, "a 30 MiB text part", lambda: request(port, "POST", "/predict", form, headers))
    check(status == 413, f"a 30 MiB text part: {status} (want 413)")
    # Four at once, and four 30 MiB JSON bodies: decoded off the threads that answer /healthz.
    big_json = json.dumps({"input": ["a cat " * (5 << 20)]}).encode()
    results.clear()
    def heavy(path, body, hdrs):
        try:
            results.append(request(port, "POST", path, body, hdrs, timeout=30)[0])
        except Exception as e:
            results.append(repr(e))
    threads = [threading.Thread(target=heavy, args=("/predict", form, headers)) for _ in range(4)]
    threads += [threading.Thread(target=heavy, args=("/v1/embeddings", big_json, {"Content-Type": "application/json"}))
                for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(all(r == 413 for r in results), f"eight concurrent 30 MiB bodies: {sorted(set(map(str, results)))}")
    form = multipart(boundary, [(b"entries", textual, None)] + [(b"p%d" % i, b"x", None) for i in range(20000)])
    status, _ = timed(5, "20,000 form parts", lambda: request(port, "POST", "/predict", form, headers))
    check(status == 413, f"20,000 form parts: {status} (want 413)")
    # A long text through the OpenAI route: refused by size, or read to the context when truncated.
    status, _ = timed(5, "a 2 MiB text", lambda: request(port, "POST", "/v1/embeddings",
        json.dumps({"input": "a photo of a cat " * (1 << 17), "truncate": True}), {"Content-Type": "application/json"}))
    check(status == 413, f"a 2 MiB text: {status} (want 413)")


if __name__ == "__main__":
    sys.exit(main())
