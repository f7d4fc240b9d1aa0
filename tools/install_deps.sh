#!/usr/bin/env bash
# Installs the Debian 12 packages difflab needs (as root): to build and run it, and with --tests
# also what the test suite starts (Slurm with munge, Chromium, Python's torch for the reference
# scripts). Nothing else is downloaded: LibTorch, the datasets and all libraries come from Debian.
#   bash tools/install_deps.sh [--tests]
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  clang libomp-dev        # the compiler setup.sh prefers: its precompiled headers build ~4x faster (docs/speed.md);
                          # libomp-dev for omp.h (difflab links GCC's libgomp, as LibTorch does)
  libtorch-dev            # LibTorch 1.13 (C++ frontend)
  libdnnl-dev             # oneDNN's headers (Debian's LibTorch links its libdnnl): the inference path
  libgloo-dev             # the Gloo headers for c10d's ProcessGroupGloo (data-parallel training)
  libopenblas0-pthread    # without it LibTorch falls back to reference BLAS (~50x slower)
  libboost-dev            # Boost.DLL (header-only)
  libboost-filesystem-dev # Boost.DLL's filesystem dependency
  libboost-program-options-dev
  libtomlplusplus-dev libsqlitecpp-dev libsqlite3-dev sqlite3
  libfmt-dev libgtest-dev libstb-dev zlib1g-dev
  dataset-fashion-mnist   # the default dataset, under /usr/share/datasets/fashion-mnist
)
test_packages=(
  python3-torch python3-numpy  # reference benchmark and test-fixture scripts
  python3-yaml            # the tests parse difflab k8s's Job manifest with a real YAML parser
  python3-optuna          # golden references for the adaptive sweeps' pruning rules
  python3-scipy           # golden reference for FID (scipy.linalg.sqrtm, as clean-fid and pytorch-fid compute it)
  slurm-wlm munge         # difflab slurm; the tests start a single-node Slurm of their own
  chromium                # the tests open difflab report's HTML in a real (headless) browser
)

case "${1:-}" in
  --tests) packages+=("${test_packages[@]}") ;;
  "") ;;
  *) echo "install_deps.sh: unknown option $1 (--tests adds what the test suite needs)" >&2; exit 2 ;;
esac

if [ "$(id -u)" -ne 0 ]; then
  echo "install_deps.sh: run as root (it calls apt-get)" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install_deps.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "install_deps.sh: all packages present"
fi
