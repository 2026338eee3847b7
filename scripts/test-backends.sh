#!/usr/bin/env bash
# The optional backends, built and tested on a CPU machine: one build with
# `--features tch,cuda` (libtorch and CubeCL CUDA beside the default flex),
# lints for the code behind those features, the unit tests (none needs a
# GPU), and on libtorch's CPU device the model parity tests, short GRPO and
# SFT runs and the byte-exact resume tests. Called by scripts/test.sh;
# installs what it needs with scripts/setup-backends.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# An assignment, so that a failing setup stops the script here.
env_file="$(bash scripts/setup-backends.sh tch cuda)"
# shellcheck disable=SC1090
. "$env_file"
features=(--release --features tch,cuda)
# Burn's own default device would be CUDA with that backend built in; the
# vgrpo binary pins it to the host itself (device::pin_burn_default), the
# test harness's threads cannot, so the environment does.
export BURN_DEVICE=flex

cargo clippy "${features[@]}" --lib --bins -- -D warnings
cargo test "${features[@]}" --lib --bins
# The same tests the flex suite runs, moved to libtorch on the CPU.
VGRPO_TEST_DEVICE=tch-cpu cargo test "${features[@]}" \
  --test golden_logits --test model_logprob --test peft_adapter \
  --test grpo_train --test sft_run --test resume_exact
