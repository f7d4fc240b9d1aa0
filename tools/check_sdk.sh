#!/usr/bin/env bash
# The plugin SDK end to end, as a researcher uses it: install difflab into a prefix, generate an
# out-of-tree plugin project with `difflab new-plugin`, build it with find_package(difflab), run
# its test, and run an experiment that uses it with the installed `difflab`.
#   tools/check_sdk.sh BUILD_DIR [WORK_DIR]
set -euo pipefail
build_dir=$(cd "$1" && pwd)
work=${2:-$(mktemp -d)}
mkdir -p "$work"
prefix="$work/prefix"
project="$work/log_cosh"

cmake --install "$build_dir" --prefix "$prefix" > "$work/install.log"
rm -rf "$project"
"$prefix/bin/difflab" new-plugin loss log_cosh "$project"
launcher=()
if command -v ccache > /dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
generator=()
if command -v ninja > /dev/null; then generator=(-G Ninja); fi
cmake -S "$project" -B "$project/build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" "${launcher[@]}" > "$work/configure.log"
cmake --build "$project/build" > "$work/build.log"
ctest --test-dir "$project/build" --output-on-failure
# The installed difflab finds its installed plugins and, through plugin_paths, the new one.
DIFFLAB_PLUGIN_PATH="$project/build" "$prefix/bin/difflab" plugins --family loss | grep -q "log_cosh 0.1.0"
(cd "$project" && "$prefix/bin/difflab" run experiment.toml)
finished=$("$prefix/bin/difflab" results "$project/results/log_cosh.sqlite" --format csv \
  --where 'loss.plugin = "log_cosh" and status = "finished"' | tail -n +2 | wc -l)
if [ "$finished" != 1 ]; then
  echo "check_sdk: the experiment with the out-of-tree plugin did not finish ($finished finished runs)" >&2
  exit 1
fi
echo "check_sdk: out-of-tree plugin built, tested and used by an experiment"
