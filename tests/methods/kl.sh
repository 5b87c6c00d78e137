#!/bin/bash
# kl.sh CASE — diff_kl on the test fixtures (tiny random Llama + LoRA adapter, tiny datasets; methods_lib.sh).
#   golden     per-token KL of every dataset against tools/ref_kl.py (transformers fp32 eager + peft, the seed's
#              formula) within 1e-4 relative, on the same token sequences (checked too); the seed's JSON and the
#              summary are there; statistics agree with the per-token values
#   ranks      1, 2 and 3 ranks write identical results files (every dataset, byte for byte)
#   lifecycle  a rerun reuses complete results; other settings are refused (exit 2, naming the difference) unless
#              diffing.method.overwrite=true; a run killed (SIGKILL) before its commit leaves no results.h5, and
#              the rerun removes its partial file and completes
#   bad_input  missing stores name the diff_preprocess command; a store of another model is refused; a layer the
#              stores lack; an unwritable results folder; no dataset selected; a bad setting; stores without
#              their tokens (store_tokens=false) or without leading tokens (ignore_first_n_tokens...) refused
source "$(dirname "$0")/methods_lib.sh"
OUT="$WORK/out"
make_stores "$OUT"
RES=$(results_of "$OUT" kl)
GOLD="$METHOD_FIXTURES/kl"

case "$1" in
golden)
  run_job 1 diff_kl "$OUT" "$WORK/kl.log" || { cat "$WORK/kl.log"; fail "diff_kl failed"; }
  for ds in chat pretrain org; do
    "$RESULTS_TOOL" dump "$RES" "$ds/tokens" > "$WORK/$ds.tokens.txt" || fail "no tokens for $ds"
    cmp -s "$WORK/$ds.tokens.txt" "$GOLD/$ds.tokens.txt" || fail "$ds: diff_kl ran other sequences than the golden"
    "$RESULTS_TOOL" close "$RES" "$ds/per_token_kl" "$GOLD/$ds.per_token_kl.txt" 1e-4 || fail "$ds: per-token KL"
    [ -s "$(dirname "$RES")/$ds.json" ] || fail "no kl/$ds.json"
    grep -q '"per_token_statistics"' "$(dirname "$RES")/$ds.json" || fail "$ds.json lacks per_token_statistics"
  done
  # the statistics are the values' statistics: the mean of the JSON equals the mean of the golden values
  want=$(awk '{s += $1} END {printf "%.6g", s / NR}' "$GOLD/org.per_token_kl.txt")
  got=$(sed -n 's/.*"mean":[[:space:]]*\([0-9.e+-]*\).*/\1/p' "$(dirname "$RES")/org.json" | head -1)
  awk -v a="$got" -v b="$want" 'BEGIN {exit !(a - b < 1e-4 * b && b - a < 1e-4 * b)}' \
    || fail "org.json mean $got, golden mean $want"
  grep -q '"top_mean_kl_examples"' "$(dirname "$RES")/summary.json" || fail "summary.json lacks the examples"
  ;;
ranks)
  for n in 1 2 3; do
    run_job "$n" diff_kl "$OUT" "$WORK/kl$n.log" diffing.results_base_dir="$WORK/res$n" \
      || { cat "$WORK/kl$n.log"; fail "diff_kl on $n ranks failed"; }
  done
  for n in 2 3; do
    "$RESULTS_TOOL" equal "$WORK/res1/tiny/tiny_org/kl/results.h5" "$WORK/res$n/tiny/tiny_org/kl/results.h5" \
      || fail "$n ranks give other results than 1"
  done
  ;;
