#!/usr/bin/env bash
# Builds what scripts/gpu-check.sh runs on a GPU machine that has no Rust
# toolchain: the `grpo_step` benchmark (which also runs the parity fixtures,
# `--parity`) with the CubeCL CUDA backend (`--features cuda`; no libtorch,
# whose 2.9.0 build a GPU machine with another torch does not have),
# stripped and xz-compressed into target/gpu-check/ (about 30 MB; one binary,
# since a carried package may hold 64 MiB). Run on a CPU machine:
#
#   bash scripts/gpu-package.sh          # then carry target/gpu-check along
#
# The build has its own target directory (target/gpu-build), since its
# features differ from the flex and tch,cuda builds.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup-backends.sh cuda >/dev/null
export CARGO_TARGET_DIR="$PWD/target/gpu-build"
cargo build --release --features cuda --bench grpo_step
out=target/gpu-check
rm -rf "$out" && mkdir -p "$out"
bench=$(ls -t "$CARGO_TARGET_DIR"/release/deps/grpo_step-* | grep -v '\.d$' | head -1)
cp "$bench" "$out/grpo_step"
strip "$out/grpo_step"
xz -9 -T0 "$out/grpo_step"
git rev-parse HEAD >"$out/commit"
du -ch "$out"/* | tail -1
