#!/usr/bin/env bash
# Embedded API server against a real control plane (etcd 3.6 + kube-apiserver
# 1.34 + controller-manager + scheduler from tools/k8s), side by side in one
# run, through kube-rs: start-up, 10 000 ConfigMap creates (32 in flight)
# with 10 watchers, list latency, memory. driftline is a debug build (the
# project builds debug only; dependencies at opt-level 3); the Go binaries
# are release builds.
set -euo pipefail
cd "$(dirname "$0")/../.."
OBJECTS=${OBJECTS:-10000}
WATCHERS=${WATCHERS:-10}
CONCURRENCY=${CONCURRENCY:-32}
if [ -z "${DRIFTLINE_K8S_TOOLS:-}" ]; then
  key=$(cat tools/k8s/build.sh tools/k8s/*/go.mod tools/k8s/*/go.sum tools/k8s/*/*.go | sha256sum | cut -c1-16)
  export DRIFTLINE_K8S_TOOLS="${XDG_CACHE_HOME:-$HOME/.cache}/driftline/k8s-$key"
  [ -x "$DRIFTLINE_K8S_TOOLS/kube-apiserver" ] || tools/k8s/build.sh "$DRIFTLINE_K8S_TOOLS"
fi
out=$(cargo run --quiet --example k8s_bench -- "$OBJECTS" "$WATCHERS" "$CONCURRENCY")
echo "$out" | sed 's/^/# /'
python3 - "$out" <<'PY'
import sys
v = dict(l.split("=", 1) for l in sys.argv[1].splitlines() if "." in l.split("=", 1)[0])
rows = [
    ("start-up (ms; real: until the default ServiceAccount exists)", "startup_ms"),
    ("creates per second", "create_rate_per_s"),
    ("all events at all watchers (s after first create)", "watch_fanout_all_delivered_s"),
    ("list all (ms)", "list_all_ms"),
    ("list, label selector 1/10 (ms)", "list_label_selector_ms"),
    ("list, pages of 500 (ms)", "list_paged_500_ms"),
    ("memory before (MiB; real: etcd + kube-apiserver)", "rss_before_mib"),
    ("memory after (MiB)", "rss_after_mib"),
    ("memory per object (bytes)", "rss_delta_per_object_bytes"),
]
print(f"{'metric':<62}{'embedded':>11}{'real':>11}")
for name, key in rows:
    print(f"{name:<62}{v['embedded.' + key]:>11}{v['real.' + key]:>11}")
PY
