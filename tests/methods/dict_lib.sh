# dict_lib.sh — shared helpers of the dictionary methods' job tests (sourced): the diff_preprocess test helpers
# (tests/preprocess/pp_lib.sh: WORK, run_pp, expect_fail, ...) plus a configuration tree for the method jobs (the
# tiny test pair's fixtures with the diffing keys and the repository's method configs) and run_job.
# Needs PP_BIN, MPIEXEC, DIFFKIT_FIXTURES, DIFFKIT_SOURCE_DIR and DICT_CHECK (tests/dict_check) from ctest.
source "$(dirname "$0")/../preprocess/pp_lib.sh"
CONFIGS="$WORK/configs"
cp -r "$DIFFKIT_FIXTURES/preprocess/configs" "$CONFIGS"
cat >> "$CONFIGS/config.yaml" <<'YAML'

diffing:
  results_base_dir: ${infrastructure.storage.base_dir}/diffing_results
  results_dir: ${diffing.results_base_dir}/${model.name}/${organism.name}
YAML
echo '  checkpoint_dir: ${infrastructure.storage.base_dir}/checkpoints' >> "$CONFIGS/infrastructure/test.yaml"
ln -s "$DIFFKIT_SOURCE_DIR/configs/diffing" "$CONFIGS/diffing"
RESULTS=diffing_results/tiny/tiny_org

# run_job NRANKS JOB OUTDIR LOG [key=value ...]: like run_pp, for any job of build/bin.
run_job() {
  local n=$1 job=$2 out=$3 log=$4; shift 4
  DK_PP_OUT="$out" "$MPIEXEC" -n "$n" --oversubscribe --mca orte_abort_on_non_zero_status 0 bash -c \
    '"$0" "$@"; rc=$?; echo "rank-exit $rc" >&2; exit $rc' "$PP_BIN/$job" --config-dir "$CONFIGS" "$@" >"$log" 2>&1
  local rc=$? worst
  worst=$(sed -n 's/^rank-exit \([0-9]*\)$/\1/p' "$log" | sort -n | tail -1)
  [ "$rc" != 0 ] && return "$rc"
  [ "$(grep -c '^rank-exit ' "$log")" = "$n" ] || return 99
  return "${worst:-99}"
}

# make_stores OUTDIR: the tiny pair's stores (layers 1 and 2, every dataset, both splits), ~5 s
make_stores() {
  run_pp 2 "$1" "$WORK/pp_$(basename "$1").log" || { cat "$WORK/pp_$(basename "$1").log"; fail "diff_preprocess failed"; }
}
