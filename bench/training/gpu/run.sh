#!/usr/bin/env bash
# GPU check: the `cuda` build of driftline trains the same Model with `device: cuda` and with
# `device: cpu`, on wine quality and on the 100 000-row synthetic set; prints wall time and ratio.
#
# Runs on the lent GPU machine from the repository root, with no Rust toolchain and no network:
# the binaries and data travel in the git-ignored `.gpu/` folder that `pack.sh` fills here.
#   bash bench/training/gpu/run.sh            # logs and results go to $OUT (or a temp dir)
# Fails soft: every step that breaks is reported and the rest still runs. Stops starting new
# runs once BUDGET_S seconds (default 420) have passed, so it ends well within 8 minutes.
set -uo pipefail
cd "$(dirname "$0")/../../.." || exit 2
START=$(date +%s)
BUDGET_S=${BUDGET_S:-420}
GPU_DIR=${GPU_DIR:-.gpu}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT/logs"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
FAILURES=()

say() { echo "[gpu-check +$(($(date +%s) - START))s] $*"; }
fail() { say "FAILED: $*"; FAILURES+=("$*"); }
left() { echo $((BUDGET_S - ($(date +%s) - START))); }

# --- 1. Unpack what travelled (xz-compressed where it was large). -------------------------------
unpack() { # SRC_BASE DEST: SRC_BASE, SRC_BASE.xz or SRC_BASE.zst -> DEST
  if [ -f "$1" ]; then cp "$1" "$2"
  elif [ -f "$1.xz" ]; then
    python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],"wb"))' "$1.xz" "$2"
  elif [ -f "$1.zst" ]; then zstd -q -d -f "$1.zst" -o "$2"
  else return 1; fi
}
BIN="$WORK/driftline"
PROBE="$WORK/cuda-probe"
unpack "$GPU_DIR/driftline" "$BIN" && chmod +x "$BIN" || fail "no $GPU_DIR/driftline[.xz|.zst]: was .gpu carried?"
unpack "$GPU_DIR/cuda-probe" "$PROBE" && chmod +x "$PROBE" || fail "no $GPU_DIR/cuda-probe[.xz|.zst]"
mkdir -p "$WORK/data"
for f in wine-quality-train.csv synth-100k-train.csv; do
  unpack "$GPU_DIR/data/$f" "$WORK/data/$f" || fail "no $GPU_DIR/data/$f[.xz]"
done
[ -f "$GPU_DIR/BUILD-INFO" ] && cp "$GPU_DIR/BUILD-INFO" "$OUT/build-info.txt"

