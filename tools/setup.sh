#!/usr/bin/env bash
# Installs difflab's Debian packages (as root) and builds everything in Release into build/.
#   bash tools/setup.sh            # install + configure + build
#   BUILD_DIR=out bash tools/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/install_deps.sh

build_dir=${BUILD_DIR:-build}
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  cmake -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release
fi
cmake --build "$build_dir" --parallel "$(nproc)"
echo "setup.sh: built into $build_dir/ (difflab: $build_dir/bin/difflab)"
