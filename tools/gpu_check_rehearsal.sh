#!/usr/bin/env bash
# gpu_check_rehearsal.sh — proves, on this machine, that `make gpu-check` will get past configure and build on a
# lent GPU machine, which has CUDA, cmake and python3 but none of our C libraries. A GPU machine is lent rarely
# and briefly; a check that dies at configure wastes the whole chance, and nothing short of a bare machine shows
# it. So this script simulates one, for each package set of tools/prepare_debs.sh (core, full):
#   1. downloads the package set (apt-get download; exit 77 = skipped when apt cannot download),
#   2. in a private mount namespace (unshare -m; root), hides the machine's own copies of every header, program,
#      .pc and CMake file the carried packages contain (an empty file is bound over each), so a build that
#      silently uses the system's copy fails here as it would fail there; without a namespace (not root, no
#      unshare) it says so and relies on the checks of step 5 alone,
#   3. unpacks the packages into a temporary prefix with tools/unpack_debs.sh (PKG_CONFIG_LIBDIR names only the
#      prefix, the prefix's own pkg-config is first on PATH),
#   4. runs the configure and build steps of tools/gpu_check.sh itself (tools/gpu_check_lib.sh; CUDA on, sm_90):
#      the engine-only build for both sets, and the full build of diff_preprocess (and test_dict_train_cuda) for
#      the full set,
#   5. checks the result:
#      - no build file names a system path that belongs to a carried package (e.g. -I/usr/include/cjson),
#      - every library the built programs load resolves into the prefix, the CUDA toolkit, or the few libraries
#        every Debian/Ubuntu system has (glibc, libstdc++, libgcc_s, and those of dpkg/bash: zlib, zstd, ...),
#      - the GPU tests start and skip (no GPU here) instead of failing to load,
#      - full set: the relocated Open MPI launches diff_preprocess on 2 ranks (CPU) and it writes its stores.
#   usage: bash tools/gpu_check_rehearsal.sh [core|full|both] [WORK_DIR]
#   exit: 0 every set passed, 1 a set failed (the lines above say which step, logs in WORK_DIR), 77 skipped.
# ctest runs it (label gpu-rehearsal). It takes a few minutes on 2 cores (two CUDA builds and one full build).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# --- inner part: runs inside the namespace (or plainly), for one set -----------------------------------------
if [ "${1:-}" = --inner ]; then
  set_=$2 d=$3 hide=$4
  fail() { echo "REHEARSAL FAILED ($set_): $*"; exit 1; }
  if [ "$hide" = 1 ]; then
    mount --make-rprivate / || fail "mount --make-rprivate / failed inside the namespace"
    : > "$d/empty"
    n=0
    while read -r p; do
      mount --bind "$d/empty" "$p" 2>/dev/null && n=$((n + 1))
    done < "$d/hide.txt"
    echo "hid $n of the machine's own files that the $set_ packages also carry"
  fi
  eval "$(bash tools/unpack_debs.sh "$d/debs" "$d/prefix")" || fail "unpack_debs.sh"
  prefix=$d/prefix
  echo "pkg-config: $(command -v pkg-config)"
  case "$(command -v pkg-config)" in "$prefix"/*) ;; *) fail "pkg-config is not the prefix's own";; esac
  # shellcheck source=tools/gpu_check_lib.sh
  source tools/gpu_check_lib.sh
  GC_CONFIGURE_TIMEOUT=300 GC_BUILD_TIMEOUT=1500 GC_FULL_BUILD_TIMEOUT=1500
  mkdir -p "$d/logs"

  # carried_paths: every path a carried package contains, minus the folders every system has
  dpkg_paths() { for f in "$d"/debs/*.deb; do dpkg-deb -c "$f"; done | awk '{print $6}' | sed 's|^\.||; s|/$||'; }
  dpkg_paths | grep -vxE '/usr(/(bin|sbin|include|include/x86_64-linux-gnu|lib|lib/x86_64-linux-gnu|lib/x86_64-linux-gnu/pkgconfig|share|share/pkgconfig|share/doc|share/man|share/lintian|share/lintian/overrides))?|' \
    | sort -u > "$d/carried.txt"
  # check_build DIR: no build file names a system path of a carried package
  check_build() {
    local leaks
    leaks=$(cat "$1/build.ninja" "$1/CMakeCache.txt" 2>/dev/null | tr ' ;"=,:\t' '\n' | sed 's/^-[IL]//' \
              | grep '^/usr/' | sed 's|/$||' | sort -u | comm -12 - "$d/carried.txt")
    [ -z "$leaks" ] || fail "$1 names the machine's own copy of carried files: $(echo $leaks)"
  }
  # check_loads BINARY...: every library resolves into the prefix, the CUDA toolkit or the base system
  base='^(linux-vdso|ld-linux-x86-64|libc|libm|libdl|libpthread|librt|libresolv|libstdc\+\+|libgcc_s|libz|libzstd|liblzma|libbz2|libselinux|libpcre2-8|libacl|libattr|libmd|libtinfo|libcrypt)\.so'
  cuda_root=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)")")")
  check_loads() {
    local b name path bad=""
    for b in "$@"; do
      [ -x "$b" ] || fail "$b was not built"
      while read -r name path; do
        [ "$path" = not ] && { bad="$bad $name(not found)"; continue; }
        case "$path" in "$prefix"/*|"$cuda_root"/*|/usr/local/cuda*/*|/usr/local/lib/libcuda*) continue;; esac
        [[ "$name" =~ $base ]] || bad="$bad $name($path)"
      done < <(ldd "$b" | awk '/=>/ {print $1, $3}')
    done
    bad=$(printf '%s\n' $bad | sort -u | tr '\n' ' ')
    [ -z "${bad// /}" ] || fail "libraries the GPU machine would lack (add their packages to tools/prepare_debs.sh):$bad"
  }

  t0=$(date +%s)
  if ! gc_build_engine "$d/build-gpu" 90 "$d/logs"; then
    tail -n 25 "$d/logs/configure.log" "$d/logs/build.log" 2>/dev/null
    fail "engine configure/build, as gpu_check.sh runs it (logs: $d/logs/configure.log, build.log)"
  fi
  echo "engine build (sm_90): ok, $(( $(date +%s) - t0 )) s"
  check_build "$d/build-gpu"
  check_loads "$d/build-gpu/tests/test_kernels_cuda" "$d/build-gpu/tests/test_forward_cuda" \
              "$d/build-gpu/tests/bench_forward_cuda" "$d/build-gpu/bin/diffkit"
  (cd "$d/build-gpu" && ctest -L gpu --timeout 100) > "$d/logs/ctest-gpu.log" 2>&1 \
    || { tail -n 20 "$d/logs/ctest-gpu.log"; fail "the GPU tests did not start and skip (ctest-gpu.log)"; }
  echo "engine: no system copies named, every library found, GPU tests start ($(grep -c 'Skipped\|Passed' "$d/logs/ctest-gpu.log") ran)"

  if [ "$set_" = full ]; then
    t0=$(date +%s)
    if ! gc_build_full "$d/build-gpu-full" 90 "$d/logs" "$(nproc)"; then
      tail -n 25 "$d/logs/configure-full.log" "$d/logs/build-full.log" 2>/dev/null
      fail "full configure/build, as gpu_check.sh step 3b runs it (logs: $d/logs/configure-full.log, build-full.log)"
    fi
    echo "full build (diff_preprocess, pp_store_tool, test_dict_train_cuda): ok, $(( $(date +%s) - t0 )) s"
    check_build "$d/build-gpu-full"
    check_loads "$d/build-gpu-full/bin/diff_preprocess" "$d/build-gpu-full/tests/pp_store_tool" \
      "$d/build-gpu-full/tests/test_dict_train_cuda"
    mpiexec=$(sed -n 's/^MPIEXEC_EXECUTABLE:[A-Z]*=//p' "$d/build-gpu-full/CMakeCache.txt")
    case "$mpiexec" in "$prefix"/*) ;; *) fail "CMake chose mpiexec $mpiexec, not the prefix's";; esac
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 DIFFKIT_ROOT=$root
    "$mpiexec" -n 2 --oversubscribe "$d/build-gpu-full/bin/diff_preprocess" --config-dir "$root/configs" \
      model=demo organism=demo_glacier_honey dataset=demo device=cpu preprocessing.training_only=true \
      preprocessing.max_samples_per_dataset=8 preprocessing.max_tokens_per_dataset_train=1200 \
      preprocessing.max_tokens_per_dataset_validation=400 preprocessing.batch_size=4 \
      preprocessing.activation_store_dir="$d/stores" > "$d/logs/preprocess.log" 2>&1 \
      || { tail -n 20 "$d/logs/preprocess.log"; fail "mpiexec -n 2 diff_preprocess with the prefix's Open MPI (preprocess.log)"; }
    n=$(find "$d/stores" -name '*.h5' | wc -l)
    [ "$n" -ge 4 ] || fail "diff_preprocess wrote $n stores, expected at least 4 (preprocess.log)"
    echo "full: relocated Open MPI ran diff_preprocess on 2 ranks, $n stores written"
  fi
  echo "REHEARSAL PASSED ($set_)"
  exit 0
fi

# --- outer part -------------------------------------------------------------------------------------------------
sets=${1:-both}
[ "$sets" = both ] && sets="core full"
for s in $sets; do
  case "$s" in core|full) ;; *) echo "gpu_check_rehearsal.sh: package set \"$s\": expected core, full or both" >&2; exit 2;; esac
done
if ! command -v nvcc >/dev/null 2>&1 && [ ! -x /usr/local/cuda/bin/nvcc ]; then
  echo "SKIP: no CUDA toolkit here (nvcc); the GPU check builds with CUDA"; exit 77
fi
command -v dpkg-deb >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 || { echo "SKIP: not a Debian/Ubuntu system"; exit 77; }
if [ -n "${2:-}" ]; then work=$2; mkdir -p "$work"; else
  work=$(mktemp -d "${TMPDIR:-/tmp}/dk_gpu_rehearsal.XXXXXX"); trap 'rm -rf "$work"' EXIT
fi
work=$(cd "$work" && pwd)
hide=0
if [ "$(id -u)" = 0 ] && unshare -m true 2>/dev/null; then hide=1; else
  echo "NOTE: no private mount namespace (needs root and unshare -m): the machine's own copies of the packages' files" \
       "stay visible; only the build-file and library checks guard against using them"
fi
failed=""
for s in $sets; do
  d=$work/$s
  rm -rf "$d"; mkdir -p "$d"
  echo "== rehearsal: package set $s"
  if ! bash tools/prepare_debs.sh "$d/debs" "$s"; then
    echo "SKIP: apt could not download the $s package set (no package list or no network)"; exit 77
  fi
  # the machine's own copies of what the packages carry: headers, programs, .pc and CMake files
  for f in "$d"/debs/*.deb; do dpkg-deb -c "$f"; done | awk '{print $6}' | sed 's|^\.||' \
    | grep -E '^/usr/include/.*[^/]$|^/usr/bin/.*[^/]$|\.pc$|/cmake/.*[^/]$' | sort -u \
    | while read -r p; do [ -e "$p" ] && echo "$p"; done > "$d/hide.txt"
  if [ "$hide" = 1 ]; then
    unshare -m bash "$0" --inner "$s" "$d" 1
  else
    bash "$0" --inner "$s" "$d" 0
  fi || failed="$failed $s"
done
[ -z "$failed" ] || { echo "gpu_check_rehearsal: FAILED for:$failed (logs in $work)"; exit 1; }
echo "gpu_check_rehearsal: passed for $sets"
