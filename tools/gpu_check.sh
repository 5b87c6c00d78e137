#!/usr/bin/env bash
# gpu_check.sh — everything a lent GPU machine is for, in one call (`make gpu-check`):
#   1. unpack our C libraries from .debs/ (the machine has CUDA, cmake and python3 with torch, but not
#      libyaml, cJSON, Oniguruma, utf8proc or OpenBLAS),
#   2. build the engine-only configuration with CUDA for the machine's own architecture,
#   3. run the GPU tests (ctest label gpu: every CUDA op against its CPU twin),
#   4. print a short summary last; full logs go to $OUT (or ./gpu-check-out).
# Before the call, on the development machine:
#     bash ../shared/device/prepare_debs.sh .debs core      # .debs/ is git-ignored; name it in `carry`
# then run `make gpu-check` through the device tool with carry [".debs"].
# Later issues add the GPU benchmarks (tokens/s, MFU, transformers side by side) here.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-$PWD/gpu-check-out}
mkdir -p "$out"
start=$(date +%s)
summary=()

if [ -d .debs ] && ls .debs/*.deb >/dev/null 2>&1; then
  eval "$(bash tools/unpack_debs.sh .debs /opt/dk)"
else
  echo "gpu_check: no .debs/ folder; assuming the C libraries are installed" >&2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/gpu.txt" 2>&1
gpu=$(head -1 "$out/gpu.txt")
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.')
arch=${arch:-90}

if cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DDIFFKIT_ENGINE_ONLY=ON -DDIFFKIT_CUDA=ON \
     -DCMAKE_CUDA_ARCHITECTURES="$arch" > "$out/configure.log" 2>&1 &&
   cmake --build build-gpu -j "$(nproc)" > "$out/build.log" 2>&1; then
  summary+=("build (engine only, sm_$arch): ok")
else
  tail -30 "$out/configure.log" "$out/build.log"
  summary+=("build (engine only, sm_$arch): FAILED (see configure.log, build.log)")
fi

if [ -d build-gpu ]; then
  (cd build-gpu && ctest -L gpu --output-on-failure) > "$out/ctest-gpu.log" 2>&1
  rc=$?
  summary+=("gpu tests: $(grep -E 'tests passed|tests failed' "$out/ctest-gpu.log" | tail -1) (exit $rc)")
  grep -E '^SKIP|FAIL' "$out/ctest-gpu.log" | head -20
fi

echo
echo "== diffkit gpu-check on ${gpu:-unknown GPU}, $(( $(date +%s) - start )) s =="
for line in "${summary[@]}"; do echo "  $line"; done
