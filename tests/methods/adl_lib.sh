# adl_lib.sh — shared helpers of the diff_adl test scripts (sourced). Needs PP_BIN (build/bin), ADL_CHECK, MPIEXEC,
# DIFFKIT_SOURCE_DIR and DIFFKIT_FIXTURES from ctest. Runs use the repository's configs (DIFFKIT_CONFIG_DIR) with
# overrides: the demo pair as configured, or the tiny random Llama with its LoRA adapter (TINY below).
# tests/preprocess/pp_lib.sh gives WORK (removed at exit), fail, expect_fail, expect_code and h5py_python.
source "$(dirname "${BASH_SOURCE[0]}")/../preprocess/pp_lib.sh"
export DIFFKIT_ROOT="$DIFFKIT_SOURCE_DIR"
FX="$DIFFKIT_FIXTURES"
GOLDEN="$FX/methods/adl"
RESULTS_SUB=diffing_results/demo/demo_glacier_honey/activation_difference_lens
# the tiny model: a random-weight Llama with its own 300-token BPE tokenizer (BOS added) and a LoRA adapter
TINY=(model.model_id="$FX/engine/models/llama_text" model.chat_template=gemma2
      organism.finetuned_models.demo.default.adapter_id="$FX/engine/adapters/llama_lora")
# every run: CPU, no warnings about the seed steps diffkit does not implement yet
COMMON=(device=cpu diffing.method.auto_patch_scope.enabled=false diffing.method.steering.enabled=false
        diffing.method.token_relevance.enabled=false)

# run_adl NRANKS OUT LOG [key=value ...]: diff_adl with results under OUT, through pp_lib.sh's run_ranks (its
# exit-code rule, and RANKS_ULIMIT_F for a file-size limit).
run_adl() {
  local n=$1 out=$2 log=$3; shift 3
  run_ranks "$n" "$log" "$PP_BIN/diff_adl" "${COMMON[@]}" \
    infrastructure.storage.base_dir="$out" "$@"
}

# no_results DIR: nothing under DIR looks complete
no_results() {
  local n; n=$(find "$1" -name 'results.h5' 2>/dev/null | wc -l)
  [ "$n" = 0 ] || { find "$1" -name 'results.h5' >&2; fail "$n results marked complete"; }
}
