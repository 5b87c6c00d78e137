#!/bin/bash
# aa_bad_input.sh CASE: bad inputs of diff_activation_analysis give a clear message naming what to do, the same
# non-zero exit on every rank, printed once, and nothing that looks complete.
#   missing_store | other_model | missing_layer | no_sequence | unwritable | other_settings | killed
source "$(dirname "$0")/aa_lib.sh"
out="$WORK/o"
dir=$(aa_dir "$out")
no_results() { [ ! -e "$dir/results.h5" ] || fail "a results.h5 exists after a failed run"; }
case $1 in
  missing_store)   # names the diff_preprocess command that makes the store
    mkdir -p "$WORK/empty"
    run_aa 2 "$out" "$WORK/log" "preprocessing.activation_store_dir=$WORK/empty" && fail "ran without stores"
    expect_code 2 "$WORK/log" 2 "does not exist: make it first with .mpirun -n N diff_preprocess model=demo organism=demo_glacier_honey"
    no_results ;;
  other_model)     # the base store was made by the organism (an adapter): refused, naming both
    cp -rs "$AA_STORES" "$WORK/acts"
    ln -sf "$AA_STORES/glacier_honey/pretrain/train.h5" "$WORK/acts/base/pretrain/train.h5"
    run_aa 2 "$out" "$WORK/log" "preprocessing.activation_store_dir=$WORK/acts" && fail "ran on a store of another model"
    expect_code 2 "$WORK/log" 2 "pretrain/train.h5 was cached from .* \+ adapter .*glacier_honey, not from the base model"
    no_results ;;
  missing_layer)   # a layer the stores do not hold: names the layers they have
    run_aa 2 "$out" "$WORK/log" "preprocessing.layers=[2]" && fail "ran on a layer not in the store"
    expect_code 2 "$WORK/log" 2 "holds no layer 2 \(layers present: 1, 3\): set preprocessing.layers"
    no_results ;;
  no_sequence)     # nothing long enough once the first n positions are skipped
    run_aa 2 "$out" "$WORK/log" model.ignore_first_n_tokens_per_sample_during_training=5000 && fail "ran with nothing to analyse"
    expect_code 2 "$WORK/log" 2 "no sequence of at least 5001 tokens among the first"
    no_results ;;
  unwritable)      # the results folder cannot be made
    touch "$WORK/file"
    run_aa 2 "$out" "$WORK/log" "diffing.results_base_dir=$WORK/file/results" && fail "ran into an unwritable folder"
    expect_code 2 "$WORK/log" 1 "cannot create folder $WORK/file/results"
    [ -z "$(find "$WORK" -name 'results.h5*')" ] || fail "a results file was left" ;;
  other_settings)  # complete results of other settings: refused without overwrite, replaced with it
    run_aa 2 "$out" "$WORK/log1" diffing.method.overwrite=false diffing.method.method_params.max_samples=10 ||
      { cat "$WORK/log1"; fail "first run failed"; }
    cp "$dir/results.h5" "$WORK/first.h5"
    run_aa 2 "$out" "$WORK/log2" diffing.method.overwrite=false diffing.method.method_params.max_samples=12 &&
      fail "other settings replaced complete results without overwrite"
    expect_code 2 "$WORK/log2" 2 "refusing to replace .*results.h5: it holds results of other inputs .*max_samples: 10.*max_samples: 12"
    cmp -s "$dir/results.h5" "$WORK/first.h5" || fail "the refused run changed results.h5"
    run_aa 2 "$out" "$WORK/log3" diffing.method.overwrite=false diffing.method.method_params.max_samples=10 ||
      { cat "$WORK/log3"; fail "the same settings were not reused"; }
    grep -q "is complete with the same inputs" "$WORK/log3" || { cat "$WORK/log3"; fail "the same settings were recomputed"; }
    run_aa 2 "$out" "$WORK/log4" diffing.method.overwrite=true diffing.method.method_params.max_samples=12 ||
      { cat "$WORK/log4"; fail "overwrite=true did not replace"; }
    cmp -s "$dir/results.h5" "$WORK/first.h5" && fail "overwrite=true left the old results" ;;
  killed)          # SIGKILL of rank 0 mid-run (test hook, after the first dataset and layer is written): only a
                   # .partial is left; the rerun starts over and gives what an uninterrupted run gives
    # plain mpiexec (not run_aa): a rank killed by a signal must bring the job down, as in production
    DIFFKIT_TEST_KILL_AFTER_LAYERS=1 "$MPIEXEC" -n 2 --oversubscribe "$PP_BIN/diff_activation_analysis" "${STORE_ARGS[@]}" \
      "preprocessing.activation_store_dir=$AA_STORES" "infrastructure.storage.base_dir=$out" >"$WORK/log1" 2>&1 &&
      fail "the killed run exited 0"
    grep -q "test hook: killing rank 0" "$WORK/log1" || { cat "$WORK/log1"; fail "the test hook did not fire"; }
    no_results
    [ -e "$dir/results.h5.partial" ] || fail "no .partial after the kill"
    run_aa 2 "$out" "$WORK/log2" || { cat "$WORK/log2"; fail "the rerun failed"; }
    [ ! -e "$dir/results.h5.partial" ] || fail "the rerun left the .partial"
    run_aa 1 "$WORK/ref" "$WORK/log3" || { cat "$WORK/log3"; fail "the reference run failed"; }
    same_results "$(aa_dir "$WORK/ref")" "$dir" ;;
  *) fail "unknown case $1" ;;
esac
echo "PASS: $1"
