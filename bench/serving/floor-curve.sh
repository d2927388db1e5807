#!/usr/bin/env bash
# What share of the floor a server with N µs of its own CPU work per request
# can reach on this machine (#25): the no-op floor (bench/serving/floor.rs)
# with FLOOR_WORK_US=N of calibrated work in its handler, for each N in
# WORK_US, under floor.sh's wrk load (THREADS threads, CONNECTIONS
# connections). Prints req/s, the share of the bare floor (N = 0) and the
# server's CPU µs a request (bench/cpu-per-request.sh). Read driftline's
# share from floor.sh beside it: the row with the same share says how much
# work per request driftline may spend to reach it.
#
#   bench/serving/floor.sh && bench/serving/floor-curve.sh   # from the repository root
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=bench/serving/work
WORK_US=${WORK_US:-0 2 4 6 8 12 16 24}
DURATION=${DURATION:-8s}
export THREADS=${THREADS:-2} CONNECTIONS=${CONNECTIONS:-16}
for f in floor-body.json floor-answer.json serving_floor; do
  [ -e "$WORK/$f" ] || { echo "$WORK/$f is missing: run bench/serving/floor.sh first" >&2; exit 2; }
done
URL=http://127.0.0.1:18089/v2/models/wine-quality/infer
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null || true' EXIT
printf '%-8s %10s %7s %12s\n' "work µs" "req/s" share "CPU µs/req"
bare=
for us in $WORK_US; do
  FLOOR_WORK_US=$us "$WORK/serving_floor" 18089 "$WORK/floor-answer.json" >/dev/null 2>&1 &
  pid=$!
  sleep 2 # calibration
  BODY_FILE=$WORK/floor-body.json DURATION=2s bench/cpu-per-request.sh "$URL" floor="$pid" >/dev/null
  out=$(BODY_FILE=$WORK/floor-body.json DURATION=$DURATION bench/cpu-per-request.sh "$URL" floor="$pid")
  rps=$(echo "$out" | sed -n 's/.*rps=\([0-9.]*\).*/\1/p')
  cpu=$(echo "$out" | awk '$1 == "floor" {s += $3} END {print s}')
  bare=${bare:-$rps}
  printf '%-8s %10.0f %7.3f %12.2f\n' "$us" "$rps" "$(python3 -c "print($rps / $bare)")" "$cpu"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
done
