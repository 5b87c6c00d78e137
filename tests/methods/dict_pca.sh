#!/bin/bash
# diff_pca on the tiny test pair: the results equal tools/make_dict_goldens.py pca-job (scikit-learn's
# IncrementalPCA on the same difference rows in the same order, batches of 256, and torchdr's projections for
# the max-activating tables), and 1, 2 and 3 ranks give the same results (fp64 merge: 1e-6 relative).
source "$(dirname "$0")/dict_lib.sh"
make_stores "$WORK/o"
for n in 1 2 3; do
  out="$WORK/o"
  [ $n = 1 ] || { out="$WORK/o$n"; mkdir -p "$out"; cp -r "$WORK/o/activations" "$out/"; }
  run_job $n diff_pca "$out" "$WORK/pca$n.log" diffing.method.training.batch_size=256 \
    diffing.method.analysis.max_activating_examples.n_max_activations=5 || { cat "$WORK/pca$n.log"; fail "diff_pca on $n ranks"; }
done
R=$RESULTS/pca/results.h5
G=layer_1/difference_ftb/all_datasets
"$DICT_CHECK" pca "$WORK/o/$R" "$DIFFKIT_FIXTURES/methods/dict/pca_job_golden.safetensors" $G || fail "differs from the golden"
for n in 2 3; do
  "$DICT_CHECK" same "$WORK/o$n/$R" "$WORK/o/$R" 1e-6 1e-9 layer_1 layer_2 || fail "$n ranks differ from 1"
done
[ -f "$WORK/o/$RESULTS/pca/$G/training_metrics.json" ] && [ -f "$WORK/o/$RESULTS/pca/$G/analysis/variance_analysis.json" ] \
  || fail "the seed's JSON files are missing"
grep -q '"total_variance_explained"' "$WORK/o/$RESULTS/pca/summary.json" || fail "no summary"
echo PASS
