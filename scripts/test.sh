#!/usr/bin/env bash
# The test command: system packages, formatting, lints, then every test.
# Everything builds with the release profile (one build of the Burn stack).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The TensorBoard read-back test loads the event files with TensorBoard's
# own reader (PyPI `tensorboard`).
python="${VGRPO_PYTHON:-python3}"
"$python" -c "import tensorboard" 2>/dev/null ||
  "$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore tensorboard
cargo fmt --all -- --check
cargo clippy --release --all-targets -- -D warnings
cargo test --release
