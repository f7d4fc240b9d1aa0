#!/bin/bash
# Measures TPE + ASHA against random + ASHA on the same space and budget (docs/sweeps.md):
# experiments/tpe_asha.toml and experiments/asha_learning_rate.toml, each with several sweep seeds,
# all into one database; then `difflab sweep progress` prints each sweep's best so far and the
# mean ± std by sampler, and `difflab report` draws both curves on one chart.
#
#   tools/compare_samplers.sh OUT_DIR [SEEDS...]       (default seeds: 0 1 2 3; ~1 h on 2 cores)
set -euo pipefail
out=${1:?usage: tools/compare_samplers.sh OUT_DIR [SEEDS...]}
shift
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(0 1 2 3)
here=$(cd "$(dirname "$0")/.." && pwd)
difflab=${DIFFLAB:-$here/build/bin/difflab}
mkdir -p "$out"
out=$(cd "$out" && pwd)
for seed in "${seeds[@]}"; do
  for experiment in asha_learning_rate tpe_asha; do
    file="$out/$experiment-seed$seed.toml"
    # The sweep's seed: the [sweep] table's `seed` line (the experiment's own seed is left as is).
    awk -v seed="$seed" '/^\[/{in_sweep = ($0 == "[sweep]")} in_sweep && /^seed *=/{$0 = "seed = " seed} {print}' \
      "$here/experiments/$experiment.toml" > "$file"
    echo "== $experiment, sweep seed $seed"
    "$difflab" run "$file" --workers 2 --set "experiment.database=$out/compare.sqlite" \
      --set "experiment.output_dir=$out/runs" 2>&1 | tail -3
  done
done
"$difflab" sweep progress "$out/compare.sqlite"
"$difflab" report "$out/compare.sqlite" --out "$out/compare.html"
