#!/usr/bin/env bash
# Installs difflab's Debian packages (as root) and builds it in Release into build/.
#   bash tools/setup.sh            # the tool, the SDK and the plugins: what `difflab run` needs
#   bash tools/setup.sh --tests    # everything, the test suite too (and the packages it starts)
#   BUILD_DIR=out bash tools/setup.sh
# ccache (installed here) caches every compilation: a second build, or a fresh clone in another
# folder, compiles only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

tests=0
case "${1:-}" in
  --tests) tests=1 ;;
  "") ;;
  *) echo "setup.sh: unknown option $1 (--tests builds the test suite too)" >&2; exit 2 ;;
esac

if [ $tests = 1 ]; then bash tools/install_deps.sh --tests; else bash tools/install_deps.sh; fi

build_dir=${BUILD_DIR:-build}
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
# Clang when there is one and CXX names no other compiler: LibTorch's headers instantiate thousands of
# templates, and Clang instantiates them once in the precompiled header where GCC does it again in
# every file (~8 s each): the build takes ~3 min instead of ~11 on 2 cores (docs/speed.md).
compiler=()
if [ -z "${CXX:-}" ] && command -v clang++ >/dev/null; then
  compiler=(-DCMAKE_CXX_COMPILER=clang++)
fi
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  cmake -S . -B "$build_dir" "${generator[@]}" "${compiler[@]}" -DCMAKE_BUILD_TYPE=Release
fi
if command -v ccache >/dev/null; then
  ccache --max-size=5G >/dev/null  # difflab's objects take ~1 GB; room for several versions
  ccache --zero-stats >/dev/null
fi
if [ $tests = 1 ]; then
  cmake --build "$build_dir" --parallel "$(nproc)"
else
  cmake --build "$build_dir" --parallel "$(nproc)" --target difflab_runtime
fi
if command -v ccache >/dev/null; then
  ccache --show-stats 2>/dev/null | grep -E "Hits|Misses" | head -2 | sed 's/^/setup.sh: ccache /' || true
fi
echo "setup.sh: built into $build_dir/ (difflab: $build_dir/bin/difflab$([ $tests = 1 ] && echo ", tests: ctest --test-dir $build_dir"))"
