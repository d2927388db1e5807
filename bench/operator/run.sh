#!/usr/bin/env bash
# The operator at MODELS Models in steady state against a no-op kube-runtime
# controller watching the same objects (the floor), side by side in one run
# on one embedded cluster, plus the time from applying the bundled Model to
# its champion answering through the gateway. See bench/operator/bench.rs.
#
# driftline's own code is built at opt-level 3 in its own target dir (as
# bench/build.sh does, without touching the test build), dependencies as in
# the dev profile (already opt-level 3).
#   MODELS=1000 WINDOW=60 bash bench/operator/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
MODELS=${MODELS:-1000}
WINDOW=${WINDOW:-60}
target=${BENCH_TARGET_DIR:-target/bench-opt}
CARGO_TARGET_DIR="$target" CARGO_PROFILE_DEV_OPT_LEVEL=3 \
  cargo build --quiet --bin driftline --example operator_bench
out=$(DRIFTLINE_BIN="$target/debug/driftline" "$target/debug/examples/operator_bench" "$MODELS" "$WINDOW")
echo "$out" | sed 's/^/# /'
python3 - "$out" <<'PY'
import sys
v = dict(l.split("=", 1) for l in sys.argv[1].splitlines() if "=" in l)
def ratio(a, b):
    try:
        return f"{float(v[a]) / float(v[b]):.2f}"
    except (KeyError, ValueError, ZeroDivisionError):
        return "-"
rows = [
    ("RSS in steady state (MiB)", "rss_mib"),
    ("live heap in steady state (MiB)", "heap_mib"),
    ("reconcile p50 (ms)", "reconcile_p50_ms"),
    ("reconcile p99 (ms)", "reconcile_p99_ms"),
    ("full resync: every Model reconciled (s)", "full_resync_s"),
    ("API writes in the steady window", "steady_api_writes"),
    ("reconciles in the steady window", "steady_reconciles"),
]
print(f"{'metric':<44}{'operator':>12}{'no-op':>12}{'ratio':>8}")
for name, key in rows:
    print(f"{name:<44}{v.get('operator.' + key, '-'):>12}{v.get('noop.' + key, '-'):>12}{ratio('operator.' + key, 'noop.' + key):>8}")
print()
for key in ["models", "operator.converge_s", "operator.converge_writes_histogram",
            "operator.converge_writes_by_kind", "operator.converge_heaviest_reconcile",
            "operator.resync_api_writes", "single.apply_to_champion_s", "single.apply_to_first_answer_s"]:
    print(f"{key} = {v.get(key, '-')}")
PY
