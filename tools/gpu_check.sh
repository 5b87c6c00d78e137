#!/usr/bin/env bash
# gpu_check.sh — everything a lent GPU machine is for, in one call (`make gpu-check`):
#   1. unpack our C libraries from .debs/ (the machine has CUDA, cmake and python3 with torch, but not
#      libyaml, cJSON, Oniguruma, utf8proc or OpenBLAS),
#   2. build the engine-only configuration with CUDA for the machine's own architecture,
#   3. run the GPU tests (ctest label gpu: every CUDA op against its CPU twin, the CUDA forward against the
#      CPU forward on the golden models),
#   3b. only with GPU_CHECK_PREPROCESS=1 and the full package set in .debs/ (prepare_debs.sh .debs full):
#      a full build (MPI, HDF5) of diff_preprocess and pp_store_tool, then the test preprocess_gpu_vs_cpu
#      (tests/preprocess/pp_gpu.sh: device=cuda stores against device=cpu stores on the demo pair); it
#      takes time from the benchmark,
#   4. benchmark (tools/bench_gpu.py): random-weight Llama-3.2-1B, Qwen3-1.7B and Gemma-3-1B checkpoints
#      written by torch here, diffkit's tokens/s for middle-layer capture and the full forward, MFU against
#      a bf16 cuBLASLt GEMM peak measured in the same run, transformers (bf16, sdpa, hooks) on the same
#      weights and tokens,
#   5. print a short summary and the benchmark table last; full logs go to $OUT (or ./gpu-check-out).
# Every step has a hard timeout (configure 40 s, build 200 s, tests 120 s, memcheck 60 s, racecheck 60 s;
# the benchmark gets what is left of 510 s, at most 210 s), so the whole check ends within ~8.5 minutes,
# before the device tool's 10; about 5-6 minutes expected. A failed step does not stop the later ones when
# they can still run.
# Before the call, on the development machine:
#     bash ../shared/device/prepare_debs.sh .debs core      # .debs/ is git-ignored; name it in `carry`
# then run `make gpu-check` through the device tool with carry [".debs"].
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-$PWD/gpu-check-out}
mkdir -p "$out"
start=$(date +%s)
summary=()
elapsed() { echo $(( $(date +%s) - start )); }

if [ -d .debs ] && ls .debs/*.deb >/dev/null 2>&1; then
  eval "$(bash tools/unpack_debs.sh .debs /opt/dk)"
else
  echo "gpu_check: no .debs/ folder; assuming the C libraries are installed" >&2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/gpu.txt" 2>&1
gpu=$(head -1 "$out/gpu.txt")
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.')
arch=${arch:-90}

built=0
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
if timeout 40 cmake -S . -B build-gpu "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DDIFFKIT_ENGINE_ONLY=ON -DDIFFKIT_CUDA=ON \
     -DCMAKE_CUDA_ARCHITECTURES="$arch" > "$out/configure.log" 2>&1 &&
   timeout 200 cmake --build build-gpu -j "$(nproc)" > "$out/build.log" 2>&1; then
  built=1
  summary+=("build (engine only, sm_$arch): ok, $(elapsed) s")
else
  tail -30 "$out/configure.log" "$out/build.log"
  summary+=("build (engine only, sm_$arch): FAILED or timed out (see configure.log, build.log)")
fi

if [ "$built" = 1 ]; then
  # -V keeps every check's measured error in the log (the record of the bf16 noise floors)
  (cd build-gpu && timeout 120 ctest -L gpu -V --timeout 100) > "$out/ctest-gpu.log" 2>&1
  rc=$?
  summary+=("gpu tests: $(grep -E 'tests passed|tests failed' "$out/ctest-gpu.log" | tail -1) (exit $rc), $(elapsed) s")
  grep -E 'SKIP:|FAIL' "$out/ctest-gpu.log" | head -20
fi

# 3b: diff_preprocess on the GPU (needs MPI and parallel HDF5, so a second, full configuration)
if [ "$built" = 1 ] && [ "${GPU_CHECK_PREPROCESS:-0}" = 1 ] && ls .debs/libhdf5-openmpi-dev*.deb >/dev/null 2>&1; then
  if timeout 40 cmake -S . -B build-gpu-full "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DDIFFKIT_CUDA=ON \
       -DCMAKE_CUDA_ARCHITECTURES="$arch" > "$out/configure-full.log" 2>&1 &&
     timeout 240 cmake --build build-gpu-full -j "$(nproc)" --target diff_preprocess pp_store_tool \
       > "$out/build-full.log" 2>&1; then
    (cd build-gpu-full && timeout 150 ctest -R preprocess_gpu_vs_cpu -V --timeout 140) > "$out/ctest-preprocess-gpu.log" 2>&1
    rc=$?
    summary+=("preprocess gpu vs cpu: $(grep -E 'tests passed|tests failed' "$out/ctest-preprocess-gpu.log" | tail -1) (exit $rc), $(elapsed) s")
  else
    tail -30 "$out/configure-full.log" "$out/build-full.log"
    summary+=("full build for preprocess_gpu_vs_cpu: FAILED or timed out (configure-full.log, build-full.log)")
  fi
fi

# out-of-bounds and uninitialised device accesses of every kernel (memcheck; the guard bands of the tests
# only see writes just past the ends)
sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
if [ "$built" = 1 ] && [ -x "$sanitizer" ] && [ -x build-gpu/tests/test_kernels_cuda ]; then
  (cd build-gpu && DIFFKIT_FIXTURES="$PWD/../tests/fixtures" timeout 60 "$sanitizer" --tool memcheck \
     --leak-check no --error-exitcode 9 tests/test_kernels_cuda) > "$out/memcheck.log" 2>&1
  rc=$?
  summary+=("memcheck test_kernels_cuda: exit $rc ($(grep -E 'ERROR SUMMARY' "$out/memcheck.log" | tail -1)), $(elapsed) s")
  # shared-memory races of the two attention kernels (the only kernels that share data between threads
  # through shared memory), on the attention cases only
  (cd build-gpu && DK_TEST_ONLY=attention timeout 60 "$sanitizer" --tool racecheck --error-exitcode 9 \
     tests/test_kernels_cuda) > "$out/racecheck.log" 2>&1
  rc=$?
  summary+=("racecheck attention: exit $rc ($(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/racecheck.log" | tail -1)), $(elapsed) s")
fi

# the benchmark gets what is left of an 8.5-minute total (the device tool stops a command at 10)
left=$(( 510 - $(elapsed) ))
budget=$(( left - 25 < 210 ? left - 25 : 210 ))
if [ "$built" = 1 ] && [ -x build-gpu/tests/bench_forward_cuda ] && [ "$budget" -ge 60 ]; then
  timeout $(( budget + 15 )) python3 tools/bench_gpu.py --bench build-gpu/tests/bench_forward_cuda \
    --work /tmp/dk_bench_gpu --out "$out" --budget "$budget" > "$out/bench.out" 2> "$out/bench.err"
  rc=$?
  summary+=("benchmark: exit $rc, $(elapsed) s (bench.json, bench.log, bench.err)")
  [ $rc -ne 0 ] && tail -15 "$out/bench.err"
elif [ "$built" = 1 ]; then
  summary+=("benchmark: skipped, only $left s left")
fi

echo
echo "== diffkit gpu-check on ${gpu:-unknown GPU}, $(elapsed) s =="
for line in "${summary[@]}"; do echo "  $line"; done
[ -s "$out/bench.out" ] && cat "$out/bench.out"
exit 0
