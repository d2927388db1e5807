#!/usr/bin/env bash
# CRD schema validation: driftline's structural-schema validator against
# python-jsonschema (Draft 4) on the same Model schema and objects, one run here.
# driftline is a debug build (the project builds debug only; dependencies at opt-level 3).
set -euo pipefail
cd "$(dirname "$0")/../.."
OBJECTS=${OBJECTS:-10000}
python3 -m pip install -q -r bench/cluster-schema/requirements.txt >/dev/null 2>&1 || true
data=$(mktemp --suffix=.json)
trap 'rm -f "$data"' EXIT
python3 bench/cluster-schema/gen.py "$OBJECTS" > "$data"
ours=$(cargo run --quiet --example cluster_schema_bench -- "$data")
theirs=$(python3 bench/cluster-schema/jsonschema_bench.py "$data")
echo "$ours" | sed 's/^/# driftline: /'
echo "$theirs" | sed 's/^/# jsonschema: /'
get() { echo "$1" | sed -n "s/^$2=\([0-9.]*\).*/\1/p"; }
python3 - "$(get "$ours" validate_us_per_object)" "$(get "$theirs" validate_us_per_object)" \
  "$(get "$ours" admit_with_cel_us_per_object)" "$(get "$ours" invalid)" "$(get "$theirs" invalid)" <<'PY'
import sys
ours, theirs, admit = map(float, sys.argv[1:4])
ours_bad, theirs_bad = sys.argv[4:6]
print(f"{'metric (us per object)':<44}{'driftline':>11}{'jsonschema':>12}{'ratio':>8}")
print(f"{'schema validation only (same work)':<44}{ours:>11.1f}{theirs:>12.1f}{theirs/ours:>7.2f}x")
print(f"{'prune + default + validate + CEL rules':<44}{admit:>11.1f}{'n/a':>12}{'':>8}")
print(f"invalid objects found: driftline {ours_bad}, jsonschema {theirs_bad}")
PY
