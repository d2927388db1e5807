#!/usr/bin/env bash
# Parquet read + preprocess throughput: driftline (whole window, as in-memory
# training and the data check read; and streamed, as training.shuffleBuffer
# reads) against pyarrow and polars reading the same Hive-partitioned files
# into the same float32 matrix (8 numeric features and one string column as
# category codes), one run, same machine. The matrices' sums are compared
# before any ratio is printed.
#
#   bash bench/parquet/run.sh            (ROWS=10000000 DAYS=10)
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=bench/parquet
ROWS=${ROWS:-10000000}
DAYS=${DAYS:-10}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if [ ! -x "$HERE/.venv/bin/python" ] || ! "$HERE/.venv/bin/python" -c 'import polars, pyarrow' 2>/dev/null; then
  python3 -m venv "$HERE/.venv"
  "$HERE/.venv/bin/pip" install --quiet -r "$HERE/requirements.txt"
fi
PY=$HERE/.venv/bin/python
"$PY" bench/streaming/generate.py "$WORK/data" "$ROWS" "$DAYS" >/dev/null
FEATURES="x0 x1 x2 x3 x4 x5 x6 x7 color"
# driftline's own code at opt-level 3 as in a release build (see bench/build.sh).
# Each driftline reader in a process of its own, streamed first.
CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo build --quiet --example parquet_read
BIN=${CARGO_TARGET_DIR:-target}/debug/examples/parquet_read
"$BIN" streamed "$WORK/data" $FEATURES >"$WORK/streamed.json"
"$BIN" whole "$WORK/data" $FEATURES >"$WORK/whole.json"
"$PY" "$HERE/read.py" "$WORK/data" $FEATURES >"$WORK/py.json"
"$PY" - "$WORK/whole.json" "$WORK/streamed.json" "$WORK/py.json" <<'PY'
import json, sys
whole, streamed, py = (json.load(open(p)) for p in sys.argv[1:4])
dl = {"rows": whole["rows"], "streamedRows": streamed["rows"], "wholeSeconds": whole["seconds"],
      "streamedSeconds": streamed["seconds"], "wholeSum": whole["sum"], "streamedSum": streamed["sum"]}
assert dl["rows"] == py["rows"] == dl["streamedRows"], (dl, py)
for k in ("pyarrowSum", "polarsSum"):
    # Category codes are first-seen order in every tool; sums of f32 values
    # agree to rounding.
    for mine in ("wholeSum", "streamedSum"):
        assert abs(dl[mine] - py[k]) <= 1e-6 * max(1.0, abs(py[k])) + 1.0, (k, mine, dl[mine], py[k])
rows = dl["rows"]
print(f"rows {rows}, 9 columns into a float32 matrix")
print(f"{'reader':<32}{'seconds':>9}{'M rows/s':>10}")
for name, s in [("driftline data::read (whole)", dl["wholeSeconds"]),
                ("driftline data::scan (streamed)", dl["streamedSeconds"]),
                ("pyarrow", py["pyarrowSeconds"]), ("polars", py["polarsSeconds"])]:
    print(f"{name:<32}{s:>9.3f}{rows / s / 1e6:>10.2f}")
print(f"driftline whole / polars throughput: {py['polarsSeconds'] / dl['wholeSeconds']:.2f}x; "
      f"streamed: {py['polarsSeconds'] / dl['streamedSeconds']:.2f}x (goal >= 1x)")
PY
