#!/bin/bash
# Bad input of the dictionary jobs: dict_bad.sh JOB [CASE...] (default: every case, sharing one set of stores).
# Every case: a clear message naming the file, key or value, a non-zero exit on every rank, nothing that looks
# complete (no results.h5).
#   missing        no stores: the message names the diff_preprocess command
#   other_model    the finetuned store was cached from another model (the base model's stores copied in its place)
#   layer          a layer the stores do not hold
#   few_rows       fewer rows than one batch
#   nan            a NaN written into a store after it was made: the run stops, naming store, sequence and token
#   unwritable     the results folder cannot be created
#   other_settings a complete result exists with other settings: refused unless overwrite=true
#   steering       latent/component steering asked for: refused (not implemented yet)
# JOB: diff_pca, diff_sae or diff_crosscoder.
source "$(dirname "$0")/dict_lib.sh"
JOB=$1; shift
CASES=${*:-missing other_model layer few_rows nan unwritable other_settings steering}
case $JOB in
  diff_pca) ARGS=(diffing.method.training.batch_size=256 diffing.method.analysis.max_activating_examples.n_max_activations=3)
            DIR=pca BATCH=diffing.method.training.batch_size STEER=diffing.method.analysis.component_steering.enabled ;;
  diff_sae|diff_crosscoder)
    ARGS=(diffing.method.training.batch_size=256 diffing.method.training.epochs=1 diffing.method.training.k=4
          diffing.method.training.expansion_factor=2 diffing.method.training.k_max=8 diffing.method.training.num_validation_samples=256
          diffing.method.datasets.normalization.subsample_size=256 diffing.method.analysis.latent_activations.max_num_samples=4
          diffing.method.analysis.latent_scaling.num_samples=256)
    [ $JOB = diff_sae ] && ARGS=("${ARGS[@]:0:4}" "${ARGS[@]:5}")   # no k_max for the SAE
    DIR=$([ $JOB = diff_sae ] && echo sae_difference || echo crosscoder)
    BATCH=diffing.method.training.batch_size STEER=diffing.method.analysis.latent_steering.enabled ;;
  *) fail "unknown job $JOB" ;;
esac
no_results() { [ -z "$(find "$1" -name results.h5 2>/dev/null)" ] || fail "a results.h5 was left: $(find "$1" -name results.h5)"; }
make_stores "$WORK/stores"
run_case() {
CASE=$1 O="$WORK/$1"
mkdir -p "$O"
[ "$CASE" = missing ] || cp -r "$WORK/stores/activations" "$O/"
echo "case $CASE"
case $CASE in
  missing)
    run_job 2 $JOB "$O" "$WORK/log" "${ARGS[@]}" && fail "exit 0"
    expect_fail 2 "$WORK/log" "does not exist: make it first with .mpirun -n N diff_preprocess model=tiny organism=tiny_org" ;;
  other_model)
    rm -rf "$O/activations/llama_lora" && cp -r "$O/activations/llama_text" "$O/activations/llama_lora"
    run_job 2 $JOB "$O" "$WORK/log" "${ARGS[@]}" && fail "exit 0"
    expect_fail 2 "$WORK/log" "llama_lora/chat/train.h5 was cached from .*llama_text, not from the organism" ;;
  layer)
    run_job 2 $JOB "$O" "$WORK/log" "${ARGS[@]}" "diffing.method.layers=[0]" && fail "exit 0"
    expect_fail 2 "$WORK/log" "layer_0|layer 0" ;;
  few_rows)
    run_job 2 $JOB "$O" "$WORK/log" "${ARGS[@]}" $BATCH=100000 && fail "exit 0"
    expect_fail 2 "$WORK/log" "fewer than one batch of diffing.method.[a-z_.]*batch_size = 100000" ;;
  nan)
    "$DICT_CHECK" poke "$O/activations/llama_lora/pretrain/train.h5" 1 40 3 0x7fc0 || fail "poke"
    run_job 2 $JOB "$O" "$WORK/log" "${ARGS[@]}" && fail "exit 0"
    expect_fail 2 "$WORK/log" "llama_lora/pretrain/train.h5 holds a non-finite activation \(NaN\) at row 40 \(sequence 0, token 40\) of layer 1" ;;
  unwritable)
    touch "$WORK/file"
    run_job 2 $JOB "$O" "$WORK/log" "${ARGS[@]}" diffing.results_dir="$WORK/file/results" && fail "exit 0"
    expect_fail 2 "$WORK/log" "$WORK/file" ;;
  other_settings)
    run_job 2 $JOB "$O" "$WORK/log1" "${ARGS[@]}" || { cat "$WORK/log1"; fail "first run"; }
    run_job 2 $JOB "$O" "$WORK/log" "${ARGS[@]}" diffing.method.datasets.use_chat_dataset=false && fail "exit 0"
    expect_fail 2 "$WORK/log" "overwrite"
    [ -f "$O/$RESULTS/$DIR/results.h5" ] || fail "the complete result was removed"
    run_job 2 $JOB "$O" "$WORK/log2" "${ARGS[@]}" diffing.method.datasets.use_chat_dataset=false \
      diffing.method.overwrite=true || { cat "$WORK/log2"; fail "overwrite=true was refused"; }
    return 0 ;;
  steering)
    run_job 2 $JOB "$O" "$WORK/log" "${ARGS[@]}" $STEER=true && fail "exit 0"
    expect_fail 2 "$WORK/log" "steering.*is not implemented in diffkit yet" ;;
  *) fail "unknown case $CASE" ;;
esac
no_results "$O"
}
for c in $CASES; do run_case $c; done
echo PASS
