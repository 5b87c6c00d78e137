#!/bin/bash
# 1, 2 and 3 ranks give bit-identical stores (tokens, offsets, bf16 rows, statistics, fingerprints), every
# dataset kind (chat rendered with the template, a folder of .jsonl.gz splits, an organism file), and the
# reader API's pair checks hold on the result.
source "$(dirname "$0")/pp_lib.sh"
for n in 1 2 3; do
  run_pp $n "$WORK/r$n" "$WORK/r$n.log" || { cat "$WORK/r$n.log"; fail "run with $n ranks failed"; }
  expect_ok "$WORK/r$n.log"
done
grep -q 'tokens/s' "$WORK/r2.log" && grep -q 'I/O' "$WORK/r2.log" || fail "no report line"
compare_trees "$WORK/r1/activations" "$WORK/r2/activations"
compare_trees "$WORK/r1/activations" "$WORK/r3/activations"
A="$WORK/r2/activations"
for ds in org/train chat/validation pretrain/train; do
  "$PP_TOOL" pair "$A/llama_text/$ds.h5" "$A/llama_lora/$ds.h5" 1 || fail "pair check $ds"
done
"$PP_TOOL" pair "$A/llama_text/org/train.h5" "$A/llama_lora/chat/train.h5" 1 2>&1 | grep -q 'differ in' \
  || fail "a pair of different datasets was not refused"
echo "PASS"
