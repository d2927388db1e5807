#!/usr/bin/env bash
# Embedded API server benchmark: 10 000 ConfigMaps through kube-rs over HTTP.
# Prints driftline's measured figures beside published kube-apiserver/envtest/kind
# figures (no etcd, kube-apiserver, Docker or kind can run on this machine).
set -euo pipefail
cd "$(dirname "$0")/../.."
OBJECTS=${OBJECTS:-10000}
WATCHERS=${WATCHERS:-10}
CONCURRENCY=${CONCURRENCY:-32}
out=$(cargo run --quiet --example cluster_bench -- "$OBJECTS" "$WATCHERS" "$CONCURRENCY")
echo "$out" | sed 's/^/# /'
get() { echo "$out" | sed -n "s/^$1=\([0-9.]*\).*/\1/p"; }
create_rate=$(get create_rate_per_s)
list_ms=$(get list_all_ms)
fanout_s=$(get watch_fanout_all_delivered_s)
startup_ms=$(get startup_ms)
bytes=$(get rss_delta_per_object_bytes)
# Published reference points (see RESULTS.md for sources):
#  - kind create cluster: 12.5 s (v0.12) to 17.1 s (v0.14) on a laptop (kubernetes-sigs/kind#2893)
#  - etcd alone, 2-CPU GCE, 64 clients writing: 1742 writes/s (etcd.io v2.1 benchmarks); the API
#    server adds admission, conversion and watch-cache work on top of every write.
ref_start_ms=12500
ref_rate=1742
python3 - "$create_rate" "$ref_rate" "$list_ms" "$fanout_s" "$bytes" "$startup_ms" "$ref_start_ms" <<'PY'
import sys
rate, ref_rate, list_ms, fanout_s, per_obj, start_ms, ref_start = map(float, sys.argv[1:])
print(f"{'metric':<38}{'driftline':>14}{'published':>16}{'ratio':>10}")
print(f"{'cluster start-up (ms)':<38}{start_ms:>14.1f}{ref_start:>16.0f}{ref_start/start_ms:>9.0f}x")
print(f"{'create rate (objects/s)':<38}{rate:>14.0f}{ref_rate:>16.0f}{rate/ref_rate:>10.2f}")
print(f"{'list 10k objects (ms)':<38}{list_ms:>14.1f}{'n/a':>16}{'':>10}")
print(f"{'watch fan-out, 10 watchers (s)':<38}{fanout_s:>14.2f}{'n/a':>16}{'':>10}")
print(f"{'memory per object (bytes, RSS delta)':<38}{per_obj:>14.0f}{'n/a':>16}{'':>10}")
PY
