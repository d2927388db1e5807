#!/usr/bin/env bash
# driftline serve vs MLServer on the other two wire formats, in one run:
# gRPC (ModelInfer with raw_input_contents, both servers; ghz as the load
# generator) and REST with the binary tensor data extension (driftline; MLServer
# 1.7.1 has no binary REST, so its REST row is JSON, run.sh's body). Same model
# sizes, data and tensors as run.sh; one server process each, on loopback.
#
#   bench/serving/run.sh && bench/serving/protocols.sh     # from the repository root
#   DURATION=10s CONNECTIONS=16 bench/serving/protocols.sh
#   PIN=0 bench/serving/protocols.sh    # no CPU split (everything shares every core)
#
# The CPU split (PIN=1, the default): both servers run on core 0 and the load
# generators (ghz, wrk) on core 1, with `taskset`. ghz is a heavy Go program:
# sharing the cores with it, a server is measured against its own load
# generator's appetite. MLServer serves from one Python process, so one core
# each is also like for like.
# run.sh trains the models and writes the JSON bodies this script starts from.
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=bench/serving
WORK=$HERE/work
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-2}
PIN=${PIN:-1}
SERVER_CPUS=() LOAD_CPUS=()
if [ "$PIN" = 1 ]; then
  SERVER_CPUS=(taskset -c "${SERVER_CORES:-0}") LOAD_CPUS=(taskset -c "${LOAD_CORES:-1}")
  echo "CPU split: servers on core(s) ${SERVER_CORES:-0}, load generators on core(s) ${LOAD_CORES:-1}"
fi
[ -f "$WORK/body-1.json" ] && [ -d "$WORK/mlserver" ] || { echo "run bench/serving/run.sh first" >&2; exit 2; }
# ghz (a gRPC load generator) from the Go module proxy, once.
GHZ=${GHZ:-$(command -v ghz || echo "$HOME/go/bin/ghz")}
[ -x "$GHZ" ] || go install github.com/bojand/ghz/cmd/ghz@v0.120.0
# h2load (nghttp2, C) as a second gRPC load generator: ghz spends a whole core
# on ~12 000 calls/s, less than driftline answers on one, so its rows measure
# ghz. Same calls: gRPC's 5-byte frame around the protobuf message ghz sends.
command -v h2load >/dev/null || apt-get install -y nghttp2-client >/dev/null
"$HERE/.venv/bin/pip" install --quiet 'tritonclient[grpc]==2.73.0'
"$HERE/.venv/bin/python" "$HERE/protocols.py" "$WORK"

BIN=$WORK/driftline
ARTIFACT="file://$PWD/$WORK/artifacts/wine-quality/v1/"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
wait_ready() { for _ in $(seq 1 300); do curl -sf "$1" >/dev/null && return 0; sleep 0.2; done; echo "not ready: $1" >&2; return 1; }

# REST and gRPC share driftline's port; MLServer's are 18081 (REST) and 18082 (gRPC).
RUST_LOG=warn "${SERVER_CPUS[@]}" "$BIN" serve --artifact "$ARTIFACT" --name wine-quality --host 127.0.0.1 --port 18090 >"$WORK/driftline-protocols.log" 2>&1 &
pids+=($!)
"${SERVER_CPUS[@]}" "$HERE/.venv/bin/mlserver" start "$WORK/mlserver" >"$WORK/mlserver-protocols.log" 2>&1 &
pids+=($!)
wait_ready http://127.0.0.1:18090/v2/health/ready
wait_ready http://127.0.0.1:18081/v2/health/ready

