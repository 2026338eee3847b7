#!/usr/bin/env bash
# Installs what the optional backends build and run against, from package
# registries only (no download at build time):
#
#   tch   libtorch from the PyPI `torch==2.9.0` wheel (what burn-tch 0.22.1 →
#         tch 0.22 expects), in a venv. The wheel is the CUDA 12.8 build, so
#         the same vgrpo binary runs `tch-cpu` anywhere and `tch-cuda:N` where
#         a GPU and driver are present.
#   cuda  the static LLVM 23.1 (with NVPTX) that cubecl-llvm links, from the
#         PyPI wheels `mlc-llvm-static` and `mlc-llvm-static-extra-targets`,
#         unpacked where cubecl's bundler looks for its own LLVM download
#         (`$XDG_DATA_HOME/tracel/tracel-llvm-23.1.0-4`, with the marker that
#         says it is installed), so the bundler never reaches for the network.
#
# Usage: bash scripts/setup-backends.sh [tch] [cuda]   (default: both)
# It writes the environment a build needs to `target/backends.env`
# (LIBTORCH, LIBTORCH_CXX11_ABI, LD_LIBRARY_PATH) and prints its path:
#
#   . "$(bash scripts/setup-backends.sh)" && cargo build --release --features tch,cuda
#
# Idempotent: what is installed is only checked. Locations:
# $VGRPO_TORCH_VENV (default ~/.cache/vgrpo/torch-2.9.0), $XDG_DATA_HOME
# (default ~/.local/share).
set -euo pipefail
cd "$(dirname "$0")/.."

want=("$@")
((${#want[@]})) || want=(tch cuda)
python="${VGRPO_PYTHON:-python3}"
pip_quiet=(--quiet --disable-pip-version-check)
# `--root-user-action` is an `install` option; `pip download` rejects it.
pip_install=(install "${pip_quiet[@]}" --root-user-action=ignore)
env_file="$PWD/target/backends.env"
mkdir -p target
: >"$env_file"

setup_tch() {
  local venv="${VGRPO_TORCH_VENV:-$HOME/.cache/vgrpo/torch-2.9.0}"
  if ! "$venv/bin/python" -W ignore -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.9.0')" 2>/dev/null; then
    echo "setup-backends: installing torch==2.9.0 into $venv (a 3 GB download, 6.7 GB installed with its CUDA libraries)" >&2
    # Our own cache failed the check (a half-installed venv, a dangling link
    # left by hand, over which `venv` stops with "File exists"): start it
    # clean. A venv the user named is only added to.
    [[ -n "${VGRPO_TORCH_VENV:-}" ]] || rm -rf "$venv"
    "$python" -m venv "$venv"
    # No wheel cache: it would keep another 3 GB on disk for nothing.
    "$venv/bin/python" -m pip "${pip_install[@]}" --no-cache-dir torch==2.9.0
  fi
  local torch abi
  torch="$("$venv/bin/python" -W ignore -c 'import torch, os; print(os.path.dirname(torch.__file__))')"
  abi="$("$venv/bin/python" -W ignore -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')"
  {
    echo "export LIBTORCH='$torch'"
    echo "export LIBTORCH_CXX11_ABI=$abi"
    echo "export LD_LIBRARY_PATH='$torch/lib'\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
  } >>"$env_file"
}

setup_cuda() {
  local version=23.1.1.post0
  local llvm="${XDG_DATA_HOME:-$HOME/.local/share}/tracel/tracel-llvm-23.1.0-4"
  if [[ ! -f "$llvm/.tracel-llvm-installed" ]]; then
    echo "setup-backends: unpacking LLVM $version (mlc-llvm-static wheels) into $llvm" >&2
    local tmp
    tmp="$(mktemp -d)"
    "$python" -m pip download "${pip_quiet[@]}" --no-cache-dir --no-deps -d "$tmp" \
      "mlc-llvm-static==$version" "mlc-llvm-static-extra-targets==$version" >/dev/null
    for wheel in "$tmp"/*.whl; do
      "$python" -m zipfile -e "$wheel" "$tmp/tree"
    done
    rm -rf "$llvm"
    mkdir -p "$llvm"
    cp -a "$tmp/tree/mlc_llvm_static/static/." "$llvm/"
    # zip does not keep the executable bit; llvm-config is a Python script.
    chmod +x "$llvm/bin/"*
    "$llvm/bin/llvm-config" --targets-built | grep -qw NVPTX ||
      { echo "setup-backends: $llvm has no NVPTX target" >&2; exit 1; }
    touch "$llvm/.tracel-llvm-installed"
    rm -rf "$tmp"
  fi
}

for backend in "${want[@]}"; do
  case "$backend" in
    tch) setup_tch ;;
    cuda) setup_cuda ;;
    *) echo "setup-backends: unknown backend '$backend' (tch, cuda)" >&2; exit 2 ;;
  esac
done
echo "$env_file"
