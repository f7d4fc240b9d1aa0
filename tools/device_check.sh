#!/usr/bin/env bash
# Builds difflab against the CUDA LibTorch of a GPU machine (PyTorch 2.x's own LibTorch), runs
# the test suite, then benchmarks and trains the quickstart on the GPU. The machine has no
# package registry: Debian's .deb files of the other dependencies travel in .devdeps/
# (apt-get download, see the README's "GPU" section) and are unpacked under /tmp/deps.
set -uo pipefail
out=${OUT:-/tmp/difflab-device}
mkdir -p "$out" /tmp/deps
for deb in .devdeps/*.deb; do dpkg -x "$deb" /tmp/deps; done
deps=/tmp/deps/usr
export LD_LIBRARY_PATH=$deps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
torch_prefix=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
python3 -c 'import torch;print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
g++ --version | head -1; cmake --version | head -1

cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$torch_prefix;$deps" \
  -DBoost_DIR=$deps/lib/x86_64-linux-gnu/cmake/Boost-1.74.0 \
  -DSQLite3_INCLUDE_DIR=$deps/include -DSQLite3_LIBRARY=$deps/lib/x86_64-linux-gnu/libsqlite3.so \
  -DZLIB_INCLUDE_DIR=$deps/include -DZLIB_LIBRARY=$(ls /usr/lib/x86_64-linux-gnu/libz.so.1 /lib/x86_64-linux-gnu/libz.so.1 2>/dev/null | head -1) \
  -DCMAKE_CUDA_ARCHITECTURES=90 > "$out/configure.log" 2>&1 || { tail -40 "$out/configure.log"; exit 1; }
time cmake --build build-cuda --parallel 16 > "$out/build.log" 2>&1 || { grep -E "error" -A5 "$out/build.log" | head -60; exit 1; }
echo "warnings: $(grep -c 'warning:' "$out/build.log")"; grep 'warning:' "$out/build.log" | sort | uniq -c | sort -rn | head -8

# Fashion-MNIST travels in .devdata/ when the caller carries it.
if [ -d .devdata ]; then mkdir -p /usr/share/datasets/fashion-mnist && cp .devdata/*.gz /usr/share/datasets/fashion-mnist/; fi

(cd build-cuda && ctest -j 8 --output-on-failure > "$out/ctest.log" 2>&1); tail -5 "$out/ctest.log"
grep -E "Failed|FAILED" "$out/ctest.log" | head -20

for settings in "--set experiment.precision=fp32" "--set experiment.precision=bf16 --set experiment.channels_last=true"; do
  echo "== cuda bench: $settings"
  build-cuda/bin/difflab bench experiments/quickstart.toml --set experiment.device=cuda $settings --steps 100
done
echo "== cuda quickstart (1 epoch)"
build-cuda/bin/difflab run experiments/quickstart.toml --set experiment.device=cuda \
  --set experiment.database=$out/quickstart.sqlite --set experiment.output_dir=$out/runs 2>&1 | grep -v "^epoch 1/1  step"
cp $out/runs/*/epoch-001.png $out/cuda-grid.png 2>/dev/null
rm -rf $out/runs
