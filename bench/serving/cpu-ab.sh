#!/usr/bin/env bash
# Two or more `driftline serve` builds on floor.sh's 1-row body, alternated:
# each started in turn (feedback to a scratch prefix, drift and metrics on,
# RUST_LOG=warn as floor.sh runs it), warmed for 3 s, then driven by
# bench/cpu-per-request.sh (wrk -t2 -c16) for DURATION; one line a server
# a round with its throughput, CPU µs and context switches a request.
# CPU time a request moves far less between runs than throughput does, so
# this shows what one change costs or saves; floor.sh gives the headline.
#
#   bench/serving/cpu-ab.sh LABEL=BINARY LABEL=BINARY ...   # after floor.sh
#
# `LABEL=BINARY::FLAGS` adds FLAGS to that server's `serve` command, to
# weigh a setting on one binary, e.g.
#   bench/serving/cpu-ab.sh base=B 'rate0=B::--feedback-sample-rate 0'
#
# ROUNDS (default 3), DURATION (default 8s), PORT (default 18080).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 1 ] || { echo "usage: bench/serving/cpu-ab.sh LABEL=BINARY ..." >&2; exit 2; }
. bench/serving/floor-work.sh
floor_work_needs floor-body.json artifacts/wine-quality/v1
ROUNDS=${ROUNDS:-3}
scratch=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$scratch"; }
trap cleanup EXIT
for round in $(seq 1 "$ROUNDS"); do
  for named in "$@"; do
    label=${named%%=*} bin=${named#*=} flags=()
    if [[ $bin == *::* ]]; then
      read -r -a flags <<<"${bin#*::}"
      bin=${bin%%::*}
    fi
    rm -rf "$scratch/feedback"
    RUST_LOG=warn "$bin" serve --artifact "$ARTIFACT" --name wine-quality --host 127.0.0.1 \
      --port "$PORT" --feedback "file://$scratch/feedback/" "${flags[@]}" >"$scratch/$label.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$PORT/v2/health/ready" >/dev/null && break; sleep 0.1; done
    BODY_FILE=$BODY THREADS=2 DURATION=3s bash bench/cpu-per-request.sh "$URL" "s=$pid" >/dev/null
    out=$(BODY_FILE=$BODY THREADS=2 DURATION=${DURATION:-8s} bash bench/cpu-per-request.sh "$URL" "s=$pid")
    # Summed over the server's threads.
    sums=$(echo "$out" | awk '$1 == "s" {c += $3; w += $4} END {printf "cpu_us_per_req=%.2f switches_per_req=%.3f", c, w}')
    printf 'round %s  %-12s %s %s\n' "$round" "$label" "$(echo "$out" | head -1)" "$sums"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  done
done
