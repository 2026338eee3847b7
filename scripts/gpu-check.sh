#!/usr/bin/env bash
# The checks a machine with a GPU runs, in a few minutes, from binaries
# built elsewhere by scripts/gpu-package.sh (carried in target/gpu-check/):
#
#   1. parity: the committed transformers fixtures (Qwen3-VL and Qwen2.5-VL,
#      each bare and with a PEFT adapter) on the GPU, as `vgrpo check-model`
#      runs them (`grpo_step --parity`);
#   2. one GRPO step at real width, and the step comparison against the
#      TRL-style transformers + torch step on the same GPU
#      (`grpo_step --model both`; the torch side needs a Python with torch
#      and transformers: $VGRPO_PYTHON, else python3, else it is skipped).
#
# Usage: bash scripts/gpu-check.sh [DEVICE]   (default cuda:0; `cpu` runs the
# same checks on the CPU, to try the script where there is no GPU)
# CubeCL's CUDA backend needs libdevice (`$CUDA_PATH/nvvm/libdevice`) for
# its exp/tanh/erf kernels; CUDA_PATH is found from nvcc or /usr/local/cuda.
set -euo pipefail
cd "$(dirname "$0")/.."
device="${1:-cuda:0}"
pkg="${VGRPO_GPU_PACKAGE:-target/gpu-check}"
bin="$(mktemp -d)"
trap 'rm -rf "$bin"' EXIT
for exe in grpo_step; do
  if [[ -f "$pkg/$exe.xz" ]]; then
    xz -dc "$pkg/$exe.xz" >"$bin/$exe"
  elif [[ -f "$pkg/$exe" ]]; then
    cp "$pkg/$exe" "$bin/$exe"
  else
    echo "gpu-check: $pkg/$exe(.xz) missing: run scripts/gpu-package.sh first" >&2
    exit 1
  fi
  chmod +x "$bin/$exe"
done
[[ -f "$pkg/commit" ]] && echo "gpu-check: binaries of commit $(cat "$pkg/commit")"
if [[ "$device" == cuda* ]]; then
  nvidia-smi -L || true
  if [[ -z "${CUDA_PATH:-}" ]]; then
    nvcc_path="$(command -v nvcc || true)"
    CUDA_PATH="${nvcc_path:+$(dirname "$(dirname "$nvcc_path")")}"
    CUDA_PATH="${CUDA_PATH:-/usr/local/cuda}"
    export CUDA_PATH
  fi
  ls "$CUDA_PATH"/nvvm/libdevice/libdevice*.bc >/dev/null ||
    echo "gpu-check: no libdevice under $CUDA_PATH/nvvm/libdevice (set CUDA_PATH)" >&2
fi

status=0
check() {
  echo "== $*"
  "$@" || { status=1; echo "gpu-check: FAILED: $*" >&2; }
}
export VGRPO_TEST_DEVICE="$device" VGRPO_FIXTURES="$PWD/tests/fixtures" VGRPO_BENCH_DIR="$PWD/benches"
check "$bin/grpo_step" --parity
torch_device=cpu
[[ "$device" == cuda* || "$device" == tch-cuda* ]] && torch_device="cuda:${device##*:}"
[[ "$torch_device" == "cuda:cuda" ]] && torch_device=cuda:0
check env VGRPO_TORCH_DEVICE="$torch_device" "$bin/grpo_step" --model both --steps 2
exit "$status"
