#!/usr/bin/env bash
# CNN training on images: driftline (candle, CPU) against PyTorch on the same
# digits (scikit-learn's 8x8 set upscaled to SIZE x SIZE, seeded; nothing
# downloaded), the same layers, batch size, learning rate and epochs, one
# run, at 1 and 2 threads; then a warm retrain from the champion against a
# cold one: epochs and seconds to reach the champion's validation accuracy.
#
#   bash bench/images/run.sh               (SIZE=32 EPOCHS=15 THREADS="1 2" SEEDS="1 2 3")
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE=${SIZE:-32}
EPOCHS=${EPOCHS:-15}
THREADS=${THREADS:-1 2}
SEEDS=${SEEDS:-1 2 3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 -c "import sklearn, torch" 2>/dev/null || python3 -m pip install --quiet -r bench/training/requirements.txt
bench/build.sh "$WORK/driftline"
BIN=$WORK/driftline
python3 tests/fixtures/digits_images.py "$WORK/digits" --train 1400 --test 397 --size "$SIZE" >/dev/null

model() { # name seed warmStart
  cat <<YAML
apiVersion: driftline.dev/v1alpha1
kind: Model
metadata: {name: $1}
spec:
  task: classification
  data:
    source: $WORK/digits/train
    format: images
    target: digit
    validationFraction: 0.1
    images: {height: $SIZE, width: $SIZE, channels: grayscale}
  architecture: {type: cnn, convBlocks: [{channels: 16}, {channels: 32}], hiddenLayers: [64]}
  training: {epochs: $EPOCHS, batchSize: 32, learningRate: 0.005, seed: $2, warmStart: $3}
  gate:
    testSet: $WORK/digits/test/index.csv
    metrics: [{name: accuracy, min: 0.0}]
YAML
}
accuracy() { "$BIN" evaluate --candidate "$1" -c "$2" 2>/dev/null | python3 -c 'import json,sys; e=json.load(sys.stdin); print(e["candidate"]["metrics"]["accuracy"])'; }
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

# Each tool trains once per seed (driftline's `training.seed`, PyTorch's
# `torch.manual_seed`): a CNN's final test accuracy moves by several points
# from one seed to the next (batch norm's running statistics at this
# learning rate), so "equal accuracy" is judged on the mean over seeds.
printf '%-8s %-10s %5s %10s %12s %10s %14s\n' threads tool seed seconds "s/epoch" accuracy "median epoch"
for t in $THREADS; do
  for seed in $SEEDS; do
    model digits "$seed" none > "$WORK/cold.yaml"
    out_dir="$WORK/cold-$t-$seed"
    start=$(date +%s.%N)
    out=$(RAYON_NUM_THREADS=$t RUST_LOG=warn,driftline::ml::train::epochs=info NO_COLOR=1 "$BIN" train -c "$WORK/cold.yaml" --out "$out_dir" 2>"$out_dir.log")
    wall=$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$start" "$(date +%s.%N)")
    acc=$(accuracy "$out_dir" "$WORK/cold.yaml")
    per=$(python3 -c "import sys; print(float(sys.argv[1]) / int(sys.argv[2]))" "$(field "$out" trainingSeconds)" "$(field "$out" epochs)")
    # The median time between two epochs' "epoch finished" events (training
    # and the validation pass), comparable with PyTorch's median epoch.
    median=$(python3 - "$out_dir.log" <<'PY'
import re, sys, datetime
stamps = [datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))
          for line in open(sys.argv[1])
          for m in [re.search(r"(\d{4}-\d\d-\d\dT[\d:.]+Z).*epoch finished", re.sub(r"\x1b\[[0-9;]*m", "", line))] if m]
