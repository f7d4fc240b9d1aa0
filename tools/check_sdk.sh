#!/usr/bin/env bash
# The plugin SDK end to end, as a researcher uses it: install difflab into a prefix, check what
# the install exports (the SDK's headers alone; plugins that export nothing but their ABI record
# and metadata function), then for every plugin family generate a project with
# `difflab new-plugin`, build it with find_package(difflab), run its generated test, and run its
# example experiment with the installed `difflab`.
#   tools/check_sdk.sh BUILD_DIR [WORK_DIR] [FAMILY...]
set -euo pipefail
build_dir=$(cd "$1" && pwd)
work=${2:-$(mktemp -d)}
shift $(( $# >= 2 ? 2 : $# ))
families=("$@")
[ ${#families[@]} -gt 0 ] || families=(loss schedule sampler network dataset features)
source_dir=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$work"
prefix="$work/prefix"

cmake --install "$build_dir" --prefix "$prefix" > "$work/install.log"

# The installed headers are the SDK's, exactly.
diff <(cd "$source_dir/framework/include/difflab" && ls ./*.h | sed 's|^\./||'; echo version.h) \
     <(cd "$prefix/include/difflab" && ls) | sort > "$work/headers.diff" || true
if [ -s "$work/headers.diff" ]; then
  echo "check_sdk: the installed headers are not the SDK's:" >&2
  cat "$work/headers.diff" >&2
  exit 1
fi
# A plugin exports its ABI record and metadata function, nothing else.
check_exports() {
  local exported
  exported=$(nm -D --defined-only "$1" | awk '$2 != "A" {print $3}' | sort | tr '\n' ' ')
  if [ "$exported" != "difflab_abi_record difflab_plugin_info " ]; then
    echo "check_sdk: $1 exports more than its entry points: $exported" >&2
    exit 1
  fi
}
for plugin in "$prefix"/lib*/difflab/plugins/*.so; do check_exports "$plugin"; done
echo "check_sdk: installed headers are the SDK's; every plugin exports only difflab_abi_record and difflab_plugin_info"

launcher=()
if command -v ccache > /dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
generator=()
if command -v ninja > /dev/null; then generator=(-G Ninja); fi

for family in "${families[@]}"; do
  name="my_$family"
  section=$family
  [ "$family" = dataset ] && section=data
  project="$work/$name"
  rm -rf "$project"
  "$prefix/bin/difflab" new-plugin "$family" "$name" "$project" > /dev/null
  cmake -S "$project" -B "$project/build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$prefix" "${launcher[@]}" > "$work/configure-$family.log"
  # find_package(difflab) names the prefix it was found in, whatever its dependencies' configs do.
  if ! grep -q "SDK headers in $prefix/include, installed plugins in $prefix/lib.*/difflab/plugins" \
       "$work/configure-$family.log"; then
    echo "check_sdk: find_package(difflab) reports other paths than $prefix:" >&2
    grep "difflab:" "$work/configure-$family.log" >&2
    exit 1
  fi
  cmake --build "$project/build" > "$work/build-$family.log" || { cat "$work/build-$family.log" >&2; exit 1; }
  check_exports "$project/build/difflab-$family-$name.so"
  ctest --test-dir "$project/build" --output-on-failure > "$work/test-$family.log" || { cat "$work/test-$family.log" >&2; exit 1; }
  # The installed difflab finds its installed plugins and, through DIFFLAB_PLUGIN_PATH, the new one.
  listed=$(DIFFLAB_PLUGIN_PATH="$project/build" "$prefix/bin/difflab" plugins --family "$family")
  if ! grep -q "$name 0.1.0" <<< "$listed"; then
    echo "check_sdk: difflab plugins does not list $name:" >&2
    echo "$listed" >&2
    exit 1
  fi
  (cd "$project" && "$prefix/bin/difflab" run experiment.toml > "$work/run-$family.log" 2>&1) ||
    { cat "$work/run-$family.log" >&2; exit 1; }
  finished=$("$prefix/bin/difflab" results "$project/results/$name.sqlite" --format csv \
    --where "$section.plugin = \"$name\" and status = \"finished\"" | tail -n +2 | wc -l)
  if [ "$finished" != 1 ]; then
    echo "check_sdk: the experiment with the $family plugin did not finish ($finished finished runs)" >&2
    exit 1
  fi
  echo "check_sdk: $family plugin $name generated, built, tested and used by an experiment"
done
echo "check_sdk: out-of-tree plugins built, tested and used by an experiment: ${families[*]}"
