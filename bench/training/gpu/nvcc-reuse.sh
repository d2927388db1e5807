#!/usr/bin/env bash
# Optional nvcc front for a second cuda build on this 2-core machine: when cargo re-runs
# candle-kernels' build script in a new OUT_DIR (another crate graph, e.g. the probe, then
# driftline), reuse the PTX / objects an earlier run produced from the same sources and flags
# (NVCC_REUSE_FROM = that run's OUT_DIR) instead of recompiling for 40 minutes.
# Everything else (and any kernel not found there) goes to the real nvcc.
# Use: put a folder with this script named `nvcc` first on PATH and set NVCC_REUSE_FROM and
# NVCC_REAL; pack.sh does this when NVCC_REUSE_FROM is set.
set -euo pipefail
real=${NVCC_REAL:?path of the real nvcc}
from=${NVCC_REUSE_FROM:-}
args=("$@")
src="" out="" outdir="" ptx=0
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --ptx) ptx=1 ;;
    -o) out=${args[$((i + 1))]} ;;
    --output-directory) outdir=${args[$((i + 1))]} ;;
    *.cu) src=${args[$i]} ;;
  esac
done
if [ -n "$from" ] && [ -n "$src" ]; then
  stem=$(basename "$src" .cu)
  if [ $ptx = 1 ] && [ -n "$outdir" ] && [ -f "$from/$stem.ptx" ]; then
    cp "$from/$stem.ptx" "$outdir/$stem.ptx" && echo "nvcc-reuse: $stem.ptx" >&2 && exit 0
  fi
  if [ $ptx = 0 ] && [ -n "$out" ]; then
    prev=$(ls "$from/$stem"-*.o 2>/dev/null | head -1 || true)
    if [ -n "$prev" ]; then cp "$prev" "$out" && echo "nvcc-reuse: $stem.o" >&2 && exit 0; fi
  fi
fi
exec "$real" "$@"
