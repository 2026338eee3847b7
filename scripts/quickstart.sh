#!/usr/bin/env bash
# The main job on the embedded default: synthetic videos + the tiny
# Qwen3-VL on CPU, the whole Q-Save recipe (SFT cold start → GRPO → SFT
# cool-off) with an evaluation after each stage, then the stage table.
# Installs the system packages it needs first. Rerunning skips finished
# stages (and resumes an interrupted one).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo run --release --quiet -- pipeline --config configs/quickstart.toml "$@"
