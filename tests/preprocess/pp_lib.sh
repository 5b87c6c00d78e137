# pp_lib.sh — shared helpers of the diff_preprocess test scripts (sourced). Needs PP_BIN (build/bin),
# PP_TOOL (pp_store_tool), MPIEXEC and DIFFKIT_FIXTURES from ctest.
set -u
CONFIGS="$DIFFKIT_FIXTURES/preprocess/configs"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dk_pp_test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

# run_ranks NRANKS LOG PROGRAM [args...]: PROGRAM on NRANKS MPI ranks, output to LOG; each rank prints
# "rank-exit CODE". orte_abort_on_non_zero_status=0: mpiexec waits for every rank instead of killing the others
# when the first exits non-zero (so each rank's own exit code is seen), but then returns 0 itself: the status
# returned here is the largest rank exit code, or mpiexec's when it failed on its own (99: a rank vanished).
# RANKS_ULIMIT_F=N runs the ranks under `ulimit -f N` (Open MPI's shared-memory transport is then left out: its
# files would hit the limit first).
run_ranks() {
  local n=$1 log=$2; shift 2
  local limit="" btl=()
  [ -n "${RANKS_ULIMIT_F:-}" ] && limit="ulimit -f $RANKS_ULIMIT_F;" btl=(--mca btl self,tcp)
  "$MPIEXEC" -n "$n" --oversubscribe "${btl[@]}" --mca orte_abort_on_non_zero_status 0 bash -c \
    "$limit"'"$0" "$@"; rc=$?; echo "rank-exit $rc" >&2; exit $rc' "$@" >"$log" 2>&1
  local rc=$? worst
  worst=$(sed -n 's/^rank-exit \([0-9]*\)$/\1/p' "$log" | sort -n | tail -1)
  [ "$rc" != 0 ] && return "$rc"
  [ "$(grep -c '^rank-exit ' "$log")" = "$n" ] || return 99   # a rank vanished without reporting
  return "${worst:-99}"
}

# run_job NRANKS JOB OUTDIR LOG [key=value ...]: run_ranks for a job (diff_preprocess, diff_kl, ...) with
# --config-dir $CONFIGS and the storage folder OUTDIR (DK_PP_OUT, which the test configs read).
run_job() {
  local n=$1 job=$2 out=$3 log=$4; shift 4
  DK_PP_OUT="$out" run_ranks "$n" "$log" "$PP_BIN/$job" --config-dir "$CONFIGS" "$@"
}

# run_pp NRANKS OUTDIR LOG [key=value ...]: run_job for diff_preprocess
run_pp() {
  local n=$1; shift
  run_job "$n" diff_preprocess "$@"
}

# expect_fail NRANKS LOG REGEX: every rank exited non-zero, the message matches, it is printed once.
expect_fail() {
  local n=$1 log=$2 re=$3
  local bad; bad=$(grep -c '^rank-exit [1-9]' "$log" || true)
  [ "$bad" = "$n" ] || { cat "$log" >&2; fail "expected $n ranks to exit non-zero, got $bad"; }
  grep -Eq "$re" "$log" || { cat "$log" >&2; fail "no message matching /$re/"; }
  local times; times=$(grep -Ec "error: .*($re)" "$log" || true)
  [ "$times" -le 1 ] || { cat "$log" >&2; fail "the message is printed $times times"; }
}

expect_ok() {
  local log=$1
  grep -q '^rank-exit [1-9]' "$log" && { cat "$log" >&2; fail "a rank failed"; }
  grep -qi 'independent' "$log" && { cat "$log" >&2; fail "a write fell back to independent I/O"; }
  return 0
}

# no_complete DIR: no store under DIR is marked complete (final NAME.h5 files exist only when complete)
no_complete() {
  local n; n=$(find "$1" -name '*.h5' 2>/dev/null | wc -l)
  [ "$n" = 0 ] || { find "$1" -name '*.h5' >&2; fail "$n stores marked complete"; }
}

# compare_trees A B: every store under A equals its twin under B
compare_trees() {
  local a=$1 b=$2 n=0
  for f in $(cd "$a" && find . -name '*.h5' | sort); do
    "$PP_TOOL" compare "$a/$f" "$b/$f" >/dev/null || fail "$a/$f differs from $b/$f"
    n=$((n + 1))
  done
  [ "$n" -gt 0 ] || fail "no stores under $a"
  echo "compared $n stores: equal"
}

# h5py_python: prints a python3 that has h5py and numpy, or skips the test (exit 77) when there is none
h5py_python() {
  local p
  for p in /usr/bin/python3 python3; do
    if command -v "$p" >/dev/null && "$p" -c "import h5py, numpy" 2>/dev/null; then echo "$p"; return 0; fi
  done
  echo "SKIP: no python3 with h5py (apt-get install python3-h5py python3-numpy)" >&2
  exit 77
}

# expect_code NRANKS LOG CODE REGEX: expect_fail (every rank failed, the message matches, printed once), and every
# rank exited with CODE (a number, or alternatives such as 1|2)
expect_code() {
  expect_fail "$1" "$2" "$4"
  local got; got=$(grep -Ec "^rank-exit ($3)\$" "$2" || true)
  [ "$got" = "$1" ] || { cat "$2" >&2; fail "expected $1 ranks to exit $3, got $got"; }
}
