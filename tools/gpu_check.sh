#!/usr/bin/env bash
# gpu_check.sh — everything a lent GPU machine is for, in one call (`make gpu-check`):
#   1. unpack our C libraries from .debs/ (the machine has CUDA, cmake and python3 with torch, but not
#      libyaml, cJSON, Oniguruma, utf8proc or OpenBLAS),
#   2. build the engine-only configuration with CUDA for the machine's own architecture,
#   3. run the GPU tests (ctest label gpu: every CUDA op against its CPU twin, the CUDA forward against the
#      CPU forward on the golden models), then compute-sanitizer memcheck and racecheck when the machine allows
#      them (on sandboxed machines it may answer "Device not supported": reported as "tool unavailable"),
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
#   5. print a short summary and the benchmark table last.
# What comes back ($OUT, or ./gpu-check-out; the device tool returns at most 8 files): summary.txt (written
# step by step, so a killed run still says how far it got), ctest-gpu.log (the measured bf16 error floors),
# ctest-preprocess-gpu.log, bench.json, and gpu-check.tar.gz with every log.
# Every step has a hard timeout (configure 40 s, build 200 s, tests 120 s, each sanitizer run 60 s: memcheck and
# racecheck on test_kernels_cuda, then, each only when it can end by 520 s, on test_diffops_cuda's small cases;
# the benchmark gets what is left of 510 s, at most 210 s, less 100 s when 3b runs; the preprocess test ends by
# 520 s), so the whole check ends within ~8.7 minutes, before the device tool's 10.
# The GPU tests (ctest -L gpu) include test_diffops_cuda (each diff op against its CPU twin), test_dict_step_cuda
# (each piece of the SAE / crosscoder training step against kernels/cpu/dict_step) and test_kl_cuda (diff_kl's KL
# with the logits kept on the GPU against host logits + the CPU KL) and test_generate_cuda (generation with the
# device KV cache against the CPU dk_generate; its BENCH line is the bf16 tokens/s of 32 x 128 tokens). The full configuration of step 3b also runs
# dict_train_cuda_1ranks/_2ranks (the GPU dictionary trainer on the training goldens, 1 and 2 ranks, and its
# steps/s at a seed-sized shape, printed into ctest-preprocess-gpu.log).
# Exit status: 0 when the build and the GPU tests passed, 1 when the build failed, 2 when GPU tests failed.
# The configure and build steps live in tools/gpu_check_lib.sh, shared with tools/gpu_check_rehearsal.sh,
# which proves them here on a simulated bare machine (ctest -L gpu-rehearsal).
# Before the call, on the development machine:
#     bash tools/prepare_debs.sh .debs full      # .debs/ is git-ignored; name it in `carry`
#     (`core` (no MPI, HDF5) skips step 3b)
# then run `make gpu-check` through the device tool with carry [".debs"].
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-$PWD/gpu-check-out}
logs=$(mktemp -d "${TMPDIR:-/tmp}/dk_gpu_check.XXXXXX")
mkdir -p "$out"
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }
note() { echo "  $*" >> "$out/summary.txt"; }
source tools/gpu_check_lib.sh

