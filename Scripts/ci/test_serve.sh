#!/usr/bin/env bash
# clip serve end to end on loopback (CI runs this after the unit tests; docs/serve.md):
#   1. schemathesis fuzzes every route of /openapi.json: no 5xx, statuses, content types and bodies as documented;
#   2. the search page in headless Chromium (Scripts/ci/check_search_page.py: query, viewer, more like this, search by a
#      photo, axe-core audit, phone width, dark theme); screenshots at desktop and phone size are kept
#      (CLIP_ARTIFACTS, default .ci/artifacts);
#   3. graceful shutdown: requests in flight when SIGTERM arrives are all answered 200, then the port closes;
#   4. a short load run over every route (no errors), and an overload run (a queue of 8 under 4× its rate):
#      refusals are 503 with Retry-After, nothing accepted is lost;
#   5. real clients with their defaults (Scripts/ci/check_serve_clients.py): LangChain's OpenAIEmbeddings and 16 OpenAI
#      SDK clients sending 64 images each at once.
# Needs: CLIP_BINARY (default .build/release/clip), PYTHON with schemathesis, selenium, axe-selenium-python, openai and langchain-openai, chromium and
# chromium-driver (Debian).
set -euo pipefail
cd "$(dirname "$0")/../.."
CLIP=${CLIP_BINARY:-.build/release/clip}
PY=${PYTHON:-python3}
SCHEMATHESIS=${SCHEMATHESIS:-$(dirname "$PY")/schemathesis}
ART=${CLIP_ARTIFACTS:-.ci/artifacts}
mkdir -p "$ART"
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

"$CLIP" index Examples --db "$work/examples.sqlite" > /dev/null

# Starts clip serve on a free port with the given options; sets pid and url.
start() {
    : > "$work/serve.log"
    "$CLIP" serve --index "$work/examples.sqlite" --port 0 "$@" > "$work/serve.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do
        url=$(sed -n 's/^clip serve: listening on //p' "$work/serve.log")
        [ -n "$url" ] && return 0
        kill -0 "$pid" 2>/dev/null || { cat "$work/serve.log"; echo "clip serve did not start"; exit 1; }
        sleep 0.1
    done
    cat "$work/serve.log"; echo "clip serve did not say where it listens"; exit 1
}

stop() { kill -TERM "$pid"; wait "$pid"; pid=""; }

start
echo "== schemathesis against $url/openapi.json"
"$SCHEMATHESIS" run "$url/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
    --max-examples "${SCHEMATHESIS_EXAMPLES:-30}" --seed 1 --request-timeout 20 --no-color \
    --report junit --report-junit-path "$ART/schemathesis.xml"

echo "== the search page in headless Chromium"
"$PY" Scripts/ci/check_search_page.py --url "$url/" --query "a blue star" --expect blue-star.png --image Examples/red-heart.png \
    --screenshot "$ART/search-page.png" --phone-screenshot "$ART/search-page-phone.png"

echo "== load over every route (3 s each)"
"$PY" Scripts/bench/load_test.py --url "$url" --json "$ART/load.json" all --seconds 3 --concurrency 4
stop

echo "== overload: a queue of 8 inputs under 4x what it drains"
start --queue-capacity 8 --max-batch 4
"$PY" - "$url" <<'PY'
import json, subprocess, sys
url = sys.argv[1]
# The saturation rate first (closed loop), then arrivals at 4x it (open loop).
closed = json.loads(subprocess.run([sys.executable, "Scripts/bench/load_test.py", "--url", url, "closed", "--route", "image",
                                     "--concurrency", "8", "--seconds", "4"], check=True, capture_output=True, text=True).stdout)
rate = max(20.0, 4 * closed["throughput_per_s"])
run = subprocess.run([sys.executable, "Scripts/bench/load_test.py", "--url", url, "open", "--route", "image", "--rate", str(rate),
                      "--seconds", "5"], capture_output=True, text=True)
opened = json.loads(run.stdout)
print(json.dumps(closed)); print(json.dumps(opened))
assert opened["errors"] == {}, f"accepted requests lost or failed: {opened['errors']}"
assert opened["refused"] > 0, "4x the saturation rate refused nothing: the queue is not bounded"
assert opened["ok"] + opened["refused"] == opened["sent"], "every request is either answered or refused"
PY
stop

echo "== the page with an API key: a wrong one refused and dropped, the right one (base64-like) let in"
printf 'k+ey/with=chars\n' > "$work/keys"
start --api-key-file "$work/keys"
"$PY" Scripts/ci/check_search_page.py --url "$url/" --key 'k+ey/with=chars' --screenshot "$ART/search-page-key.png"
stop

echo "== the clients' defaults: LangChain's OpenAIEmbeddings (1,000 texts a request), 16 OpenAI SDK clients x 64 images"
start
"$PY" Scripts/ci/check_serve_clients.py --url "$url" --image Examples/blue-star.png
stop

echo "== graceful shutdown with requests in flight"
start --max-batch 1 --max-wait-ms 0 --max-inputs 256 --queue-capacity 1024
"$PY" - "$url" "$pid" <<'PY'
import asyncio, base64, json, os, signal, socket, sys, time, urllib.parse
url, pid = sys.argv[1], int(sys.argv[2])
u = urllib.parse.urlparse(url)
image = base64.b64encode(open("Examples/blue-star.png", "rb").read()).decode()
body = json.dumps({"input": [{"image": image}] * 64}).encode()

async def request():
    r, w = await asyncio.open_connection(u.hostname, u.port)
    w.write(f"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    await w.drain()
    status = int((await r.readline()).split()[1])
    length = 0
    while (line := await r.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    data = json.loads(await r.readexactly(length))
    w.close()
    return status, len(data.get("data", []))

async def main():
    tasks = [asyncio.create_task(request()) for _ in range(8)]
    await asyncio.sleep(0.3)  # all eight written and being embedded, one image per model call
    os.kill(pid, signal.SIGTERM)
    results = await asyncio.gather(*tasks)
    print("in flight at SIGTERM:", results)
    assert all(r == (200, 64) for r in results), results

asyncio.run(main())
PY
wait "$pid" && echo "clip serve exited 0 after SIGTERM"
pid=""
hostport=${url#http://}
if (exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}") 2>/dev/null; then
    echo "port ${hostport##*:} still accepts connections after shutdown"; exit 1
fi
grep -q "model loaded" "$work/serve.log"
echo "serve checks passed"
