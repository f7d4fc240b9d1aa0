#!/bin/bash
# difflab's training and sampling throughput next to the eager Python reference (Debian's
# python3-torch, tools/bench_reference.py) for the same network, batch and image size, run
# alternately ROUNDS times so that both see the same machine load; prints every run, the medians,
# the ratio of the medians and the median of each round's ratio (difflab as written against the
# float32 reference run right after it), and the sampling speed-ups (ratios of the medians).
#
#   tools/bench_side_by_side.sh [--rounds N] [--steps N] [--threads N] [--build DIR]
#                               [--experiment FILE] [-- difflab --set overrides...]
# The reference runs in fp32 and in bf16 + channels_last; difflab runs the experiment as written
# (experiments/quickstart.toml: precision auto + channels_last) and with --set experiment.precision=fp32.
# It prints the CPU, its bf16 support and the paths difflab and PyTorch chose on it; to measure
# another CPU's paths on this one, set ONEDNN_MAX_CPU_ISA (AVX512_CORE_BF16: no AMX; AVX2: no
# AVX-512) and ATEN_CPU_CAPABILITY for both.
set -euo pipefail
rounds=3 steps=30 threads=$(nproc) build=build experiment=experiments/quickstart.toml
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --experiment) experiment=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "bench_side_by_side.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
difflab="$build/bin/difflab"
[[ -x $difflab ]] || { echo "bench_side_by_side.sh: $difflab not built (tools/setup.sh)" >&2; exit 2; }
declare -A results
measure() {  # NAME COMMAND... -> appends "train sample rss" to results[NAME]
  local name=$1; shift
  local out; out=$("$@" 2>&1) || { echo "$out" >&2; exit 1; }
  local train sample rss
  train=$(awk '/^train_images_per_second:/ { print $2 }' <<<"$out")
  sample=$(awk '/^sample_images_per_second:/ { print $2 }' <<<"$out")
  rss=$(awk '/^peak_rss_mb:/ { print $2 }' <<<"$out")
  if [[ -z ${batch_size:-} ]]; then
    IFS=x read -r batch_size channels image_size _ <<<"$(awk '/^batch_shape:/ { print $2 }' <<<"$out")"
    echo "# batch ${batch_size}x${channels}x${image_size}x${image_size}, $steps steps, $threads threads, $rounds rounds"
    # The CPU and the paths difflab chose on it (difflab/cpu.h), and the precision it ran.
    sed -n 's/^cpu: /# cpu: /p; s/^precision: /# difflab precision: /p' <<<"$out"
    echo "# reference: PyTorch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)'), CPU capability" \
         "$(/usr/bin/python3 -c 'import torch; print([l.split(": ")[1] for l in torch.__config__.show().splitlines() if "capability" in l][0])')" \
         "${ATEN_CPU_CAPABILITY:+(ATEN_CPU_CAPABILITY=$ATEN_CPU_CAPABILITY)}${ONEDNN_MAX_CPU_ISA:+ (ONEDNN_MAX_CPU_ISA=$ONEDNN_MAX_CPU_ISA)}"
  fi
  printf '%-34s train %7.2f img/s  sample %6.2f img/s  peak %6.1f MB\n' "$name" "$train" "$sample" "$rss"
  results[$name]+="$train $sample $rss;"
}
reference() {
  /usr/bin/python3 tools/bench_reference.py --image-size "$image_size" --channels "$channels" \
    --batch-size "$batch_size" --steps "$steps" --threads "$threads" "$@"
}
names=("difflab (as written)" "difflab fp32" "reference fp32" "reference bf16 channels_last")
echo "# $experiment"
for ((round = 1; round <= rounds; ++round)); do
  measure "${names[0]}" "$difflab" bench "$experiment" --steps "$steps" --set "experiment.threads=$threads" "$@"
  measure "${names[2]}" reference --precision fp32
  measure "${names[1]}" "$difflab" bench "$experiment" --steps "$steps" --set "experiment.threads=$threads" \
    "$@" --set experiment.precision=fp32 --set experiment.channels_last=false
  measure "${names[3]}" reference --precision bf16 --channels-last
done
median() { tr ';' '\n' | awk -v field="$1" 'NF { print $field }' | sort -g | awk '{ v[NR] = $1 }
  END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo "# medians"
for name in "${names[@]}"; do
  printf '%-34s train %7.2f img/s  sample %6.2f img/s  peak %6.1f MB\n' "$name" \
    "$(median 1 <<<"${results[$name]}")" "$(median 2 <<<"${results[$name]}")" "$(median 3 <<<"${results[$name]}")"
done
difflab_train=$(median 1 <<<"${results[${names[0]}]}")
reference_train=$(median 1 <<<"${results[${names[2]}]}")
awk -v a="$difflab_train" -v b="$reference_train" \
  'BEGIN { printf "train_speedup_vs_fp32_reference: %.2f (ratio of the medians)\n", a / b }'
ratios=$(paste -d' ' <(tr ';' '\n' <<<"${results[${names[0]}]}" | awk 'NF { print $1 }') \
                     <(tr ';' '\n' <<<"${results[${names[2]}]}" | awk 'NF { print $1 }') |
         awk '{ printf "%.2f;", $1 / $2 }')
echo "train_speedup_per_round: ${ratios//;/ }"
echo "train_speedup_median_of_rounds: $(median 1 <<<"$ratios")"
difflab_sample=$(median 2 <<<"${results[${names[0]}]}")
fp32_sample=$(median 2 <<<"${results[${names[2]}]}")
bf16_sample=$(median 2 <<<"${results[${names[3]}]}")
awk -v a="$difflab_sample" -v b="$fp32_sample" -v c="$bf16_sample" 'BEGIN {
  printf "sample_speedup_vs_fp32_reference: %.2f (ratio of the medians)\n", a / b
  printf "sample_speedup_vs_bf16_reference: %.2f (ratio of the medians)\n", a / c }'
