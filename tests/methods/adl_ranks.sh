#!/bin/bash
# Rank count never changes a result: diff_adl on 1, 2 and 3 ranks (batches of 3 sequences, round-robin) gives the
# same results.h5 datasets to the bit (adl_check same), on a text and a chat dataset (18 sequences each: 6 batches),
# at two layers.
source "$(dirname "$0")/adl_lib.sh"
ARGS=("${TINY[@]}" "diffing.method.datasets=[{id: $FX/preprocess/data/pretrain, is_chat: false, text_column: text}, {id: $FX/preprocess/data/chat.train.jsonl, is_chat: true, messages_column: messages}]"
      diffing.method.n=8 diffing.method.max_samples=18 diffing.method.batch_size=3 "diffing.method.layers=[0.5, 2]" threads=1)
for n in 1 2 3; do
  run_adl "$n" "$WORK/r$n" "$WORK/r$n.log" "${ARGS[@]}" || { cat "$WORK/r$n.log"; fail "diff_adl on $n ranks failed"; }
done
for n in 2 3; do
  "$ADL_CHECK" same "$WORK/r1/$RESULTS_SUB/results.h5" "$WORK/r$n/$RESULTS_SUB/results.h5" \
    || fail "$n ranks differ from 1 rank"
  for j in summary.json model_norms_pretrain.json model_norms_chat.json dataset_mapping.json; do
    cmp -s "$WORK/r1/$RESULTS_SUB/$j" "$WORK/r$n/$RESULTS_SUB/$j" || fail "$j differs between 1 and $n ranks"
  done
done
echo "PASS"
