#!/usr/bin/env bash
# Streaming training on a synthetic 20-million-row Parquet set (generated,
# seeded, never committed): `driftline train` with training.shuffleBuffer
# against PyTorch with a DataLoader over pyarrow batches (same MLP, batch
# size, epochs, learning rate, shuffle buffer, threads, holdout day), and
# the same Model trained by driftline in memory on a sample (the day before
# the holdout day plus the holdout day). Peak RSS and wall time from
# /usr/bin/time -v; rows/s = training rows x epochs / wall seconds.
# Usage: bench/streaming/run.sh   (ROWS=2000000 DAYS=4 for a quick run;
# WORK=dir keeps the data between runs; BIN=path measures that binary)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROWS="${ROWS:-20000000}"
DAYS="${DAYS:-20}"
EPOCHS="${EPOCHS:-1}"
BATCH="${BATCH:-512}"
BUFFER="${BUFFER:-65536}"
HIDDEN="${HIDDEN:-32}"
LR="${LR:-0.003}"
THREADS="${THREADS:-1}"
BOUND="${BOUND:-1Gi}"
WORK="${WORK:-$(mktemp -d)}"
mkdir -p "$WORK"
BIN="${BIN:-$WORK/driftline}"
[ -x "$BIN" ] || bench/build.sh "$BIN"
python3 -c "import pyarrow, torch, numpy" 2>/dev/null || python3 -m pip install --quiet -r bench/streaming/requirements.txt
[ -f "$WORK/data/.complete-$ROWS-$DAYS" ] || {
  rm -rf "$WORK/data"
  python3 bench/streaming/generate.py "$WORK/data" "$ROWS" "$DAYS"
  touch "$WORK/data/.complete-$ROWS-$DAYS"
}
last=$(ls "$WORK/data" | grep '^date=' | sort | tail -1); last=${last#date=}
before=$(ls "$WORK/data" | grep '^date=' | sort | tail -2 | head -1)
AS_OF="$(date -u -d "$last + 1 day" +%Y-%m-%dT00:00:00Z)"
rm -rf "$WORK/sample"; mkdir -p "$WORK/sample"
cp -r "$WORK/data/$before" "$WORK/data/date=$last" "$WORK/sample/"

model() { # model SOURCE EXTRA-TRAINING
  cat <<YAML
task: classification
data:
  source: '$1/'
  partitioning: hive
  target: label
  features: [x0, x1, x2, x3, x4, x5, x6, x7, color]
  window: {column: event_time, last: 60d, holdout: 1d}
architecture: {type: mlp, hiddenLayers: [$HIDDEN], activation: relu}
training: {epochs: $EPOCHS, batchSize: $BATCH, learningRate: $LR, seed: 7$2}
YAML
}
model "$WORK/data" ", shuffleBuffer: $BUFFER, resources: {memory: $BOUND}" >"$WORK/stream.yaml"
model "$WORK/sample" "" >"$WORK/memory.yaml"

# measure NAME COMMAND...: runs it under /usr/bin/time -v; prints "seconds kib".
measure() {
  local name=$1; shift
  /usr/bin/time -v "$@" >"$WORK/$name.out" 2>"$WORK/$name.time"
  python3 - "$WORK/$name.time" <<'PY'
import sys
t = open(sys.argv[1]).read().splitlines()
wall = next(l for l in t if "Elapsed (wall clock)" in l).split()[-1]
secs = sum(float(p) * 60 ** i for i, p in enumerate(reversed(wall.split(":"))))
kib = next(l for l in t if "Maximum resident set size" in l).split()[-1]
print(f"{secs:.1f} {kib}")
PY
}
acc() { python3 -c 'import json,sys; print(format(json.load(open(sys.argv[1]))["metrics"]["accuracy"], ".4f"))' "$1/manifest.json"; }
rows() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["dataset"]["trainingRows"])' "$1/manifest.json"; }

export RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS RUST_LOG=warn
# Every run reads the files from the page cache: the first measured run would
# otherwise pay for reading them from disk (2.6x instead of 3.2x in one run).
cat "$WORK"/data/date=*/*.parquet >/dev/null
rm -rf "$WORK/out-stream" "$WORK/out-memory"
read -r ds dk < <(measure driftline-stream "$BIN" train --config "$WORK/stream.yaml" --out "$WORK/out-stream" --as-of "$AS_OF" --memory-bound "$BOUND")
read -r ts tk < <(measure torch-stream python3 bench/streaming/torch_stream.py "$WORK/data" "$BATCH" "$EPOCHS" "$LR" "$BUFFER" "$HIDDEN" "$THREADS")
read -r ms mk < <(measure driftline-memory "$BIN" train --config "$WORK/memory.yaml" --out "$WORK/out-memory" --as-of "$AS_OF")
drows=$(rows "$WORK/out-stream"); mrows=$(rows "$WORK/out-memory")
trows=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rows"] // int(sys.argv[2]))' "$WORK/torch-stream.out" "$EPOCHS")
tacc=$(python3 -c 'import json,sys; print(format(json.load(open(sys.argv[1]))["accuracy"], ".4f"))' "$WORK/torch-stream.out")
printf "%-28s %12s %8s %10s %9s %9s\n" run "train rows" "wall s" "rows/s" "peak MiB" accuracy
line() { printf "%-28s %12s %8s %10.0f %9d %9s\n" "$1" "$2" "$3" "$(echo "$2 * $EPOCHS / $3" | bc -l)" "$(($4 / 1024))" "$5"; }
line "driftline streamed" "$drows" "$ds" "$dk" "$(acc "$WORK/out-stream")"
line "pytorch DataLoader/pyarrow" "$trows" "$ts" "$tk" "$tacc"
line "driftline in memory, sample" "$mrows" "$ms" "$mk" "$(acc "$WORK/out-memory")"
echo "rows=$ROWS days=$DAYS epochs=$EPOCHS batch=$BATCH buffer=$BUFFER hidden=$HIDDEN lr=$LR threads=$THREADS bound=$BOUND"
echo "accuracy: validation accuracy on the holdout day (driftline streamed: its seeded 50,000-row validation sample; pytorch: every row of the day; in memory: every row of the day)"
