#!/usr/bin/env bash
# driftline serve vs MLServer (scikit-learn runtime): the same MLP size, the same
# data, one worker each, the same load generator (wrk) on loopback.
# Prints throughput and p50/p99 latency for 1-row and 32-row requests, for
# driftline on its default async workers (one per CPU) and on one thread.
#
#   bench/serving/run.sh            # from the repository root
#   DURATION=20s CONNECTIONS=16 bench/serving/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=bench/serving
WORK=$HERE/work
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-2}
TRAIN_CSV=pipelines/data/wine-quality/train.csv
mkdir -p "$WORK"

command -v wrk >/dev/null || apt-get install -y wrk >/dev/null
if [ ! -x "$HERE/.venv/bin/mlserver" ]; then
  python3 -m venv "$HERE/.venv"
  "$HERE/.venv/bin/pip" install --quiet -r "$HERE/requirements.txt"
fi
[ -f "$TRAIN_CSV" ] || cargo run --quiet --example prepare_data

bench/build.sh "$WORK/driftline"
BIN=$WORK/driftline
ARTIFACT="file://$PWD/$WORK/artifacts/wine-quality/v1/"
rm -rf "$WORK/artifacts" "$WORK/mlserver"
"$BIN" train -c pipelines/wine-quality.yaml --out "$ARTIFACT" >/dev/null

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_ready() { for _ in $(seq 1 300); do curl -sf "$1" >/dev/null && return 0; sleep 0.2; done; echo "not ready: $1" >&2; return 1; }

RUST_LOG=warn "$BIN" serve --artifact "$ARTIFACT" --name wine-quality --host 127.0.0.1 --port 18080 >"$WORK/driftline.log" 2>&1 &
pids+=($!)
wait_ready http://127.0.0.1:18080/v2/health/ready
FEATURES=$(curl -s http://127.0.0.1:18080/v2/models/wine-quality | python3 -c 'import json,sys; print(",".join(i["name"] for i in json.load(sys.stdin)["inputs"]))')
"$HERE/.venv/bin/python" "$HERE/prepare.py" "$TRAIN_CSV" quality "$WORK" "$FEATURES"

# The same server on one async worker thread, as MLServer runs one Python process.
RUST_LOG=warn "$BIN" --worker-threads 1 serve --artifact "$ARTIFACT" --name wine-quality --host 127.0.0.1 --port 18084 >"$WORK/driftline-1w.log" 2>&1 &
pids+=($!)
wait_ready http://127.0.0.1:18084/v2/health/ready

"$HERE/.venv/bin/mlserver" start "$WORK/mlserver" >"$WORK/mlserver.log" 2>&1 &
pids+=($!)
wait_ready http://127.0.0.1:18081/v2/health/ready

load() { # url body-file → "rps p50 p99 errors"
  BODY_FILE="$2" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$HERE/post.lua" "$1" | sed -n 's/^RESULT //p'
}
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

printf '%-6s %-10s %12s %10s %10s %7s\n' rows server "req/s" "p50 µs" "p99 µs" errors
for n in 1 32; do
  # Warm both up, then measure.
  BODY_FILE="$WORK/body-$n.json" wrk -t1 -c2 -d2s -s "$HERE/post.lua" http://127.0.0.1:18080/v2/models/wine-quality/infer >/dev/null
  BODY_FILE="$WORK/body-$n.json" wrk -t1 -c2 -d2s -s "$HERE/post.lua" http://127.0.0.1:18081/v2/models/wine-quality/infer >/dev/null
  BODY_FILE="$WORK/body-$n.json" wrk -t1 -c2 -d2s -s "$HERE/post.lua" http://127.0.0.1:18084/v2/models/wine-quality/infer >/dev/null
  d=$(load http://127.0.0.1:18080/v2/models/wine-quality/infer "$WORK/body-$n.json")
  w=$(load http://127.0.0.1:18084/v2/models/wine-quality/infer "$WORK/body-$n.json")
  m=$(load http://127.0.0.1:18081/v2/models/wine-quality/infer "$WORK/body-$n.json")
  printf '%-6s %-10s %12s %10s %10s %7s\n' "$n" driftline "$(field "$d" rps)" "$(field "$d" p50_us)" "$(field "$d" p99_us)" "$(field "$d" errors)"
  printf '%-6s %-10s %12s %10s %10s %7s\n' "$n" "dl-1thread" "$(field "$w" rps)" "$(field "$w" p50_us)" "$(field "$w" p99_us)" "$(field "$w" errors)"
  printf '%-6s %-10s %12s %10s %10s %7s\n' "$n" mlserver "$(field "$m" rps)" "$(field "$m" p50_us)" "$(field "$m" p99_us)" "$(field "$m" errors)"
  python3 - "$d" "$w" "$m" "$n" <<'PY'
import sys
def parse(s): return {k: float(v) for k, v in (kv.split("=") for kv in s.split())}
d, w, m, n = parse(sys.argv[1]), parse(sys.argv[2]), parse(sys.argv[3]), sys.argv[4]
for label, x in (("ratio", d), ("ratio-1t", w)):
    print(f"{n:<6} {label:<10} {x['rps']/m['rps']:11.1f}x {m['p50_us']/x['p50_us']:9.1f}x {m['p99_us']/x['p99_us']:9.1f}x   (throughput: driftline/mlserver; latency: mlserver/driftline)")
PY
done
