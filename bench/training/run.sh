#!/usr/bin/env bash
# Training time and test accuracy: driftline (candle, CPU) vs PyTorch CPU and
# scikit-learn, same MLP, split, epochs, batch size, learning rate and threads.
# Usage: bench/training/run.sh            (THREADS="1 2" EPOCHS_SYNTH=10 to change)
set -euo pipefail
cd "$(dirname "$0")/../.."
THREADS="${THREADS:-1 2}"
EPOCHS_SYNTH="${EPOCHS_SYNTH:-10}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

cargo build --quiet --example prepare_data
# driftline's own code optimised as in a release build (see bench/build.sh).
BIN="$WORK/driftline"
bench/build.sh "$BIN"
[ -f pipelines/data/wine-quality/train.csv ] || target/debug/examples/prepare_data
python3 -c "import sklearn" 2>/dev/null || python3 -m pip install --quiet -r bench/training/requirements.txt
HAVE_TORCH=1; python3 -c "import torch" 2>/dev/null || HAVE_TORCH=0

# The 100 000-row synthetic set, generated (never committed).
target/debug/examples/prepare_data synthetic --rows 100000 --seed 1 --out "$WORK/synth-train.csv" >/dev/null
target/debug/examples/prepare_data synthetic --rows 20000 --seed 2 --out "$WORK/synth-test.csv" >/dev/null

# name | task | train | test | target | hidden | epochs | batch | lr
DATASETS=(
  "wine-quality|classification|pipelines/data/wine-quality/train.csv|pipelines/data/wine-quality/test.csv|quality|64,32|60|64|0.003"
  "wine-good|classification|pipelines/data/wine-good/train.csv|pipelines/data/wine-good/test.csv|good|64,32|40|64|0.003"
  "diabetes|regression|pipelines/data/diabetes/train.csv|pipelines/data/diabetes/test.csv|progression|32|100|32|0.003"
  "synthetic-100k|classification|$WORK/synth-train.csv|$WORK/synth-test.csv|label|64,32|$EPOCHS_SYNTH|64|0.003"
)

# val FILE FORMAT KEY...: one number from a JSON file, formatted.
val() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
for k in sys.argv[3:]: d=d[k]
print(format(d, sys.argv[2]))' "$@"; }

printf "%-15s %3s | %12s %12s %7s | %-8s %9s %9s %9s | %14s\n" \
  dataset thr "driftline s" "torch s" ratio metric driftline torch sklearn "eval rows/s"
for spec in "${DATASETS[@]}"; do
  IFS='|' read -r name task train test target hidden epochs batch lr <<<"$spec"
  metric=accuracy; [ "$task" = regression ] && metric=r2
  cat >"$WORK/$name.yaml" <<YAML
task: $task
data: {source: "$train", target: $target, validationFraction: 0}
architecture: {type: mlp, hiddenLayers: [$hidden], activation: relu}
training: {epochs: $epochs, batchSize: $batch, learningRate: $lr, seed: 7}
YAML
  for t in $THREADS; do
    out="$WORK/$name-$t"
    RAYON_NUM_THREADS=$t OMP_NUM_THREADS=$t RUST_LOG=warn $BIN train --config "$WORK/$name.yaml" --out "$out" >"$out.train.json"
    dl_s=$(val "$out.train.json" .3f trainingSeconds)
    RAYON_NUM_THREADS=$t RUST_LOG=warn $BIN evaluate --candidate "$out" --config "$WORK/$name.yaml" --test-set "$test" >"$out.eval.json" 2>/dev/null
    dl_m=$(val "$out.eval.json" .4f candidate metrics "$metric")
    thr=$(val "$out.eval.json" .0f candidate budgets throughputRowsPerSec)
    args=(--train "$train" --test "$test" --target "$target" --task "$task" --hidden "$hidden" --epochs "$epochs" --batch "$batch" --lr "$lr" --threads "$t")
    if [ "$HAVE_TORCH" = 1 ]; then
      OMP_NUM_THREADS=$t python3 bench/training/compare.py --tool torch "${args[@]}" >"$out.torch.json"
      pt_s=$(val "$out.torch.json" .3f trainSeconds)
      pt_m=$(val "$out.torch.json" .4f metrics "$metric")
      ratio=$(python3 -c "print(f'{$dl_s/$pt_s:.2f}')")
    else
      pt_s=n/a; pt_m=n/a; ratio=n/a
    fi
    OMP_NUM_THREADS=$t python3 bench/training/compare.py --tool sklearn "${args[@]}" >"$out.sk.json"
    sk_m=$(val "$out.sk.json" .4f metrics "$metric")
    printf "%-15s %3s | %12s %12s %7s | %-8s %9s %9s %9s | %14s\n" \
      "$name" "$t" "$dl_s" "$pt_s" "$ratio" "$metric" "$dl_m" "$pt_m" "$sk_m" "$thr"
  done
done
echo "ratio = driftline / torch training seconds (≤ 1.0 means driftline is as fast or faster)."
