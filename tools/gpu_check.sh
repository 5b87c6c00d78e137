#!/usr/bin/env bash
# gpu_check.sh — everything a lent GPU machine is for, in one call (`make gpu-check`):
#   1. unpack our C libraries from .debs/ (the machine has CUDA, cmake and python3 with torch, but not
#      libyaml, cJSON, Oniguruma, utf8proc or OpenBLAS),
#   2. build the engine-only configuration with CUDA for the machine's own architecture,
#   3. run the GPU tests (ctest label gpu: every CUDA op against its CPU twin, the CUDA forward against the
#      CPU forward on the golden models),
#   3b. when .debs/ holds the full package set (prepare_debs.sh .debs full; or GPU_CHECK_PREPROCESS=1 on a
#      machine that has MPI and parallel HDF5; GPU_CHECK_PREPROCESS=0 turns it off): a full build (MPI,
#      HDF5) of diff_preprocess and pp_store_tool in the background (nice, half the cores) while steps 3-4
#      run, then, after the benchmark, the test preprocess_gpu_vs_cpu (tests/preprocess/pp_gpu.sh:
#      device=cuda stores against device=cpu stores on the demo pair) in the time that is left; it reserves
#      100 s of the benchmark's budget,
#   4. benchmark (tools/bench_gpu.py): random-weight Llama-3.2-1B, Qwen3-1.7B and Gemma-3-1B checkpoints
#      written by torch here, diffkit's tokens/s for middle-layer capture and the full forward, MFU against
#      a bf16 cuBLASLt GEMM peak measured in the same run, transformers (bf16, sdpa, hooks) on the same
#      weights and tokens,
#   5. print a short summary and the benchmark table last; full logs go to $OUT (or ./gpu-check-out).
# Every step has a hard timeout (configure 40 s, build 200 s, tests 120 s, memcheck 60 s, racecheck 60 s;
# the benchmark gets what is left of 510 s, at most 210 s, less 100 s when 3b runs; the preprocess test
# ends by 520 s), so the whole check ends within ~8.7 minutes, before the device tool's 10; about 5-6
# minutes expected. A failed step does not stop the later ones when
# they can still run.
# Before the call, on the development machine:
#     bash ../shared/device/prepare_debs.sh .debs full      # .debs/ is git-ignored; name it in `carry`
#     (28 MB; `core` (no MPI, HDF5) skips step 3b)
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

# 3b (start): diff_preprocess on the GPU needs MPI and parallel HDF5, so a second, full configuration, built
# in the background while the GPU tests and the benchmark run (its own timeouts end it by ~340 s after start;
# its output goes to files, never to this script's stdout)
preprocess=${GPU_CHECK_PREPROCESS:-auto}
if [ "$preprocess" = auto ]; then
  preprocess=0; ls .debs/libhdf5-openmpi-dev*.deb >/dev/null 2>&1 && preprocess=1
fi
full_pid=
if [ "$built" = 1 ] && [ "$preprocess" = 1 ]; then
  half=$(( $(nproc) / 2 > 1 ? $(nproc) / 2 : 1 ))
  ( timeout 40 cmake -S . -B build-gpu-full "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DDIFFKIT_CUDA=ON \
      -DCMAKE_CUDA_ARCHITECTURES="$arch" > "$out/configure-full.log" 2>&1 &&
    timeout 300 nice -n 19 cmake --build build-gpu-full -j "$half" --target diff_preprocess pp_store_tool \
      > "$out/build-full.log" 2>&1 ) < /dev/null &
  full_pid=$!
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
[ -n "$full_pid" ] && left=$(( left - 100 ))   # kept for the preprocess test (3b)
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

# 3b (finish): wait for the background build while time is left, then run the test in what remains
if [ -n "$full_pid" ]; then
  while kill -0 "$full_pid" 2>/dev/null && [ "$(elapsed)" -lt 440 ]; do sleep 2; done
  if kill -0 "$full_pid" 2>/dev/null; then
    summary+=("preprocess gpu vs cpu: skipped, the full build was still running at $(elapsed) s (build-full.log)")
  elif ! wait "$full_pid"; then
    tail -30 "$out/configure-full.log" "$out/build-full.log" 2>/dev/null
    summary+=("full build for preprocess_gpu_vs_cpu: FAILED or timed out (configure-full.log, build-full.log)")
  else
    t=$(( 520 - $(elapsed) ))
    if [ "$t" -ge 40 ]; then
      (cd build-gpu-full && timeout "$t" ctest -R preprocess_gpu_vs_cpu -V --timeout $(( t - 5 ))) \
        > "$out/ctest-preprocess-gpu.log" 2>&1
      rc=$?
      summary+=("preprocess gpu vs cpu: $(grep -E 'tests passed|tests failed' "$out/ctest-preprocess-gpu.log" | tail -1) (exit $rc), $(elapsed) s")
    else
      summary+=("preprocess gpu vs cpu: skipped, only $t s left")
    fi
  fi
fi

echo
echo "== diffkit gpu-check on ${gpu:-unknown GPU}, $(elapsed) s =="
for line in "${summary[@]}"; do echo "  $line"; done
[ -s "$out/bench.out" ] && cat "$out/bench.out"
exit 0