if [ -d .debs ] && ls .debs/*.deb >/dev/null 2>&1; then
  eval "$(bash tools/unpack_debs.sh .debs /opt/dk)"
else
  echo "gpu_check: no .debs/ folder; assuming the C libraries are installed" >&2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$logs/gpu.txt" 2>&1 \
  && gpu=$(head -1 "$logs/gpu.txt") || gpu="no GPU seen by nvidia-smi"
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.')
arch=${arch:-90}
echo "== diffkit gpu-check on ${gpu:-unknown GPU} (sm_$arch), $(git rev-parse --short HEAD 2>/dev/null) ==" > "$out/summary.txt"

status=0
built=0
if gc_build_engine build-gpu "$arch" "$logs"; then
  built=1
  note "build (engine only, sm_$arch): ok, $(elapsed) s"
else
  tail -n 30 "$logs/configure.log" "$logs/build.log" 2>/dev/null
  note "build (engine only, sm_$arch): FAILED or timed out, $(elapsed) s (configure.log, build.log in the tarball)"
  status=1
fi

if [ "$built" = 1 ]; then
  # -V keeps every check's measured error in the log (the record of the bf16 noise floors)
  (cd build-gpu && timeout 120 ctest -L gpu -V --timeout 100) > "$logs/ctest-gpu.log" 2>&1
  rc=$?
  cp "$logs/ctest-gpu.log" "$out/"
  note "gpu tests: $(grep -E 'tests passed|tests failed' "$logs/ctest-gpu.log" | tail -1) (exit $rc), $(elapsed) s"
  [ $rc -ne 0 ] && status=2
  grep -E 'SKIP:|FAIL' "$logs/ctest-gpu.log" | head -20
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
  gc_build_full build-gpu-full "$arch" "$logs" "$half" < /dev/null &
  full_pid=$!
fi

# run_sanitizer TOOL LOG ARGS...: compute-sanitizer on a GPU test; "tool unavailable" when the machine refuses it
# (a sandboxed GPU answers "Device not supported" and then fails with error 999: no finding about our kernels)
run_sanitizer() {
  local tool=$1 log=$2; shift 2
  (cd build-gpu && DIFFKIT_FIXTURES="$PWD/../tests/fixtures" timeout 60 "$sanitizer" --tool "$tool" \
     --error-exitcode 9 "$@") > "$log" 2>&1
  local rc=$?
  if grep -qE 'Device not supported|error 999|CUDA_ERROR_UNKNOWN|Target application terminated before first instrumented API call' "$log"; then
    note "$tool: tool unavailable on this machine ($(grep -oE 'Device not supported|error 999' "$log" | head -1)), $(elapsed) s"
    return 1
  fi
  note "$tool $*: exit $rc ($(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$log" | tail -1)), $(elapsed) s"
  return 0
}
# in_time WHAT: whether a sanitizer run (60 s) started now ends by 520 s; otherwise notes that WHAT is skipped
in_time() {
  [ "$(elapsed)" -le 460 ] && return 0
  note "$1: skipped, $(elapsed) s gone"
  return 1
}
sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
if [ "$built" = 1 ] && [ -x build-gpu/tests/test_kernels_cuda ]; then
  if [ ! -x "$sanitizer" ]; then
    note "memcheck, racecheck: tool unavailable (no compute-sanitizer)"
  # out-of-bounds and uninitialised device accesses of every kernel (memcheck; the guard bands of the tests only
  # see writes just past the ends); then shared-memory races of the two attention kernels, on the attention cases
  # only; then both tools on the diff ops' small cases
  elif run_sanitizer memcheck "$logs/memcheck.log" --leak-check no tests/test_kernels_cuda; then
    export DK_TEST_ONLY=attention
    run_sanitizer racecheck "$logs/racecheck.log" tests/test_kernels_cuda
    # the diff ops (top-k's histograms, prefix sums and bitonic sort share shared memory too), small shapes
    # only; each run only when its 60 s end by 520 s (the steps above end by 480 s at worst)
    export DK_TEST_ONLY=small
    in_time "memcheck tests/test_diffops_cuda" &&
      run_sanitizer memcheck "$logs/memcheck-diffops.log" --leak-check no tests/test_diffops_cuda
    in_time "racecheck tests/test_diffops_cuda" &&
      run_sanitizer racecheck "$logs/racecheck-diffops.log" tests/test_diffops_cuda
    unset DK_TEST_ONLY
  fi
fi

# the benchmark gets what is left of an 8.5-minute total (the device tool stops a command at 10)
left=$(( 510 - $(elapsed) ))
[ -n "$full_pid" ] && left=$(( left - 100 ))   # kept for the preprocess test (3b)
budget=$(( left - 25 < 210 ? left - 25 : 210 ))
if [ "$built" = 1 ] && [ -x build-gpu/tests/bench_forward_cuda ] && [ "$budget" -ge 60 ]; then
  timeout $(( budget + 15 )) python3 tools/bench_gpu.py --bench build-gpu/tests/bench_forward_cuda \
    --work /tmp/dk_bench_gpu --out "$logs" --budget "$budget" > "$logs/bench.out" 2> "$logs/bench.err"
  rc=$?
  [ -f "$logs/bench.json" ] && cp "$logs/bench.json" "$out/"
  note "benchmark: exit $rc, $(elapsed) s (bench.json; bench.log, bench.err in the tarball)"
  [ $rc -ne 0 ] && tail -n 15 "$logs/bench.err"
elif [ "$built" = 1 ]; then
  note "benchmark: skipped, only $left s left"
fi

# 3b (finish): wait for the background build while time is left, then run the test in what remains
if [ -n "$full_pid" ]; then
  while kill -0 "$full_pid" 2>/dev/null && [ "$(elapsed)" -lt 440 ]; do sleep 2; done
  if kill -0 "$full_pid" 2>/dev/null; then
    note "preprocess gpu vs cpu: skipped, the full build was still running at $(elapsed) s (build-full.log)"
  elif ! wait "$full_pid"; then
    tail -n 30 "$logs/configure-full.log" "$logs/build-full.log" 2>/dev/null
    note "full build for preprocess_gpu_vs_cpu: FAILED or timed out (configure-full.log, build-full.log)"
  else
    t=$(( 520 - $(elapsed) ))
    if [ "$t" -ge 40 ]; then
      (cd build-gpu-full && timeout "$t" ctest -R "preprocess_gpu_vs_cpu|dict_train_cuda" -V --timeout $(( t - 5 ))) \
        > "$logs/ctest-preprocess-gpu.log" 2>&1
      rc=$?
      cp "$logs/ctest-preprocess-gpu.log" "$out/"
      note "preprocess gpu vs cpu: $(grep -E 'tests passed|tests failed' "$logs/ctest-preprocess-gpu.log" | tail -1) (exit $rc), $(elapsed) s"
      [ $rc -ne 0 ] && [ $status = 0 ] && status=2
    else
      note "preprocess gpu vs cpu: skipped, only $t s left"
    fi
  fi
fi

note "exit status $status, $(elapsed) s"
tar -czf "$out/gpu-check.tar.gz" -C "$logs" . 2>/dev/null
echo
cat "$out/summary.txt"
[ -s "$logs/bench.out" ] && cat "$logs/bench.out"
exit $status
