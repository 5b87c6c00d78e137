#!/bin/bash
# dict_jobs.sh CASE — diff_sae and diff_crosscoder end to end on the tiny test pair's stores (d 64; small
# dictionaries, a few dozen steps; methods_lib.sh's configuration tree):
#   ranks_sae, ranks_crosscoder  1, 2 and 3 ranks train the same dictionary (weights within 1e-5 relative: only
#                                the order of the fp32 gradient sums differs) and the same metrics
#   resume                       a run killed (SIGKILL) after its first checkpoint resumes from it and ends with the
#                                weights of an uninterrupted run, bit for bit; the checkpoint of other settings is
#                                refused (exit 2, naming the file) unless training.overwrite=true
#   outputs                      the results file holds the dictionary, normaliser, loss curve, metrics and the
#                                seed's training_metrics.json; a rerun reuses the complete results
source "$(dirname "$0")/dict_lib.sh"
OUT="$WORK/out"
make_stores "$OUT"
SMALL=(diffing.method.training.batch_size=64 diffing.method.training.num_validation_samples=256
       diffing.method.training.validate_every_n_steps=10 diffing.method.training.max_steps=30
       diffing.method.optimization.warmup_steps=5 diffing.method.training.threshold_start_step=5
       diffing.method.training.dead_feature_threshold=512 diffing.method.datasets.normalization.subsample_size=512
       diffing.method.analysis.latent_activations.max_num_samples=8
       diffing.method.analysis.latent_activations.n_max_activations=3
       diffing.method.analysis.latent_scaling.num_samples=512)
SAE=("${SMALL[@]}" diffing.method.training.k=4 diffing.method.training.expansion_factor=2 diffing.method.training.lr=1e-3)
CC=("${SMALL[@]}" diffing.method.training.k=4 diffing.method.training.k_max=16 diffing.method.training.k_annealing_steps=10
    diffing.method.training.expansion_factor=2 diffing.method.training.lr=1e-3)
res() { echo "$1/diffing_results/tiny/tiny_org/$2/results.h5"; }

case "$1" in
ranks_sae|ranks_crosscoder)
  job=diff_sae dir=sae_difference args=("${SAE[@]}")
  [ "$1" = ranks_crosscoder ] && job=diff_crosscoder dir=crosscoder args=("${CC[@]}")
  for n in 1 2 3; do
    run_job "$n" $job "$OUT" "$WORK/r$n.log" "${args[@]}" diffing.results_base_dir="$WORK/res$n" \
      infrastructure.storage.checkpoint_dir="$WORK/ck$n" || { cat "$WORK/r$n.log"; fail "$job on $n ranks failed"; }
  done
  R1="$WORK/res1/tiny/tiny_org/$dir/results.h5"
  for n in 2 3; do
    "$DICT_CHECK" same "$WORK/res$n/tiny/tiny_org/$dir/results.h5" "$R1" 1e-5 1e-7 layer_1 layer_2 \
      || fail "$job: $n ranks differ from 1"
  done
  grep -q "validation FVE" "$WORK/r1.log" || fail "no validation line in the log"
  grep -E "validation FVE|CE loss" "$WORK/r1.log"
  ;;
resume)
  run_job 1 diff_sae "$OUT" "$WORK/full.log" "${SAE[@]}" diffing.results_base_dir="$WORK/full" \
    infrastructure.storage.checkpoint_dir="$WORK/ckfull" || { cat "$WORK/full.log"; fail "uninterrupted run failed"; }
  # the killed run: SIGKILL as soon as the first checkpoint of the first layer is in place
  ck="$WORK/ck"
  DK_PP_OUT="$OUT" "$PP_BIN/diff_sae" --config-dir "$CONFIGS" "${SAE[@]}" diffing.results_base_dir="$WORK/killed" \
    infrastructure.storage.checkpoint_dir="$ck" >"$WORK/killed.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do
    [ -n "$(find "$ck" -name '*.h5' 2>/dev/null)" ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.05
  done
  kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
  [ -n "$(find "$ck" -name '*.h5')" ] || { cat "$WORK/killed.log"; fail "no checkpoint appeared before the run ended"; }
  [ -e "$(res "$WORK/killed" sae_difference)" ] && fail "the killed run left a complete results.h5"
  run_job 1 diff_sae "$OUT" "$WORK/resumed.log" "${SAE[@]}" diffing.results_base_dir="$WORK/killed" \
    infrastructure.storage.checkpoint_dir="$ck" || { cat "$WORK/resumed.log"; fail "the resumed run failed"; }
  grep -q "resuming from" "$WORK/resumed.log" || { cat "$WORK/resumed.log"; fail "the rerun did not resume"; }
  "$DICT_CHECK" same "$WORK/killed/tiny/tiny_org/sae_difference/results.h5" \
    "$WORK/full/tiny/tiny_org/sae_difference/results.h5" 0 0 layer_1 layer_2 || fail "resumed weights differ"
  # a checkpoint of other settings
  run_job 1 diff_sae "$OUT" "$WORK/other.log" "${SAE[@]}" diffing.method.optimization.warmup_steps=6 \
    diffing.results_base_dir="$WORK/other" infrastructure.storage.checkpoint_dir="$ck" && fail "other settings: exit 0"
  grep -q "checkpoint of other settings" "$WORK/other.log" || { cat "$WORK/other.log"; fail "no clear refusal"; }
  ;;
outputs)
  run_job 2 diff_crosscoder "$OUT" "$WORK/cc.log" "${CC[@]}" || { cat "$WORK/cc.log"; fail "diff_crosscoder failed"; }
  R=$(res "$OUT" crosscoder)
  run=$(ls "$(dirname "$R")/layer_1")
  case "$run" in tiny-tiny_org-L1-Crosscoder-t100-k4-lr1e-03-x2) ;; *) fail "run name $run";; esac
  for ds in dictionary/encoder.weight dictionary/decoder.weight dictionary/decoder.bias normalizer/mean training/loss; do
    "$RESULTS_TOOL" dump "$R" "layer_1/$run/$ds" > /dev/null || fail "no $ds"
  done
  tm="$(dirname "$R")/layer_1/$run/training_metrics.json"
  grep -q '"frac_variance_explained"' "$tm" || fail "training_metrics.json lacks the metrics"
  grep -q 'batch-top-k-crosscoder' "$tm" || fail "training_metrics.json lacks model_type"
  run_job 2 diff_crosscoder "$OUT" "$WORK/cc2.log" "${CC[@]}" || fail "rerun failed"
  grep -q "nothing to do" "$WORK/cc2.log" || fail "the rerun did not reuse the results"
  ;;
*) fail "unknown case $1" ;;
esac
echo PASS
