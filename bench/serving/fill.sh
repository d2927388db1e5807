#!/usr/bin/env bash
# The one-thread server's p99 while its feedback map fills: each round starts
# a fresh `--worker-threads 1 serve` per binary and measures 8 s of 1-row load
# (about 95 000 requests, under the 100 000-record feedback cap).
# Usage: bench/serving/fill.sh BIN [BIN...]   (ROUNDS=7; run bench/serving/run.sh once first
# for the artifact and request bodies). Prints p99 and RSS per run.
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=bench/serving
ARTIFACT="file://$PWD/$HERE/work/artifacts/wine-quality/v1/"
[ -f "$HERE/work/body-1.json" ] || { echo "run bench/serving/run.sh first" >&2; exit 2; }
rss() { ps -o rss= -p "$1" | tr -d ' '; }
for round in $(seq 1 "${ROUNDS:-7}"); do
  for bin in "$@"; do
    RUST_LOG=warn "$bin" --worker-threads 1 serve --artifact "$ARTIFACT" --name wine-quality \
      --host 127.0.0.1 --port 18095 >"$HERE/work/fill.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do curl -sf http://127.0.0.1:18095/v2/health/ready >/dev/null && break; sleep 0.2; done
    idle=$(rss "$pid")
    r=$(BODY_FILE="$HERE/work/body-1.json" wrk -t2 -c16 -d8s --latency -s "$HERE/post.lua" \
      http://127.0.0.1:18095/v2/models/wine-quality/infer | sed -n 's/^RESULT //p')
    echo "round $round $bin idle_rss_kb=$idle after_rss_kb=$(rss "$pid") $r"
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done
