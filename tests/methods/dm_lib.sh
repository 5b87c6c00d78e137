# dm_lib.sh — shared helpers of the diff_mining test scripts (sourced). Builds on tests/preprocess/pp_lib.sh
# (WORK, fail, expect_fail, expect_ok, no_complete). Needs from ctest: PP_BIN (build/bin), DM_CHECK
# (dm_golden_check), MPIEXEC, DIFFKIT_FIXTURES, DIFFKIT_SOURCE_DIR.
. "$DIFFKIT_SOURCE_DIR/tests/preprocess/pp_lib.sh"
export DIFFKIT_ROOT="$DIFFKIT_SOURCE_DIR"
CASES="$DIFFKIT_FIXTURES/methods/diff_mining"

# The repository's configs plus the tiny test pair of the preprocess fixtures (model tiny, organism tiny_org).
DM_CONFIGS="$WORK/configs"
cp -r "$DIFFKIT_SOURCE_DIR/configs" "$DM_CONFIGS"
for g in model organism dataset infrastructure; do cp "$DIFFKIT_FIXTURES/preprocess/configs/$g/"*.yaml "$DM_CONFIGS/$g/"; done

# pair_args CASE: the command-line choices of a fixture case's model pair
pair_args() {
  case "$1" in
    tiny*) echo "model=tiny organism=tiny_org dataset=tiny infrastructure=test" ;;
    *) echo "" ;;
  esac
}

# run_dm NRANKS OUTDIR LOG [key=value ...]: runs diff_mining with results under OUTDIR; each rank prints
# "rank-exit CODE" (see run_pp in pp_lib.sh); returns the largest rank exit code.
run_dm() {
  local n=$1 out=$2 log=$3; shift 3
  run_ranks "$n" "$log" "$PP_BIN/diff_mining" --config-dir "$DM_CONFIGS" device=cpu threads=1 \
    infrastructure.storage.base_dir="$out" "$@"
}

# case_overrides CASE: the fixture's settings, one argument per line of overrides.txt
case_overrides() { mapfile -t OV < "$CASES/$1/overrides.txt"; }

# run_dir OUTDIR: the run folder diff_mining made under OUTDIR
run_dir() { find "$1" -type d -name 'seed*_top*' | head -1; }