lifecycle)
  run_job 2 diff_kl "$OUT" "$WORK/a.log" || { cat "$WORK/a.log"; fail "diff_kl failed"; }
  run_job 2 diff_kl "$OUT" "$WORK/b.log" || { cat "$WORK/b.log"; fail "the rerun failed"; }
  grep -q "nothing to do" "$WORK/b.log" || { cat "$WORK/b.log"; fail "the rerun did not reuse the results"; }
  run_job 2 diff_kl "$OUT" "$WORK/c.log" diffing.method.method_params.max_samples=3 && fail "other settings accepted"
  expect_fail 2 "$WORK/c.log" "refusing to replace .*results.h5.*max_samples: 10000.*max_samples: 3.*overwrite=true"
  grep -q '^rank-exit 2' "$WORK/c.log" || fail "the refusal is not a usage error (exit 2)"
  run_job 2 diff_kl "$OUT" "$WORK/d.log" diffing.method.method_params.max_samples=3 diffing.method.overwrite=true \
    || { cat "$WORK/d.log"; fail "overwrite=true did not recompute"; }
  [ "$("$RESULTS_TOOL" dump "$RES" org/mean_per_sample_kl | wc -l)" = 3 ] || fail "the overwrite kept the old results"
  # killed before its commit: nothing complete-looking stays, the rerun cleans up and completes
  rm -rf "$(dirname "$RES")"
  DIFFKIT_TEST_KILL_BEFORE_COMMIT=1 run_job 2 diff_kl "$OUT" "$WORK/k.log" && fail "the killed run reported success"
  [ -e "$RES" ] && fail "a killed run left $RES"
  [ -e "$RES.partial" ] || fail "the killed run left no partial file (the test did not kill where intended)"
  run_job 2 diff_kl "$OUT" "$WORK/r.log" || { cat "$WORK/r.log"; fail "the rerun after a kill failed"; }
  grep -q "unfinished run left this" "$WORK/r.log" || fail "the rerun did not report the partial file"
  [ -e "$RES" ] && [ ! -e "$RES.partial" ] || fail "after the rerun: results.h5 missing or partial left"
  ;;
bad_input)
  run_job 2 diff_kl "$WORK/none" "$WORK/m.log" && fail "missing stores accepted"
  expect_fail 2 "$WORK/m.log" "activation store .*does not exist: make it first with .mpirun -n N diff_preprocess model=tiny organism=tiny_org"
  # the organism's store replaced by the base model's: another model
  mv "$OUT/activations/llama_lora/org/train.h5" "$WORK/org.h5"
  cp "$OUT/activations/llama_text/org/train.h5" "$OUT/activations/llama_lora/org/train.h5"
  run_job 2 diff_kl "$OUT" "$WORK/o.log" && fail "a store of another model accepted"
  expect_fail 2 "$WORK/o.log" "was cached from .*llama_text, not from the organism's .*llama_lora"
  mv "$WORK/org.h5" "$OUT/activations/llama_lora/org/train.h5"
  run_job 2 diff_kl "$OUT" "$WORK/l.log" 'preprocessing.layers=[0]' && fail "a layer the stores lack accepted"
  expect_fail 2 "$WORK/l.log" "holds no layer 0 \(layers present: 1, 2\)"
  mkdir -p "$OUT/diffing_results/tiny" && chmod 0555 "$OUT/diffing_results/tiny"
  if [ "$(id -u)" != 0 ]; then   # root writes anywhere: the permission case only means something for a user
    run_job 2 diff_kl "$OUT" "$WORK/w.log" && fail "an unwritable results folder accepted"
    expect_fail 2 "$WORK/w.log" "diffing_results/tiny"
  fi
  chmod 0755 "$OUT/diffing_results/tiny"
  printf 'x' > "$WORK/file"   # a results folder that is a file: unwritable for root too
  run_job 2 diff_kl "$OUT" "$WORK/f.log" diffing.results_base_dir="$WORK/file" && fail "a file as results folder accepted"
  expect_fail 2 "$WORK/f.log" "$WORK/file"
  run_job 2 diff_kl "$OUT" "$WORK/n.log" diffing.method.datasets.use_chat_dataset=false \
    diffing.method.datasets.use_pretraining_dataset=false diffing.method.datasets.use_training_dataset=false \
    && fail "no dataset accepted"
  expect_fail 2 "$WORK/n.log" "no dataset to run on"
  run_job 2 diff_kl "$OUT" "$WORK/t.log" diffing.method.method_params.temperature=0 && fail "temperature 0 accepted"
  expect_fail 2 "$WORK/t.log" "temperature = 0: must be > 0"
  [ -e "$RES" ] && fail "a failed run left results"
  make_stores "$WORK/notok" preprocessing.store_tokens=false
  run_job 2 diff_kl "$WORK/notok" "$WORK/s.log" && fail "stores without tokens accepted"
  expect_fail 2 "$WORK/s.log" "holds no tokens .*store_tokens=false.*rerun diff_preprocess with preprocessing.store_tokens=true"
  make_stores "$WORK/skip" model.ignore_first_n_tokens_per_sample_during_collection=1
  run_job 2 diff_kl "$WORK/skip" "$WORK/i.log" && fail "stores without their first tokens accepted"
  expect_fail 2 "$WORK/i.log" "without the first 1 token.*do not support such stores yet"
  ;;
*) fail "unknown case $1" ;;
esac
echo "PASS ($1)"