# --- 2. CUDA libraries of this machine (PyTorch's wheels), found at run time. --------------------
# The binary needs libcuda.so.1 (driver) plus libcudart/libcublas/libcublasLt.so.13, libnvrtc.so.13
# and libcurand.so.10; only the driver's is on the default search path.
LIBDIRS=$(python3 - <<'PY' 2>>"$OUT/logs/libdirs.err"
import glob, os, sys
found = []
try:
    import nvidia  # namespace package of NVIDIA's wheels; may span several site-packages
    for p in list(nvidia.__path__):
        found += sorted(glob.glob(os.path.join(p, "*", "lib")))
except Exception as e:
    print(f"python3 cannot import nvidia: {e}", file=sys.stderr)
for pat in ("/usr/local/lib/python3*/dist-packages/nvidia/*/lib",
            "/usr/local/lib/python3*/site-packages/nvidia/*/lib",
            "/usr/lib/python3*/dist-packages/nvidia/*/lib",
            "/opt/torch/.venv/lib/python3*/site-packages/nvidia/*/lib",
            "/opt/*/.venv/lib/python3*/site-packages/nvidia/*/lib",
            "/root/.local/lib/python3*/site-packages/nvidia/*/lib",
            "/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"):
    found += sorted(glob.glob(pat))
# CUDA 13 libraries first (cu13/), so libcurand.so.10 resolves to the CUDA 13 one.
dirs = []
for d in sorted(found, key=lambda d: "/cu13/" not in d):
    if os.path.isdir(d) and d not in dirs:
        dirs.append(d)
print(":".join(dirs))
PY
)
for lib in libcublas.so.13 libcublasLt.so.13 libcudart.so.13 libcurand.so.10; do
  if [ -z "$LIBDIRS" ] || ! ls ${LIBDIRS//:/ } 2>/dev/null | grep -qx "$lib"; then
    say "no $lib in the usual places; searching the disk (30 s at most)"
    extra=$(timeout 30 find / -xdev -name "$lib" -not -path '/proc/*' 2>/dev/null | head -1)
    [ -n "$extra" ] && LIBDIRS="${LIBDIRS:+$LIBDIRS:}$(dirname "$extra")"
  fi
done
export LD_LIBRARY_PATH="$LIBDIRS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
say "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"

# --- 3. The machine. -----------------------------------------------------------------------------
{
  echo "## nvidia-smi -L"; nvidia-smi -L
  echo "## nvidia-smi"; nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv
  echo "## cpu"; nproc; grep -m1 'model name' /proc/cpuinfo
  echo "## os / glibc"; grep PRETTY_NAME /etc/os-release; ldd --version | head -1
  echo "## ldd driftline"; ldd "$BIN"
} >"$OUT/machine.txt" 2>&1
nvidia-smi -L || fail "nvidia-smi -L"
say "cpu cores: $(nproc)"
if ldd "$BIN" 2>&1 | grep -E 'not found|version .* not found'; then
  fail "driftline has unresolved libraries (see machine.txt)"
fi

# --- 4. Probe: one matmul on cuda:0 checked against the CPU. ---------------------------------------
timeout 60 "$PROBE" >"$OUT/logs/probe.log" 2>&1; rc=$?
cat "$OUT/logs/probe.log"
[ $rc -eq 0 ] || fail "cuda-probe exited $rc (see logs/probe.log)"

# --- 5. Training runs: the same Model YAML, only training.device differs. ---------------------------
# name | data file | target | hidden layers | epochs | batch size | learning rate
# The first two match bench/training/run.sh (CPU vs PyTorch); the wide one is where a GPU pays off.
RUNS=(
  "wine-quality|wine-quality-train.csv|quality|64,32|60|64|0.003"
  "synthetic-100k|synth-100k-train.csv|label|64,32|10|64|0.003"
  "synthetic-100k-wide|synth-100k-train.csv|label|512,512|10|1024|0.001"
)
write_model() { # NAME DATA TARGET HIDDEN EPOCHS BATCH LR DEVICE -> path of the Model YAML
  local f="$WORK/$1-$8.yaml"
  cat >"$f" <<YAML
apiVersion: driftline.dev/v1alpha1
kind: Model
metadata: {name: $1, namespace: bench}
spec:
  task: classification
  data: {source: "$WORK/data/$2", target: $3, validationFraction: 0}
  architecture: {type: mlp, hiddenLayers: [$4], activation: relu}
  training: {epochs: $5, batchSize: $6, learningRate: $7, seed: 7, device: $8}
YAML
  echo "$f"
}
json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2" 2>/dev/null; }

declare -A WALL TRAIN
train_once() { # NAME DEVICE CONFIG LIMIT_S -> sets WALL[NAME/DEVICE], TRAIN[NAME/DEVICE]
  local key="$1/$2" log="$OUT/logs/$1-$2" t0 t1 rc
  t0=$(date +%s.%N)
  RUST_LOG=info timeout "$4" "$BIN" train --config "$3" --out "$WORK/artifacts/$1-$2" >"$log.json" 2>"$log.log"
  rc=$?
  t1=$(date +%s.%N)
  if [ $rc -eq 0 ]; then
    WALL[$key]=$(python3 -c "print(f'{$t1-$t0:.2f}')")
    TRAIN[$key]=$(json_field "$log.json" trainingSeconds | python3 -c 'import sys; print(f"{float(sys.stdin.read()):.2f}")' 2>/dev/null || echo "?")
    say "$key: wall ${WALL[$key]} s, training ${TRAIN[$key]} s"
  else
    WALL[$key]="fail($rc)"; TRAIN[$key]="-"
    fail "$key: driftline train exited $rc; last lines of logs/$1-$2.log:"
    tail -5 "$log.log"
  fi
}

# Untimed warm-up: the first CUDA run JIT-compiles candle's PTX for this GPU (cached afterwards).
warm=$(write_model warmup wine-quality-train.csv quality 64,32 1 64 0.003 cuda)
timeout 120 "$BIN" train --config "$warm" --out "$WORK/artifacts/warmup" >"$OUT/logs/warmup-cuda.json" 2>"$OUT/logs/warmup-cuda.log" \
  || fail "warm-up cuda run (see logs/warmup-cuda.log)"

# ONLY=name,name limits the runs (a quick check of this script on a machine without a GPU).
if [ -n "${ONLY:-}" ]; then
  kept=()
  for spec in "${RUNS[@]}"; do [[ ",$ONLY," == *",${spec%%|*},"* ]] && kept+=("$spec"); done
  RUNS=("${kept[@]}")
fi
for spec in "${RUNS[@]}"; do
  IFS='|' read -r name data target hidden epochs batch lr <<<"$spec"
  for dev in cuda cpu; do
    remaining=$(left)
    if [ "$remaining" -lt 20 ]; then
      WALL[$name/$dev]="skipped"; TRAIN[$name/$dev]="-"; say "$name/$dev skipped: time budget spent"; continue
    fi
    limit=$((remaining < 180 ? remaining : 180))
    train_once "$name" "$dev" "$(write_model "$name" "$data" "$target" "$hidden" "$epochs" "$batch" "$lr" "$dev")" "$limit"
  done
done

# --- 5b. The CNN on images (#22): driftline cuda vs cpu, PyTorch cuda vs cpu, same digits. ------------
# The digits are generated here from scikit-learn's bundled set (no download), as bench/images does;
# CNN_SIZE and CNN_EPOCHS match bench/images/run.sh's defaults.
CNN_SIZE=${CNN_SIZE:-32}
CNN_EPOCHS=${CNN_EPOCHS:-15}
declare -A CNN
cnn_runs() {
  python3 tests/fixtures/digits_images.py "$WORK/digits" --train 1400 --test 397 --size "$CNN_SIZE" \
    >"$OUT/logs/digits.log" 2>&1 || { fail "digits_images.py (see logs/digits.log)"; return; }
  for dev in cuda cpu; do
    [ "$(left)" -lt 30 ] && { CNN[driftline/$dev]="skipped"; continue; }
    cat >"$WORK/cnn-$dev.yaml" <<YAML
apiVersion: driftline.dev/v1alpha1
kind: Model
metadata: {name: digits, namespace: bench}
spec:
  task: classification
  data:
    source: $WORK/digits/train
    format: images
    target: digit
    validationFraction: 0.1
    images: {height: $CNN_SIZE, width: $CNN_SIZE, channels: grayscale}
  architecture: {type: cnn, convBlocks: [{channels: 16}, {channels: 32}], hiddenLayers: [64]}
  training: {epochs: $CNN_EPOCHS, batchSize: 32, learningRate: 0.005, seed: 1, device: $dev}
  gate:
    testSet: $WORK/digits/test/index.csv
    metrics: [{name: accuracy, min: 0.0}]
YAML
    local log="$OUT/logs/cnn-$dev" t0 t1
    t0=$(date +%s.%N)
    if RUST_LOG=info timeout 240 "$BIN" train --config "$WORK/cnn-$dev.yaml" --out "$WORK/artifacts/cnn-$dev" >"$log.json" 2>"$log.log"; then
      t1=$(date +%s.%N)
      local per acc
      per=$(python3 - "$log.json" <<'PY' 2>/dev/null || echo "?"
import json, sys
s = json.load(open(sys.argv[1]))
print(f"{s['trainingSeconds'] / s['epochs']:.3f}")
PY
)
      acc=$("$BIN" evaluate --candidate "$WORK/artifacts/cnn-$dev" -c "$WORK/cnn-$dev.yaml" 2>"$OUT/logs/cnn-$dev-eval.log" \
        | python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["candidate"]["metrics"]["accuracy"])' 2>/dev/null || echo "?")
      CNN[driftline/$dev]="$(python3 -c "print(f'{$t1-$t0:.2f}')") s wall, $per s/epoch, test accuracy $acc"
    else
      CNN[driftline/$dev]="fail"; fail "cnn $dev: driftline train failed (see logs/cnn-$dev.log)"; tail -5 "$log.log"
    fi
    say "driftline cnn $dev: ${CNN[driftline/$dev]}"
  done
  for dev in cuda cpu; do
    [ "$(left)" -lt 20 ] && { CNN[pytorch/$dev]="skipped"; continue; }
    local threads=$([ "$dev" = cpu ] && nproc || echo 1)
    if out=$(timeout 180 python3 bench/images/torch_cnn.py --size "$CNN_SIZE" --epochs "$CNN_EPOCHS" \
        --threads "$threads" --device "$dev" 2>"$OUT/logs/torch-cnn-$dev.log"); then
      echo "$out" >"$OUT/logs/torch-cnn-$dev.json"
      CNN[pytorch/$dev]=$(python3 - "$out" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"{r['seconds']:.2f} s, {r['epoch_seconds']:.3f} s/epoch, test accuracy {r['accuracy']:.4f}, torch {r['torch']}")
PY
)
    else
      CNN[pytorch/$dev]="fail"; fail "torch_cnn.py $dev (see logs/torch-cnn-$dev.log)"
    fi
    say "pytorch cnn $dev: ${CNN[pytorch/$dev]}"
  done
}
[ "${CNN_RUNS:-1}" = 1 ] && cnn_runs

