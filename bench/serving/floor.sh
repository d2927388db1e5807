#!/usr/bin/env bash
# driftline serve against the floor (#25): the same 1-row JSON infer request
# to `driftline serve` (drift, feedback and metrics on, as deployed) and to a
# no-op hyper server answering driftline's own answer as a fixed body
# (bench/serving/floor.rs), the same wrk load, alternated ROUNDS times.
# driftline's share of the floor's throughput is the figure (#25's goal: 0.5).
# FEEDBACK=0 serves without a feedback prefix (no request remembered or
# logged), to show what the prediction log costs. BODY=tensor sends the row
# as one [1, n] FP32 tensor, the shape run.sh (and MLServer) use, instead of
# one named input per column (BODY=columns, the default). BASE_BIN=<binary>
# serves a second driftline build too (port 18081, its own feedback prefix)
# and loads it in every round between the first and the floor, so a change
# and the code before it are compared round by round: separate runs minutes
# apart differ by more than a few per cent on a shared 2-core VM.
# PROFILE=release builds driftline and the floor with `cargo build --release`
# (what docker/Dockerfile ships) instead of bench/build.sh's default.
#
#   bench/serving/floor.sh            # from the repository root
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=bench/serving
WORK=$HERE/work
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
FEEDBACK=${FEEDBACK:-1}
BODY=${BODY:-columns}
BASE_BIN=${BASE_BIN:-}
case "$BODY" in columns|tensor) ;; *) echo "BODY must be columns or tensor" >&2; exit 2 ;; esac
mkdir -p "$WORK"
command -v wrk >/dev/null || apt-get install -y wrk >/dev/null
[ -f pipelines/data/wine-quality/train.csv ] || cargo run --quiet --example prepare_data
bench/build.sh "$WORK/driftline"
bench/build.sh "$WORK/serving_floor" serving_floor
BIN=$WORK/driftline
ARTIFACT="file://$PWD/$WORK/artifacts/wine-quality/v1/"
rm -rf "$WORK/artifacts"
"$BIN" train -c pipelines/wine-quality.yaml --out "$ARTIFACT" >/dev/null

pids=()
# The prediction log grows ~700 MB a run: removed when the run ends.
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK/driftline-feedback" "$WORK/driftline-base-feedback"; }
trap cleanup EXIT
wait_ready() { for _ in $(seq 1 300); do curl -sf "$1" >/dev/null && return 0; sleep 0.2; done; echo "not ready: $1" >&2; return 1; }

# `serve BINARY PORT NAME`: one driftline build serving the artifact,
# feedback on (the default sample), drift and metrics on, as a Model's pods
# run; its prediction log under $WORK/NAME-feedback, its output in
# $WORK/NAME.log.
serve() {
  local feedback=()
  rm -rf "${WORK:?}/$3-feedback"
  [ "$FEEDBACK" = 1 ] && feedback=(--feedback "file://$PWD/$WORK/$3-feedback/")
  RUST_LOG=warn "$1" serve --artifact "$ARTIFACT" --name wine-quality --host 127.0.0.1 --port "$2" \
    "${feedback[@]}" >"$WORK/$3.log" 2>&1 &
  pids+=($!)
  wait_ready "http://127.0.0.1:$2/v2/health/ready"
}
serve "$BIN" 18080 driftline
if [ -n "$BASE_BIN" ]; then serve "$BASE_BIN" 18081 driftline-base; fi
# One row in driftline's feature order.
curl -s http://127.0.0.1:18080/v2/models/wine-quality | BODY=$BODY python3 -c '
import json, os, sys
inputs = json.load(sys.stdin)["inputs"]
if os.environ["BODY"] == "tensor":
    assert all(i["datatype"] != "BYTES" for i in inputs), "a text column cannot share an FP32 tensor"
    print(json.dumps({"inputs": [{"name": "input-0", "shape": [1, len(inputs)], "datatype": "FP32",
                                  "data": [[1.0] * len(inputs)]}]}))
else:
    print(json.dumps({"inputs": [{"name": i["name"], "shape": [1], "datatype": i["datatype"],
                                  "data": ["red"] if i["datatype"] == "BYTES" else [1.0]} for i in inputs]}))' >"$WORK/floor-body.json"
curl -sf -H 'content-type: application/json' --data-binary @"$WORK/floor-body.json" \
  http://127.0.0.1:18080/v2/models/wine-quality/infer >"$WORK/floor-answer.json"
"$WORK/serving_floor" 18089 "$WORK/floor-answer.json" >"$WORK/floor.log" 2>&1 &
pids+=($!)
sleep 0.5

load() { BODY_FILE="$WORK/floor-body.json" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$HERE/post.lua" "$1" | sed -n 's/^RESULT //p'; }
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
DL=http://127.0.0.1:18080/v2/models/wine-quality/infer
BASE=http://127.0.0.1:18081/v2/models/wine-quality/infer
FLOOR=http://127.0.0.1:18089/v2/models/wine-quality/infer
load "$DL" >/dev/null; load "$FLOOR" >/dev/null  # warm-up
if [ -n "$BASE_BIN" ]; then load "$BASE" >/dev/null; fi
share() { python3 -c "import sys; print(f'{sys.argv[1]:<6} share of the floor{sys.argv[4]}: {float(sys.argv[2])/float(sys.argv[3]):.3f}')" "$@"; }
printf '%-6s %-10s %10s %10s %10s %7s\n' round server "req/s" "p50 µs" "p99 µs" errors
for round in $(seq 1 "$ROUNDS"); do
  d=$(load "$DL")
  rows=("driftline:$d")
  if [ -n "$BASE_BIN" ]; then b=$(load "$BASE"); rows+=("base:$b"); fi
  f=$(load "$FLOOR")
  rows+=("floor:$f")
  for pair in "${rows[@]}"; do
    r=${pair#*:}
    printf '%-6s %-10s %10s %10s %10s %7s\n' "$round" "${pair%%:*}" "$(field "$r" rps)" "$(field "$r" p50_us)" "$(field "$r" p99_us)" "$(field "$r" errors)"
  done
  share "$round" "$(field "$d" rps)" "$(field "$f" rps)" ""
  if [ -n "$BASE_BIN" ]; then share "$round" "$(field "$b" rps)" "$(field "$f" rps)" " (base)"; fi
done
