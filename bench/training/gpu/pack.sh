#!/usr/bin/env bash
# Builds driftline with `--features cuda` (and the CUDA probe) here, with no GPU, and fills the
# git-ignored `.gpu/` folder that travels to the GPU machine for `run.sh`.
# Needs: bench/training/gpu/setup-cuda13.sh run once (CUDA 13.0 pieces in $CUDA_PREFIX).
# Usage: bench/training/gpu/pack.sh        (CUDA_PREFIX=/work/cuda13 CARGO_TARGET_DIR=/work/target-cuda)
set -euo pipefail
cd "$(dirname "$0")/../../.."
ROOT=$PWD
# shellcheck source=cuda-env.sh
source bench/training/gpu/cuda-env.sh "${CUDA_PREFIX:-/work/cuda13}"
# Optional: reuse the kernels of an earlier candle-kernels build (see nvcc-reuse.sh).
if [ -n "${NVCC_REUSE_FROM:-}" ]; then
  mkdir -p "${CUDA_PREFIX:-/work/cuda13}/reuse-bin"
  ln -sf "$ROOT/bench/training/gpu/nvcc-reuse.sh" "${CUDA_PREFIX:-/work/cuda13}/reuse-bin/nvcc"
  export NVCC_REAL="$CUDA_HOME/bin/nvcc" PATH="${CUDA_PREFIX:-/work/cuda13}/reuse-bin:$PATH"
fi
PROFILE=${PROFILE:-dev}
PROFILE_DIR=$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
CARRY_LIMIT=$((60 * 1024 * 1024))

nice -n 10 cargo build --profile "$PROFILE" --features cuda --bin driftline --example prepare_data
# SKIP_PROBE_BUILD=1 packs the probe binary already in the target dir.
[ -n "${SKIP_PROBE_BUILD:-}" ] || (cd bench/training/gpu/probe && nice -n 10 cargo build --profile "$PROFILE")

GPU=$ROOT/.gpu
rm -rf "$GPU.tmp" && mkdir -p "$GPU.tmp/data"
strip -o "$GPU.tmp/driftline" "$CARGO_TARGET_DIR/$PROFILE_DIR/driftline"
strip -o "$GPU.tmp/cuda-probe" "$CARGO_TARGET_DIR/$PROFILE_DIR/cuda-probe"

# The same data as bench/training/run.sh: prepared wine quality and the seed-1 synthetic set.
DATA=$(mktemp -d)
trap 'rm -rf "$DATA"' EXIT
LD_LIBRARY_PATH="${CUDA_PREFIX:-/work/cuda13}/nogpu:$CUDA_HOME/lib" "$CARGO_TARGET_DIR/$PROFILE_DIR/examples/prepare_data" --dir "$DATA" >/dev/null
cp "$DATA/wine-quality/train.csv" "$GPU.tmp/data/wine-quality-train.csv"
LD_LIBRARY_PATH="${CUDA_PREFIX:-/work/cuda13}/nogpu:$CUDA_HOME/lib" "$CARGO_TARGET_DIR/$PROFILE_DIR/examples/prepare_data" synthetic --rows 100000 --seed 1 \
  --out "$GPU.tmp/data/synth-100k-train.csv" >/dev/null

# Compress whatever is large (run.sh unpacks .xz with python3's lzma, present everywhere).
for f in "$GPU.tmp/driftline" "$GPU.tmp/cuda-probe" "$GPU.tmp/data/synth-100k-train.csv"; do
  xz -T0 -4 "$f"
done

{
  echo "commit: $(git rev-parse HEAD)$(git diff --quiet HEAD || echo ' (with uncommitted changes)')"
  echo "built: $(date -u +%FT%TZ) profile=$PROFILE features=cuda CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP"
  echo "nvcc: $(nvcc --version | grep release)"
  echo "rustc: $(rustc --version)"
  echo "glibc symbols needed: $(objdump -T "$CARGO_TARGET_DIR/$PROFILE_DIR/driftline" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)"
  echo "libraries: $(readelf -d "$CARGO_TARGET_DIR/$PROFILE_DIR/driftline" | grep NEEDED | grep -o '\[.*\]' | tr -d '[]' | tr '\n' ' ')"
  (cd "$GPU.tmp" && find . -type f ! -name BUILD-INFO -exec sha256sum {} +)
} >"$GPU.tmp/BUILD-INFO"

total=$(du -sb "$GPU.tmp" | cut -f1)
if [ "$total" -gt "$CARRY_LIMIT" ]; then
  echo "error: .gpu is $((total / 1048576)) MiB, over the 60 MiB carry budget" >&2
  exit 1
fi
rm -rf "$GPU" && mv "$GPU.tmp" "$GPU"
cat "$GPU/BUILD-INFO"
du -ah "$GPU"
