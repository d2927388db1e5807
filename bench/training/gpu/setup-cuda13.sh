#!/usr/bin/env bash
# Installs the CUDA 13.0 build pieces from PyPI into a folder outside git, so that
# `cargo build --features cuda` works on a machine with no GPU and no CUDA toolkit.
# Usage: bench/training/gpu/setup-cuda13.sh [PREFIX]   (default PREFIX=/work/cuda13)
# Then:  source bench/training/gpu/cuda-env.sh [PREFIX]
set -euo pipefail
PREFIX=${1:-/work/cuda13}
mkdir -p "$PREFIX/wheels"

# nvcc in CUDA 13 wheels ships without cicc/libdevice (nvidia-nvvm) and without the crt/ headers
# (nvidia-cuda-crt); cccl provides cuda/std headers that cuda_fp16.h etc. include.
python3 -m pip download --quiet --disable-pip-version-check --no-deps --dest "$PREFIX/wheels" \
  'nvidia-cuda-nvcc==13.0.88' 'nvidia-nvvm==13.0.88' 'nvidia-cuda-crt==13.0.88' \
  'nvidia-cuda-runtime==13.0.96' 'nvidia-cuda-cccl==13.0.85' \
  'nvidia-cublas==13.0.2.14' 'nvidia-curand==10.4.5.25' 'nvidia-cuda-nvrtc==13.0.88'
python3 -m pip install --quiet --disable-pip-version-check --no-deps --no-index --upgrade \
  --target "$PREFIX/site" "$PREFIX"/wheels/*.whl

CUDA_HOME="$PREFIX/site/nvidia/cu13"
STUBS="$CUDA_HOME/lib/stubs"
mkdir -p "$STUBS"

# The wheels carry only versioned sonames; the linker's -lcublas needs the plain name. The
# binary still records the soname (libcublas.so.13), which the GPU machine resolves.
for lib in cublas cublasLt cudart nvrtc; do
  ln -sf "../lib$lib.so.13" "$STUBS/lib$lib.so"
done
ln -sf ../libcurand.so.10 "$STUBS/libcurand.so"

# libcuda.so comes with the NVIDIA driver, not with any wheel: build a link-time stub exporting
# every driver entry point that cudarc declares, with the driver's soname (libcuda.so.1). Each
# returns CUDA_ERROR_NO_DEVICE (100), so the same stub, put on LD_LIBRARY_PATH as libcuda.so.1
# ($PREFIX/nogpu), lets the cuda build run here and take its "no GPU" path.
SYS=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.10/src/driver/sys/mod.rs | head -1)
grep -oE '^pub unsafe fn cu[A-Za-z0-9_]+' "$SYS" | awk '{print "int " $4 "(void) { return 100; }"}' \
  | sort -u > "$STUBS/libcuda-stub.c"
cc -shared -fPIC -O0 -Wl,-soname,libcuda.so.1 -o "$STUBS/libcuda.so" "$STUBS/libcuda-stub.c"
mkdir -p "$PREFIX/nogpu"
ln -sf "$STUBS/libcuda.so" "$PREFIX/nogpu/libcuda.so.1"
echo "CUDA 13.0 build pieces ready under $CUDA_HOME ($(grep -c . "$STUBS/libcuda-stub.c") driver symbols stubbed)"
