#!/usr/bin/env bash
# Instructions a request, counted (#25): each `driftline serve` build named,
# and the no-op floor, under valgrind's callgrind, answering N copies of
# floor.sh's 1-row body (drift, feedback and metrics on, RUST_LOG=warn, as
# floor.sh runs it). User-space instructions over all of a server's threads
# from the first request to the last, divided by N: unlike throughput or CPU
# time on a shared 2-core machine, this barely moves between runs, so it
# shows what a change to the request path saves. It does not see cache
# misses, lock contention or the kernel; floor.sh's share is the headline.
#
#   bench/serving/instructions.sh LABEL=BINARY ...   # after floor.sh
#
# N (default 5000 requests), CONNECTIONS (default 4), PORT (default 18080).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 1 ] || { echo "usage: bench/serving/instructions.sh LABEL=BINARY ..." >&2; exit 2; }
. bench/serving/floor-work.sh
floor_work_needs floor-body.json floor-answer.json serving_floor artifacts/wine-quality/v1
command -v callgrind_control >/dev/null || apt-get install -y valgrind >/dev/null
N=${N:-5000}
CONNECTIONS=${CONNECTIONS:-4}
scratch=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$scratch"; }
trap cleanup EXIT

# Runs "$@" under callgrind with counting off, warms it, counts N requests.
count() {
  local label=$1
  shift
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$scratch/$label.out" "$@" \
    >"$scratch/$label.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do
    curl -sf -o /dev/null -H 'content-type: application/json' --data-binary @"$WORK/floor-body.json" \
      "http://127.0.0.1:$PORT$PATH_INFER" && break
    sleep 0.2
  done
  python3 bench/serving/drive.py "$PORT" "$PATH_INFER" "$WORK/floor-body.json" 500 "$CONNECTIONS"
  callgrind_control -i on "$pid" >/dev/null 2>&1
  callgrind_control -z "$pid" >/dev/null 2>&1
  python3 bench/serving/drive.py "$PORT" "$PATH_INFER" "$WORK/floor-body.json" "$N" "$CONNECTIONS"
  callgrind_control -i off "$pid" >/dev/null 2>&1
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
  # Each dump's `totals:` line; the dump asked for above holds the requests.
  cat "$scratch/$label".out* | awk -v n="$N" '/^totals:/ {s += $2} END {printf "%.0f", s / n}'
}

floor=$(count floor "$WORK/serving_floor" "$PORT" "$WORK/floor-answer.json")
printf '%-12s %14s %10s\n' server "instr/request" "× floor"
printf '%-12s %14s %10s\n' floor "$floor" 1.00
for named in "$@"; do
  label=${named%%=*} bin=${named#*=}
  rm -rf "$scratch/feedback"
  n=$(RUST_LOG=warn count "$label" "$bin" serve --artifact "$ARTIFACT" --name wine-quality \
    --host 127.0.0.1 --port "$PORT" --feedback "file://$scratch/feedback/")
  printf '%-12s %14s %10s\n' "$label" "$n" "$(python3 -c "print(f'{$n / $floor:.2f}')")"
done
