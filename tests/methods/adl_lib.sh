# adl_lib.sh — shared helpers of the diff_adl test scripts (sourced). Needs DK_BIN (build/bin), ADL_CHECK, MPIEXEC,
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

# run_adl NRANKS OUT LOG [key=value ...]: diff_adl with results under OUT; each rank prints "rank-exit CODE". Returns
# the largest rank exit code (see tests/preprocess/pp_lib.sh for the mpiexec options).
# ADL_ULIMIT_F=N: the ranks run under `ulimit -f N` (Open MPI's shared-memory transport is then left out: its
# files would hit the limit first).
run_adl() {
  local n=$1 out=$2 log=$3; shift 3
  local limit="" btl=()
  [ -n "${ADL_ULIMIT_F:-}" ] && limit="ulimit -f $ADL_ULIMIT_F;" btl=(--mca btl self,tcp)
  "$MPIEXEC" -n "$n" --oversubscribe "${btl[@]}" --mca orte_abort_on_non_zero_status 0 bash -c \
    "$limit"'"$0" "$@"; rc=$?; echo "rank-exit $rc" >&2; exit $rc' "$DK_BIN/diff_adl" "${COMMON[@]}" \
    infrastructure.storage.base_dir="$out" "$@" >"$log" 2>&1
  local rc=$? worst
  worst=$(sed -n 's/^rank-exit \([0-9]*\)$/\1/p' "$log" | sort -n | tail -1)
  [ "$rc" != 0 ] && return "$rc"
  [ "$(grep -c '^rank-exit ' "$log")" = "$n" ] || return 99
  return "${worst:-99}"
}

# no_results DIR: nothing under DIR looks complete
no_results() {
  local n; n=$(find "$1" -name 'results.h5' 2>/dev/null | wc -l)
  [ "$n" = 0 ] || { find "$1" -name 'results.h5' >&2; fail "$n results marked complete"; }
}
