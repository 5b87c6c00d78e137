# gpu_check_lib.sh — the build steps of the one-shot GPU check, sourced by tools/gpu_check.sh (on the lent GPU
# machine) and by tools/gpu_check_rehearsal.sh (here, on a simulated bare machine), so that the rehearsal proves
# the very commands the check will run. Run from the repository root, after unpack_debs.sh's environment.
# Timeouts are the GPU machine's (16 cores); the rehearsal raises them for a 2-core machine.
gc_generator=()
command -v ninja >/dev/null 2>&1 && gc_generator=(-G Ninja)
GC_CONFIGURE_TIMEOUT=${GC_CONFIGURE_TIMEOUT:-40}
GC_BUILD_TIMEOUT=${GC_BUILD_TIMEOUT:-200}
GC_FULL_BUILD_TIMEOUT=${GC_FULL_BUILD_TIMEOUT:-300}

# gc_build_engine BUILD_DIR ARCH LOG_DIR: the engine-only configuration (no MPI, HDF5, libcurl) with CUDA for
# one architecture, everything built (GPU tests, bench_forward_cuda). Logs: configure.log, build.log.
gc_build_engine() {
  local dir=$1 arch=$2 logs=$3
  timeout "$GC_CONFIGURE_TIMEOUT" cmake -S . -B "$dir" "${gc_generator[@]}" -DCMAKE_BUILD_TYPE=Release \
      -DDIFFKIT_ENGINE_ONLY=ON -DDIFFKIT_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" > "$logs/configure.log" 2>&1 &&
    timeout "$GC_BUILD_TIMEOUT" cmake --build "$dir" -j "$(nproc)" > "$logs/build.log" 2>&1
}

# gc_build_full BUILD_DIR ARCH LOG_DIR JOBS: the full configuration (MPI, parallel HDF5, libcurl) with CUDA,
# only what the tests preprocess_gpu_vs_cpu and dict_train_cuda_* need (diff_preprocess, pp_store_tool,
# test_dict_train_cuda), at the lowest priority so it
# can run beside the GPU tests. Logs: configure-full.log, build-full.log.
gc_build_full() {
  local dir=$1 arch=$2 logs=$3 jobs=$4
  timeout "$GC_CONFIGURE_TIMEOUT" cmake -S . -B "$dir" "${gc_generator[@]}" -DCMAKE_BUILD_TYPE=Release \
      -DDIFFKIT_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" > "$logs/configure-full.log" 2>&1 &&
    timeout "$GC_FULL_BUILD_TIMEOUT" nice -n 19 cmake --build "$dir" -j "$jobs" --target diff_preprocess pp_store_tool \
      test_dict_train_cuda \
      > "$logs/build-full.log" 2>&1
}
