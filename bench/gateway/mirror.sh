#!/usr/bin/env bash
# What mirroring a candidate in shadow costs the client (#20): gateway
# throughput and client latency with the shadow at 100 % sampling against
# the same gateway with no shadow, the same 1-row infer request, wrk at 16
# connections, the two alternated ROUNDS times. Champion and candidate are two
# `driftline serve` processes of the same artifact (so every pair agrees), or
# with CANDIDATE=floor the candidate is the no-op server of
# bench/serving/floor.rs answering the champion's own answer: on one machine
# the candidate's model work competes with the champion's for the same
# cores, which in a cluster it does not, and the floor candidate leaves only
# the gateway's own cost of mirroring. The candidate stands for a pod on
# other CPUs, using only what the client's path leaves idle: with
# CANDIDATE_SCHED=idle (the default) it runs in Linux's idle scheduling class
# (`chrt --idle 0`), which is exactly that; with CANDIDATE_SCHED=nice it runs
# at nice CANDIDATE_NICE (19), which still takes a share and a slice. The
# gateway is the library's router (bench/gateway/mirror.rs), as
# `driftline gateway` serves it. After each shadow run the gateway's
# /metrics says how many mirrors were paired, failed or dropped by the
# bounded queue. PACE_MS=1 makes each connection wait 1 ms after each answer
# (bench/serving/post.lua): a load below saturation, as a capacity-planned
# gateway runs, instead of as fast as the gateway answers.
#
#   bench/gateway/mirror.sh            # from the repository root
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=bench/gateway
WORK=$HERE/work
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-2}
CONNECTIONS=${CONNECTIONS:-16}
CANDIDATE=${CANDIDATE:-driftline}
CANDIDATE_NICE=${CANDIDATE_NICE:-19}
CANDIDATE_SCHED=${CANDIDATE_SCHED:-idle}
case "$CANDIDATE_SCHED" in
  idle) CANDIDATE_PRIO=(chrt --idle 0) ;;
  nice) CANDIDATE_PRIO=(nice -n "$CANDIDATE_NICE") ;;
  *) echo "CANDIDATE_SCHED must be idle or nice" >&2; exit 2 ;;
esac
mkdir -p "$WORK"
command -v wrk >/dev/null || apt-get install -y wrk >/dev/null
[ -f pipelines/data/wine-quality/train.csv ] || cargo run --quiet --example prepare_data
bench/build.sh "$WORK/driftline"
CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo build --quiet --example gateway_mirror
cp "${CARGO_TARGET_DIR:-target}/debug/examples/gateway_mirror" "$WORK/gateway_mirror"
if [ "$CANDIDATE" = floor ]; then
  bench/build.sh "$WORK/serving_floor" serving_floor
fi
BIN=$WORK/driftline
ARTIFACT="file://$PWD/$WORK/artifacts/wine-quality/v1/"
rm -rf "$WORK/artifacts" "$WORK/shadow"
"$BIN" train -c pipelines/wine-quality.yaml --out "$ARTIFACT" >/dev/null

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
wait_ready() { for _ in $(seq 1 300); do curl -sf "$1" >/dev/null && return 0; sleep 0.2; done; echo "not ready: $1" >&2; return 1; }

serve() { # PORT [priority command...]
  local port=$1
  shift
  RUST_LOG=warn "$@" "$BIN" serve --artifact "$ARTIFACT" --name wine-quality --host 127.0.0.1 --port "$port" >"$WORK/serve-$port.log" 2>&1 &
  pids+=($!)
  wait_ready "http://127.0.0.1:$port/v2/health/ready"
}
serve 18090

curl -s http://127.0.0.1:18090/v2/models/wine-quality | python3 -c '
import json, sys
inputs = json.load(sys.stdin)["inputs"]
print(json.dumps({"inputs": [{"name": i["name"], "shape": [1], "datatype": i["datatype"],
                              "data": ["a"] if i["datatype"] == "BYTES" else [1.0]} for i in inputs]}))' >"$WORK/body.json"
if [ "$CANDIDATE" = floor ]; then
  curl -sf -H 'content-type: application/json' --data-binary @"$WORK/body.json" \
    http://127.0.0.1:18090/v2/models/wine-quality/infer >"$WORK/answer.json"
  "${CANDIDATE_PRIO[@]}" "$WORK/serving_floor" 18092 "$WORK/answer.json" >"$WORK/floor.log" 2>&1 &
  pids+=($!)
  sleep 0.5
else
  serve 18092 "${CANDIDATE_PRIO[@]}"
fi

load() { BODY_FILE="$WORK/body.json" PACE_MS="${PACE_MS:-}" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/serving/post.lua "$1" | sed -n 's/^RESULT //p'; }
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
metric() { echo "$1" | awk -v m="$2" '$1 ~ "^"m"(\\{|$)" {s += $2} END {printf "%d", s}'; }

run_gateway() { # SAMPLE
  RUST_LOG=warn "$WORK/gateway_mirror" 18091 http://127.0.0.1:18090 http://127.0.0.1:18092 "$1" "$PWD/$WORK/shadow" >"$WORK/gateway.log" 2>&1 &
  gw=$!
  wait_ready http://127.0.0.1:18091/healthz
}

printf '%-6s %-10s %10s %10s %10s %7s %8s %8s %8s\n' round shadow "req/s" "p50 µs" "p99 µs" errors paired failed dropped
for round in $(seq 1 "$ROUNDS"); do
  for sample in 0 1; do
    run_gateway "$sample"
    load http://127.0.0.1:18091/v2/models/wine-quality/infer >/dev/null  # warm-up
    before=$(curl -s http://127.0.0.1:18091/metrics)
    r=$(load http://127.0.0.1:18091/v2/models/wine-quality/infer)
    sleep 1  # mirrors still queued are sent
    after=$(curl -s http://127.0.0.1:18091/metrics)
    kill "$gw"; wait "$gw" 2>/dev/null || true
    paired=$(( $(metric "$after" driftline_gateway_shadow_paired_total) - $(metric "$before" driftline_gateway_shadow_paired_total) ))
    failed=$(( $(metric "$after" driftline_gateway_shadow_errors_total) - $(metric "$before" driftline_gateway_shadow_errors_total) ))
    dropped=$(( $(metric "$after" driftline_gateway_shadow_dropped_total) - $(metric "$before" driftline_gateway_shadow_dropped_total) ))
    label=$([ "$sample" = 1 ] && echo "100 %" || echo none)
    printf '%-6s %-10s %10s %10s %10s %7s %8s %8s %8s\n' "$round" "$label" "$(field "$r" rps)" "$(field "$r" p50_us)" "$(field "$r" p99_us)" "$(field "$r" errors)" "$paired" "$failed" "$dropped"
  done
done
