#!/usr/bin/env bash
# Where a server's CPU goes a request on floor.sh's 1-row body: user and
# kernel time, and voluntary and involuntary context switches, summed over
# the server's threads (/proc/PID/stat and /proc/PID/task/*/status) across
# one wrk run (-t2 -c16, DURATION), after 2 s of warm-up. `floor` names the
# no-op hyper server floor.sh builds; anything else is a `driftline serve`
# binary (feedback to a scratch prefix, drift and metrics on, RUST_LOG=warn).
#
#   bench/serving/cpu-split.sh floor BINARY ...     # after floor.sh
#
# DURATION (default 8s), PORT (default 18080). One line a server.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 1 ] || { echo "usage: bench/serving/cpu-split.sh floor|BINARY ..." >&2; exit 2; }
. bench/serving/floor-work.sh
floor_work_needs floor-body.json floor-answer.json serving_floor artifacts/wine-quality/v1
TICK=$(getconf CLK_TCK)
scratch=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$scratch"; }
trap cleanup EXIT
# user ticks, system ticks, voluntary and involuntary switches of process $1.
sample() {
  local stat; stat=$(cut -d' ' -f14,15 "/proc/$1/stat")
  echo "$stat $(cat /proc/"$1"/task/*/status | awk '/^voluntary_ctxt_switches/ {v += $2} /^nonvoluntary_ctxt_switches/ {n += $2} END {print v, n}')"
}
for bin in "$@"; do
  if [ "$bin" = floor ]; then
    "$WORK/serving_floor" "$PORT" "$WORK/floor-answer.json" >"$scratch/floor.log" 2>&1 &
  else
    RUST_LOG=warn "$bin" serve --artifact "$ARTIFACT" --name wine-quality --host 127.0.0.1 \
      --port "$PORT" --feedback "file://$scratch/feedback/" >"$scratch/serve.log" 2>&1 &
  fi
  pid=$!
  for _ in $(seq 1 300); do
    curl -sf -o /dev/null --data-binary @"$BODY" "$URL" && break
    sleep 0.1
  done
  BODY_FILE=$BODY wrk -t2 -c16 -d2s -s bench/serving/post.lua "$URL" >/dev/null
  read -r u0 s0 v0 n0 <<<"$(sample "$pid")"
  out=$(BODY_FILE=$BODY wrk -t2 -c16 -d"${DURATION:-8s}" -s bench/serving/post.lua "$URL")
  read -r u1 s1 v1 n1 <<<"$(sample "$pid")"
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  python3 -c '
import sys
name, n, tick, du, ds, dv, dn = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *map(int, sys.argv[4:])
print(f"{name:<28} requests={n} user_us={du / tick * 1e6 / n:.2f} sys_us={ds / tick * 1e6 / n:.2f} "
      f"voluntary={dv / n:.3f} involuntary={dn / n:.3f} a request")
' "$(basename "$bin")" "$requests" "$TICK" $((u1 - u0)) $((s1 - s0)) $((v1 - v0)) $((n1 - n0))
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
done
