#!/usr/bin/env bash
# Latency the gateway adds per request on loopback: the same 1-row infer
# request straight to `driftline serve` and through `driftline gateway`
# (one backend at weight 100), with wrk at one and at 16 connections.
#
#   bench/gateway/run.sh            # from the repository root
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=bench/gateway
WORK=$HERE/work
DURATION=${DURATION:-10s}
mkdir -p "$WORK"
command -v wrk >/dev/null || apt-get install -y wrk >/dev/null
[ -f pipelines/data/wine-quality/train.csv ] || cargo run --quiet --example prepare_data
bench/build.sh "$WORK/driftline"
BIN=$WORK/driftline
ARTIFACT="file://$PWD/$WORK/artifacts/wine-quality/v1/"
rm -rf "$WORK/artifacts"
"$BIN" train -c pipelines/wine-quality.yaml --out "$ARTIFACT" >/dev/null

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
wait_ready() { for _ in $(seq 1 300); do curl -sf "$1" >/dev/null && return 0; sleep 0.2; done; echo "not ready: $1" >&2; return 1; }

RUST_LOG=warn "$BIN" serve --artifact "$ARTIFACT" --name wine-quality --host 127.0.0.1 --port 18090 >"$WORK/serve.log" 2>&1 &
pids+=($!)
wait_ready http://127.0.0.1:18090/v2/health/ready
echo '{"backends":[{"version":"v1","url":"http://127.0.0.1:18090","weight":100}]}' >"$WORK/weights.json"
RUST_LOG=warn "$BIN" gateway --weights-file "$WORK/weights.json" --host 127.0.0.1 --port 18091 >"$WORK/gateway.log" 2>&1 &
pids+=($!)
wait_ready http://127.0.0.1:18091/healthz

# One row in driftline's feature order, at the reference means.
curl -s http://127.0.0.1:18090/v2/models/wine-quality | python3 -c '
import json, sys
inputs = json.load(sys.stdin)["inputs"]
print(json.dumps({"inputs": [{"name": i["name"], "shape": [1], "datatype": i["datatype"],
                              "data": ["a"] if i["datatype"] == "BYTES" else [1.0]} for i in inputs]}))' >"$WORK/body.json"

load() { BODY_FILE="$WORK/body.json" wrk -t1 -c"$2" -d"$DURATION" --latency -s bench/serving/post.lua "$1" | sed -n 's/^RESULT //p'; }
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

printf '%-12s %-8s %10s %10s %10s %7s\n' connections path "req/s" "p50 µs" "p99 µs" errors
for c in 1 16; do
  load http://127.0.0.1:18090/v2/models/wine-quality/infer "$c" >/dev/null  # warm-up
  d=$(load http://127.0.0.1:18090/v2/models/wine-quality/infer "$c")
  g=$(load http://127.0.0.1:18091/v2/models/wine-quality/infer "$c")
  printf '%-12s %-8s %10s %10s %10s %7s\n' "$c" direct "$(field "$d" rps)" "$(field "$d" p50_us)" "$(field "$d" p99_us)" "$(field "$d" errors)"
  printf '%-12s %-8s %10s %10s %10s %7s\n' "$c" gateway "$(field "$g" rps)" "$(field "$g" p50_us)" "$(field "$g" p99_us)" "$(field "$g" errors)"
  printf '%-12s %-8s %10s %10d %10d\n' "$c" added "" "$(( $(field "$g" p50_us) - $(field "$d" p50_us) ))" "$(( $(field "$g" p99_us) - $(field "$d" p99_us) ))"
done
