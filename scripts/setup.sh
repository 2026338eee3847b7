#!/usr/bin/env bash
# Installs the system packages vgrpo builds and runs against (FFmpeg 5.1 dev
# libraries, the ffmpeg CLI, pkg-config and libclang for the ffmpeg-sys
# bindings). Idempotent: when everything is present it only checks, in well
# under a second. Needs root (or sudo) on Debian/Ubuntu.
set -euo pipefail

packages=(pkg-config libclang-dev libavcodec-dev libavformat-dev libavutil-dev libswscale-dev ffmpeg)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust 1.95+ (rustup)" >&2; exit 1; }