# --- 6. Table. ---------------------------------------------------------------------------------------
ratio() { python3 -c "print(f'{float(\"$1\")/float(\"$2\"):.2f}')" 2>/dev/null || echo "n/a"; }
{
  echo "GPU: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1); CPU: $(nproc) cores"
  printf "%-20s %-8s %6s %6s | %10s %10s %7s | %10s %10s %7s\n" \
    dataset hidden epochs batch "cuda wall" "cpu wall" ratio "cuda train" "cpu train" ratio
  for spec in "${RUNS[@]}"; do
    IFS='|' read -r name data target hidden epochs batch lr <<<"$spec"
    printf "%-20s %-8s %6s %6s | %10s %10s %7s | %10s %10s %7s\n" "$name" "$hidden" "$epochs" "$batch" \
      "${WALL[$name/cuda]}" "${WALL[$name/cpu]}" "$(ratio "${WALL[$name/cuda]}" "${WALL[$name/cpu]}")" \
      "${TRAIN[$name/cuda]}" "${TRAIN[$name/cpu]}" "$(ratio "${TRAIN[$name/cuda]}" "${TRAIN[$name/cpu]}")"
  done
  echo "seconds; ratio = cuda / cpu (below 1.0: the GPU is faster). wall = whole \`driftline train\` process;"
  echo "train = trainingSeconds from its summary (the epoch loop only)."
  echo
  echo "CNN on ${CNN_SIZE}x${CNN_SIZE} digits, ${CNN_EPOCHS} epochs, batch 32 (cpu: $(nproc) threads):"
  for k in driftline/cuda driftline/cpu pytorch/cuda pytorch/cpu; do
    printf "  %-16s %s\n" "$k" "${CNN[$k]:-not run}"
  done
} | tee "$OUT/results.txt"

if [ ${#FAILURES[@]} -gt 0 ]; then
  echo "failures (${#FAILURES[@]}):"; printf '  - %s\n' "${FAILURES[@]}"
  printf '%s\n' "${FAILURES[@]}" >"$OUT/failures.txt"
fi
say "done in $(($(date +%s) - START)) s; logs in $OUT"
exit 0
