#!/usr/bin/env bash
# The test command: system packages, formatting, lints, then every test.
# Everything builds with the release profile (one build of the Burn stack).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --release --all-targets -- -D warnings
cargo test --release