rest() { # url body-file header-length|"" duration → "rps= p50_us= p99_us= errors= requests="
  if [ -n "$3" ]; then
    BODY_FILE="$2" HEADER_LENGTH="$3" "${LOAD_CPUS[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$4" --latency -s "$HERE/post_binary.lua" "$1"
  else
    BODY_FILE="$2" "${LOAD_CPUS[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$4" --latency -s "$HERE/post.lua" "$1"
  fi | sed -n 's/^RESULT //p'
}
grpc() { # host:port message-file duration → the same fields
  "${LOAD_CPUS[@]}" "$GHZ" --insecure --proto proto/grpc_predict_v2.proto --call inference.GRPCInferenceService/ModelInfer \
    --binary-file "$2" -c "$CONNECTIONS" --connections "$CONNECTIONS" -z "$3" --format json "$1" |
    python3 -c '
import json, sys
r = json.load(sys.stdin)
p = {d["percentage"]: d["latency"] // 1000 for d in r.get("latencyDistribution") or []}
# Calls in flight when the duration ends are cut by ghz itself (Canceled, or
# Unavailable on "use of closed network connection"): not server failures.
codes = r.get("statusCodeDistribution", {})
cut = sum(n for e, n in (r.get("errorDistribution") or {}).items() if "use of closed network connection" in e)
ok = codes.get("OK", 0) + codes.get("Canceled", 0) + cut
rps, count = r["rps"], r["count"]
print(f"rps={rps:.1f} p50_us={p.get(50, 0)} p99_us={p.get(99, 0)} errors={count - ok} requests={count}")'
}
ok_calls() { # metrics-url → calls the server itself counted as answered OK
  curl -s "$1" | python3 -c '
import sys
n = 0
for line in sys.stdin:
    if line.startswith("driftline_serve_requests_total{endpoint=\"infer\",code=\"200\"}") or (
        line.startswith("grpc_server_handled_total{") and "grpc_code=\"OK\"" in line and "ModelInfer" in line):
        n += float(line.split()[-1])
print(int(n))'
}
h2grpc() { # host:port message-file duration metrics-url → the same fields; errors also counts
  # calls h2load saw answered but the server did not count as OK (a gRPC error
  # travels in an HTTP 200's trailers, which h2load does not read).
  local framed="$2.framed" log="$WORK/h2load.log" before after
  python3 -c 'import struct,sys; m=open(sys.argv[1],"rb").read(); open(sys.argv[2],"wb").write(b"\0"+struct.pack(">I",len(m))+m)' "$2" "$framed"
  before=$(ok_calls "$4")
  rm -f "$log"  # h2load appends to its log
  "${LOAD_CPUS[@]}" h2load -D "${3%s}" -c "$CONNECTIONS" -m 1 -t 1 -H 'content-type: application/grpc' -H 'te: trailers' \
    -d "$framed" --log-file "$log" "http://$1/inference.GRPCInferenceService/ModelInfer" >"$WORK/h2load.out"
  after=$(ok_calls "$4")
  python3 - "$WORK/h2load.out" "$log" "$before" "$after" <<'PY'
import re, sys
out = open(sys.argv[1]).read()
rps = float(re.search(r"finished in [0-9.]+s, ([0-9.]+) req/s", out).group(1))
m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", out)
done, succeeded = int(m.group(2)), int(m.group(3))
ms = sorted(int(l.split()[2]) for l in open(sys.argv[2]) if l.strip() and l.split()[1].startswith("2"))
pct = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))] if ms else 0
not_ok = max(0, succeeded - (int(sys.argv[4]) - int(sys.argv[3])))
print(f"rps={rps:.1f} p50_us={pct(0.50)} p99_us={pct(0.99)} errors={done - succeeded + not_ok} requests={done}")
PY
}
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
row() { printf '%-5s %-10s %-12s %12s %10s %10s %7s\n' "$1" "$2" "$3" "$(field "$4" rps)" "$(field "$4" p50_us)" "$(field "$4" p99_us)" "$(field "$4" errors)"; }

printf '%-5s %-10s %-12s %12s %10s %10s %7s\n' rows server protocol "req/s" "p50 µs" "p99 µs" errors
infer=/v2/models/wine-quality/infer
for n in 1 32; do
  len=$(cat "$WORK/body-$n.len")
  # Warm up each server and protocol, then measure.
  rest "http://127.0.0.1:18090$infer" "$WORK/body-$n.bin" "$len" 2s >/dev/null
  rest "http://127.0.0.1:18081$infer" "$WORK/body-$n.json" "" 2s >/dev/null
  grpc 127.0.0.1:18090 "$WORK/grpc-$n.bin" 2s >/dev/null
  grpc 127.0.0.1:18082 "$WORK/grpc-$n.bin" 2s >/dev/null
  h2grpc 127.0.0.1:18090 "$WORK/grpc-$n.bin" 2s http://127.0.0.1:18090/metrics >/dev/null
  h2grpc 127.0.0.1:18082 "$WORK/grpc-$n.bin" 2s http://127.0.0.1:18083/metrics >/dev/null
  row "$n" driftline grpc "$(grpc 127.0.0.1:18090 "$WORK/grpc-$n.bin" "$DURATION")"
  row "$n" mlserver grpc "$(grpc 127.0.0.1:18082 "$WORK/grpc-$n.bin" "$DURATION")"
  row "$n" driftline grpc-h2load "$(h2grpc 127.0.0.1:18090 "$WORK/grpc-$n.bin" "$DURATION" http://127.0.0.1:18090/metrics)"
  row "$n" mlserver grpc-h2load "$(h2grpc 127.0.0.1:18082 "$WORK/grpc-$n.bin" "$DURATION" http://127.0.0.1:18083/metrics)"
  row "$n" driftline rest-binary "$(rest "http://127.0.0.1:18090$infer" "$WORK/body-$n.bin" "$len" "$DURATION")"
  row "$n" mlserver rest-json "$(rest "http://127.0.0.1:18081$infer" "$WORK/body-$n.json" "" "$DURATION")"
done
