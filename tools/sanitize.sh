#!/usr/bin/env bash
# Builds difflab with AddressSanitizer and UndefinedBehaviorSanitizer into build-asan/ and runs
# the unit tests under them (the end-to-end CLI, SDK and robustness tests are left out: they run
# the executable many times and take long under ASan; the same code paths run in-process in the
# unit tests).
#   bash tools/sanitize.sh [CTEST_REGEX_TO_EXCLUDE]
# Leak checking is off: LibTorch keeps its global registries allocated until exit by design.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build-asan}
generator=()
command -v ninja > /dev/null && generator=(-G Ninja)
cmake -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DCMAKE_MODULE_LINKER_FLAGS="-fsanitize=address,undefined" > /dev/null
cmake --build "$build_dir" --parallel "$(nproc)"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:detect_odr_violation=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --test-dir "$build_dir" --output-on-failure -j "$(nproc)" -E "${1:-^(cli|sdk|architecture)\\.|^Cli\\.|Databases\\.|Checkpoints\\.|FullDisks\\.|Check\\.|^Slurm|^DataParallel\\.|^ReportCommand\\.|^ReportBrowser\\.}"
echo "sanitize.sh: the unit tests pass under AddressSanitizer and UndefinedBehaviorSanitizer"
