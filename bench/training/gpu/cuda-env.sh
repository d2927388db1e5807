# Source this to build driftline with `--features cuda` against the pieces setup-cuda13.sh installed.
# Usage: source bench/training/gpu/cuda-env.sh [PREFIX]   (default PREFIX=/work/cuda13)
CUDA_PREFIX=${1:-/work/cuda13}
export CUDA_HOME="$CUDA_PREFIX/site/nvidia/cu13"
# cudarc's build script reads `nvcc --version`; cudaforge (candle-kernels) finds nvcc on PATH.
export PATH="$CUDA_HOME/bin:$PATH"
# No GPU here, so nothing to detect: H100 is compute capability 9.0.
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
# Link-time search path (cudarc also adds $CUDA_HOME/lib/stubs itself).
export LIBRARY_PATH="$CUDA_HOME/lib/stubs:$CUDA_HOME/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-cuda}
