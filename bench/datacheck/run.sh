#!/usr/bin/env bash
# The data check before training: `driftline datacheck` against Great
# Expectations computing the same statistics (row count, null rates, values
# outside the champion's training range, the target's classes, duplicate
# rows) on the same seeded Parquet window, one run, same machine. Both read
# the files from local disk; driftline also measures the window's drift
# against the champion's reference, which Great Expectations does not.
#
#   bash bench/datacheck/run.sh             (ROWS=10000000 DAYS=10)
#   DRIFTLINE_BIN=path/to/driftline bash bench/datacheck/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=bench/datacheck
ROWS=${ROWS:-10000000}
DAYS=${DAYS:-10}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if [ ! -x "$HERE/.venv/bin/python" ] || ! "$HERE/.venv/bin/python" -c 'import great_expectations' 2>/dev/null; then
  python3 -m venv "$HERE/.venv"
  "$HERE/.venv/bin/pip" install --quiet -r "$HERE/requirements.txt"
fi
PY=$HERE/.venv/bin/python
bench/build.sh "$WORK/driftline"
BIN=$WORK/driftline
"$PY" "$HERE/gen.py" "$WORK/window" "$ROWS" "$DAYS" 1
"$PY" "$HERE/gen.py" "$WORK/champion-data" 100000 1 2

model() { # source
  cat <<YAML
apiVersion: driftline.dev/v1alpha1
kind: Model
metadata: {name: datacheck-bench}
spec:
  task: classification
  data: {source: "$1", format: parquet, partitioning: hive, target: good}
  architecture: {type: mlp, hiddenLayers: [16]}
  training: {epochs: 1, batchSize: 256, learningRate: 0.01, seed: 1}
YAML
}
model "$WORK/champion-data/" >"$WORK/champion.yaml"
model "$WORK/window/" >"$WORK/window.yaml"
"$BIN" train --config "$WORK/champion.yaml" --out "$WORK/champion" >/dev/null 2>&1
# The champion's training ranges, for Great Expectations' range checks.
"$PY" - "$WORK/champion/manifest.json" >"$WORK/ranges.json" <<'PY'
import json, sys
stats = json.load(open(sys.argv[1]))["dataStats"]["columns"]
print(json.dumps({c: [s["min"], s["max"]] for c, s in stats.items() if s.get("min") is not None}))
PY

timed() { # out-json time-log command...
  local out=$1 log=$2; shift 2
  /usr/bin/time -v "$@" >"$out" 2>"$log" || true
  local wall rss
  wall=$(grep "Elapsed (wall clock)" "$log" | awk '{print $NF}')
  rss=$(grep "Maximum resident set size" "$log" | awk '{print $NF}')
  echo "$wall $rss"
}
read -r dl_wall dl_rss < <(timed "$WORK/dl.json" "$WORK/dl.log" \
  "$BIN" datacheck --config "$WORK/window.yaml" --champion "$WORK/champion")
read -r ge_wall ge_rss < <(timed "$WORK/ge.json" "$WORK/ge.log" \
  "$PY" "$HERE/ge_check.py" "$WORK/window" "$WORK/ranges.json")

"$PY" - "$WORK/dl.json" "$WORK/ge.json" "$dl_wall" "$dl_rss" "$ge_wall" "$ge_rss" <<'PY'
import json, sys
dl = json.load(open(sys.argv[1])); ge = json.load(open(sys.argv[2]))
def secs(t):
    parts = [float(p) for p in t.split(":")]
    return sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
dl_s, ge_s = secs(sys.argv[3]), secs(sys.argv[5])
print(f"rows {dl['stats']['rows']} (Great Expectations read {ge['rows']})")
print(f"{'tool':<22}{'seconds':>9}{'peak RSS MiB':>14}")
print(f"{'driftline datacheck':<22}{dl_s:>9.2f}{int(sys.argv[4]) / 1024:>14.0f}")
print(f"{'great_expectations':<22}{ge_s:>9.2f}{int(sys.argv[6]) / 1024:>14.0f}   (read {ge['readSeconds']} s + validate {ge['validateSeconds']} s)")
print(f"speed-up: {ge_s / dl_s:.1f}x (goal >= 20x)")
# The same statistics, or the comparison means nothing.
cols = dl["stats"]["columns"]
for c, n in ge["nulls"].items():
    assert cols[c]["nulls"] == n, (c, cols[c]["nulls"], n)
for c, n in ge["outOfRange"].items():
    assert cols[c]["outOfRange"] == n, (c, cols[c]["outOfRange"], n)
print(f"agree: nulls per column, values outside the champion's range per column; "
      f"duplicates: driftline {dl['stats']['duplicateRows']} rows repeat an earlier one, "
      f"GE {ge['duplicateRowsInvolved']} rows take part in a repeat")
print("verdict:", "passed" if dl["verdict"]["passed"] else "failed",
      "| checks:", ", ".join(sorted({c['name'] for c in dl['verdict']['checks']})))
PY
