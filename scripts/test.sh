#!/usr/bin/env bash
# The test command: system packages, formatting, lints, then every test on
# the default (flex) build, then the optional backends (scripts/
# test-backends.sh: libtorch and CubeCL CUDA built, the parity, training and
# resume tests on libtorch's CPU device). VGRPO_SKIP_BACKENDS=1 skips the
# second part (it downloads torch, about 3 GB, and builds for ~20 minutes).
# Everything builds with the release profile.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The TensorBoard read-back test loads the event files with TensorBoard's
# own reader (PyPI `tensorboard`).
python="${VGRPO_PYTHON:-python3}"
"$python" -c "import tensorboard" 2>/dev/null ||
  "$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore tensorboard
# A full disk shows up as a linker's bus error; say what was free.
free_disk() { echo "test: $(df -h --output=avail . | tail -1 | tr -d ' ') free on the disk of $PWD" >&2; }
free_disk
cargo fmt --all -- --check
cargo clippy --release --all-targets -- -D warnings
cargo test --release
if [[ "${VGRPO_SKIP_BACKENDS:-0}" != 1 ]]; then
  free_disk
  bash scripts/test-backends.sh
fi