gaps = sorted((b - a).total_seconds() for a, b in zip(stamps, stamps[1:]))
print(gaps[len(gaps) // 2] if gaps else float("nan"))
PY
)
    printf '%-8s %-10s %5s %10.2f %12.3f %10.4f %14.3f\n' "$t" driftline "$seed" "$wall" "$per" "$acc" "$median" | tee -a "$WORK/rows"
    torch=$(python3 bench/images/torch_cnn.py --size "$SIZE" --epochs "$EPOCHS" --threads "$t" --torch-seed "$seed")
    printf '%-8s %-10s %5s %10.2f %12.3f %10.4f %14.3f\n' "$t" pytorch "$seed" "$(field "$torch" seconds)" "$(field "$torch" epoch_seconds)" "$(field "$torch" accuracy)" "$(field "$torch" epoch_seconds)" | tee -a "$WORK/rows"
  done
done
echo "driftline seconds: the whole 'driftline train' process (PNG decoding, normalisation, epochs, validation, drift reference, artifact); s/epoch: its trainingSeconds / epochs; median epoch: the median time between two epochs' ends (the steps and the validation pass). PyTorch: pixels already decoded in memory; s/epoch and median epoch are its median epoch (the steps only)."
python3 - "$WORK/rows" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
print("per thread count, over the seeds: the median of the median epochs, the mean test accuracy (min-max)")
for t in sorted({r[0] for r in rows}, key=int):
    got = {}
    for tool in ("driftline", "pytorch"):
        mine = [r for r in rows if r[0] == t and r[1] == tool]
        epoch = statistics.median(float(r[6]) for r in mine)
        acc = [float(r[5]) for r in mine]
        got[tool] = (epoch, statistics.mean(acc))
        print(f"{t:<8} {tool:<10} median epoch {epoch:.3f} s  accuracy {statistics.mean(acc):.4f} ({min(acc):.4f}-{max(acc):.4f})")
    (d, da), (p, pa) = got["driftline"], got["pytorch"]
    print(f"{t:<8} ratio      {d / p:.2f}x PyTorch's epoch time; accuracy {100 * (da - pa):+.1f} pt")
PY

# Warm against cold, one thread: the champion is the cold run above; a
# retrain with another seed starts from its weights (warm) or from scratch.
t=$(echo "$THREADS" | cut -d' ' -f1)
s1=$(echo "$SEEDS" | cut -d' ' -f1)
model digits $((s1 + 1)) none > "$WORK/again-cold.yaml"
model digits $((s1 + 1)) champion > "$WORK/again-warm.yaml"
RAYON_NUM_THREADS=$t RUST_LOG=warn "$BIN" train -c "$WORK/again-cold.yaml" --out "$WORK/again-cold" >/dev/null
RAYON_NUM_THREADS=$t RUST_LOG=warn "$BIN" train -c "$WORK/again-warm.yaml" --warm-start "$WORK/cold-$t-$s1" --out "$WORK/again-warm" >/dev/null
python3 - "$WORK/cold-$t-$s1/manifest.json" "$WORK/again-cold/manifest.json" "$WORK/again-warm/manifest.json" <<'PY'
import json, sys
champ, cold, warm = (json.load(open(p)) for p in sys.argv[1:4])
target = champ["curve"][-1]["validationMetric"]
def reach(m):
    """Epochs run until the validation accuracy first reached the target."""
    for n, e in enumerate(m["curve"], start=1):
        if e.get("validationMetric", 0) >= target:
            return n
    return None
def seconds(m, epochs):
    return None if epochs is None else m["trainingSeconds"] * epochs / len(m["curve"])
print(f"warm start against cold: epochs to the champion's validation accuracy {target:.4f}")
for name, m in (("cold", cold), ("warm", warm)):
    n = reach(m)
    s = seconds(m, n)
    reached = n if n is not None else "not within %d" % len(m["curve"])
    took = "" if s is None else "  ~%.2f s" % s
    start = (m.get("start") or {}).get("from", "random")
    print(f"{name:<6} epochs {reached}{took}  (start: {start})")
PY
