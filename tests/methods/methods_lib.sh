# methods_lib.sh — shared helpers of the method job tests (sourced): pp_lib.sh's runner and checks, plus a
# configuration tree in $WORK/configs made of the diff_preprocess test fixtures (model tiny: the random Llama with
# its own tokenizer; organism tiny_org: its LoRA adapter; tiny chat / pretraining / organism datasets) and the
# repository's configs/diffing/ (the methods' settings, as users get them). Needs what pp_lib.sh needs, and
# RESULTS_TOOL (tests/results_tool).
source "$(dirname "${BASH_SOURCE[0]}")/../preprocess/pp_lib.sh"
CONFIGS="$WORK/configs"
mkdir -p "$CONFIGS"
cp -r "$DIFFKIT_FIXTURES/preprocess/configs/." "$CONFIGS/"
cp -r "$DIFFKIT_SOURCE_DIR/configs/diffing" "$CONFIGS/"
cat >> "$CONFIGS/config.yaml" <<'YAML'

diffing:
  results_base_dir: ${infrastructure.storage.base_dir}/diffing_results
  results_dir: ${diffing.results_base_dir}/${model.name}/${organism.name}
YAML
METHOD_FIXTURES="$DIFFKIT_FIXTURES/methods"

# make_stores OUTDIR [key=value ...]: the activation stores of the test datasets under OUTDIR (1 rank)
make_stores() {
  local out=$1; shift
  run_pp 1 "$out" "$WORK/stores.log" "$@" || { cat "$WORK/stores.log"; fail "diff_preprocess failed"; }
}

# results_of OUTDIR METHOD_DIR: the results file a method job writes under OUTDIR
results_of() { echo "$1/diffing_results/tiny/tiny_org/$2/results.h5"; }
