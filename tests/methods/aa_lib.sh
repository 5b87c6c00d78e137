# aa_lib.sh — shared helpers of the diff_activation_analysis test scripts (sourced). Needs PP_BIN (build/bin),
# AA_TESTS (build/tests), AA_STORES (the folder aa_stores.sh fills), MPIEXEC, DIFFKIT_SOURCE_DIR and
# DIFFKIT_FIXTURES from ctest. The stores: the demo pair with the overrides of
# tests/fixtures/methods/activation_analysis/stores.args (the fixture's numbers were computed on exactly these),
# or with AA_CASE=tiny the small random model with its adapter (stores_tiny.args, golden_tiny.json, stores in
# ${AA_STORES}_tiny). tests/preprocess/pp_lib.sh gives WORK (removed at exit), fail, expect_fail, expect_code and h5py_python.
source "$(dirname "${BASH_SOURCE[0]}")/../preprocess/pp_lib.sh"
FIX="$DIFFKIT_FIXTURES/methods/activation_analysis"
export DIFFKIT_ROOT="$DIFFKIT_SOURCE_DIR"
case "${AA_CASE:-demo}" in
  demo) SUFFIX="" ;;
  tiny) SUFFIX="_tiny" AA_STORES="${AA_STORES}_tiny" ;;
  *) fail "AA_CASE=$AA_CASE: expected demo or tiny" ;;
esac
GOLDEN="$FIX/golden$SUFFIX.json"
mapfile -t STORE_ARGS < "$FIX/stores$SUFFIX.args"

# results folder of a run whose infrastructure.storage.base_dir is $1
aa_dir() { echo "$1/diffing_results/demo/demo_glacier_honey/activation_analysis"; }

# run_aa NRANKS BASE_DIR LOG [key=value ...]: diff_activation_analysis on the test stores; each rank prints
# "rank-exit CODE"; returns the largest rank exit code (mpiexec waits for every rank, see tests/preprocess).
run_aa() {
  local n=$1 base=$2 log=$3; shift 3
  run_ranks "$n" "$log" "$PP_BIN/diff_activation_analysis" "${STORE_ARGS[@]}" \
    "preprocessing.activation_store_dir=$AA_STORES" "infrastructure.storage.base_dir=$base" "$@"
}

# same_results A B: two results folders hold the same results (HDF5 objects and attributes, JSON files), apart
# from the run's own record (the resolved configuration names the folder; the root attributes say when and on
# how many ranks)
same_results() {
  local a=$1 b=$2
  h5diff --exclude-path /config_yaml --exclude-attribute / "$a/results.h5" "$b/results.h5" >"$WORK/h5diff.txt" 2>&1 ||
    { head -40 "$WORK/h5diff.txt" >&2; fail "$a/results.h5 and $b/results.h5 differ"; }
  diff -r --exclude=results.h5 "$a" "$b" >&2 || fail "the JSON files of $a and $b differ"
}
