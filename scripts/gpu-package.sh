#!/usr/bin/env bash
# Builds what scripts/gpu-check.sh runs on a GPU machine that has no Rust
# toolchain: the `vgrpo` binary and the `grpo_step` benchmark with the CubeCL
# CUDA backend (`--features cuda`; no libtorch, whose 2.9.0 build a GPU
# machine with another torch does not have), stripped and xz-compressed into
# target/gpu-check/ (well under 64 MiB together). Run on a CPU machine:
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
cargo build --release --features cuda --bin vgrpo --bench grpo_step
out=target/gpu-check
rm -rf "$out" && mkdir -p "$out"
cp "$CARGO_TARGET_DIR/release/vgrpo" "$out/vgrpo"
bench=$(ls -t "$CARGO_TARGET_DIR"/release/deps/grpo_step-* | grep -v '\.d$' | head -1)
cp "$bench" "$out/grpo_step"
for exe in "$out/vgrpo" "$out/grpo_step"; do
  strip "$exe"
  xz -9 -T0 "$exe"
done
git rev-parse HEAD >"$out/commit"
du -ch "$out"/* | tail -1
