#!/usr/bin/env bash
# CPU time per request, by process and thread name: drives URL with wrk
# (THREADS threads, default 1; CONNECTIONS connections, PACE_MS as in bench/serving/post.lua)
# for DURATION and reads each named process's threads from /proc before and
# after (utime + stime, voluntary + involuntary context switches). Unlike a
# latency percentile, this barely moves between runs, so it shows what a
# change costs or saves where the tail's spread is larger than the change.
#
#   BODY_FILE=body.json bench/cpu-per-request.sh URL NAME=PID [NAME=PID...]
#
# The servers are started beforehand (bench/gateway/RESULTS.md and
# bench/serving/RESULTS.md give the commands used).
set -euo pipefail
url=${1:?usage: BODY_FILE=... bench/cpu-per-request.sh URL NAME=PID...}
shift
[ $# -gt 0 ] || { echo "name at least one process as NAME=PID" >&2; exit 2; }
: "${BODY_FILE:?set BODY_FILE to the request body}"
DURATION=${DURATION:-8s}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-1}
HERE=$(cd "$(dirname "$0")" && pwd)
ticks=$(getconf CLK_TCK)

# "thread-name cpu-ticks switches" per thread name of one process.
snapshot() {
  for t in /proc/"$1"/task/*; do
    [ -r "$t/stat" ] || continue
    # The name is inside parentheses and may hold spaces: read after them.
    cpu=$(sed 's/.*) //' "$t/stat" | awk '{print $12 + $13}')
    sw=$(awk '/^voluntary_ctxt_switches/ {v = $2} /^nonvoluntary_ctxt_switches/ {n = $2} END {print v + n}' "$t/status")
    echo "$(tr ' ' _ <"$t/comm") $cpu $sw"
  done | awk '{c[$1] += $2; s[$1] += $3} END {for (k in c) print k, c[k], s[k]}' | sort
}

declare -A before
for named in "$@"; do
  pid=${named#*=}
  [ -d "/proc/$pid" ] || { echo "no process $pid ($named)" >&2; exit 2; }
  before[$named]=$(snapshot "$pid")
done
result=$(BODY_FILE="$BODY_FILE" PACE_MS="${PACE_MS:-}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
  -s "$HERE/serving/post.lua" "$url" | sed -n 's/^RESULT //p')
echo "$result"
requests=$(echo "$result" | tr ' ' '\n' | sed -n 's/^requests=//p')
[ "${requests:-0}" -gt 0 ] || { echo "no requests answered" >&2; exit 1; }
printf '%-12s %-20s %14s %16s\n' process thread "CPU µs/req" "switches/req"
for named in "$@"; do
  after=$(snapshot "${named#*=}")
  join <(echo "${before[$named]}") <(echo "$after") |
    awk -v n="$requests" -v who="${named%%=*}" -v hz="$ticks" \
      '{cpu = ($4 - $2) * 1e6 / hz / n; sw = ($5 - $3) / n
        if (cpu >= 0.01 || sw >= 0.001) printf "%-12s %-20s %14.2f %16.3f\n", who, $1, cpu, sw}'
done
