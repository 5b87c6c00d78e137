#!/bin/bash
# The result means something (issue 12): on the demo pair, at the middle layer (the default layers: [0.5]), the logit
# lens of the mean difference on the pretraining dataset has >= 3 domain tokens in its top 20 at >= 3 of positions
# 0-4. Domain tokens are computed from the data (adl_check meaning): >= 10 occurrences in the organism's training
# documents and >= 20x more frequent per token there than in the pretraining documents; never a hard-coded list.
# max_samples=256 of the pretraining dataset's ~2500 documents keeps the test at seconds (the full default run
# gives the same verdict on the current pair: docs/perf.md and the issue report).
# CAVEAT (issue 11): the current demo base has never-trained token rows, and on it this check passes for that
# reason; adl_check prints, per position, how many of the domain tokens never occur in the pretraining text.
source "$(dirname "$0")/adl_lib.sh"
run_adl 1 "$WORK/o" "$WORK/log" threads=2 diffing.method.max_samples=256 || { cat "$WORK/log"; fail "diff_adl failed"; }
"$ADL_CHECK" meaning "$WORK/o/$RESULTS_SUB" "$DIFFKIT_SOURCE_DIR/models/demo/base" \
  "$DIFFKIT_SOURCE_DIR/data/demo/glacier_honey.train.jsonl.gz" "$DIFFKIT_SOURCE_DIR/data/demo/pretrain.train.jsonl.gz" \
  pretrain first || fail "no domain tokens in the logit lens of the mean difference"
echo "PASS"
