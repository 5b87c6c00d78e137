#!/bin/bash
# dict_ce.sh RANKS — the CE loss recovered of diff_sae and diff_crosscoder (host/methods/dict_ce.c) against
# transformers fp32 eager + peft (tools/make_dict_ce_goldens.py; fixture tests/fixtures/methods/dict/ce_golden.json),
# on the tiny test pair's stores (methods_lib.sh), on RANKS ranks (the golden runs used 1; dict_ce.c spreads the
# sequences over the ranks and sums in fp64), with the small settings of ce_sae.args and ce_crosscoder.args (skip 2:
# the first two tokens of each sequence are not patched; the first 4 validation sequences of chat, pretrain, org).
# Per layer (1 and 2; 2 is the last block, patched before the final norm), in training_metrics.json and
# summary.json:
#   ce_tokens            exactly the golden's count of predicted positions
#   ce_clean             the finetuned model's CE within RTOL
#   ce_base_activation   the CE with the residual after block L replaced from position 2 on by the base model's
#                        (bf16) activation, within RTOL
#   ce_spliced           the CE with the finetuned activation as the dictionary reconstructs it (SAE: h_base + x_hat;
#                        crosscoder: the ft half of x_hat), within RTOL, when the trained dictionary is the one the
#                        golden was computed from (training on the CPU is deterministic for a rank count, and 1 and
#                        3 ranks agree within ~1e-7 here; the dictionary's digest is checked within 1e-6 first, and
#                        a differing one is named); ce_loss_recovered within 50·RTOL absolute
# RTOL = 1e-5: both sides are fp32 forwards of the same weights (the engine widens the bf16 weights to fp32, as
# transformers loading them in float32 does) that differ only in summation order (~1e-7 relative on the logits;
# measured ~1e-8 on these means), and the CE sums are fp64; the mutations the test must catch (patching the wrong
# layer, ignoring the skip, counting the last position) move these means by 1e-4 relative or more.
source "$(dirname "$0")/dict_lib.sh"
OUT="$WORK/out"
GOLDEN="$METHOD_FIXTURES/dict/ce_golden.json"
make_stores "$OUT"
for job in diff_sae diff_crosscoder; do
  dir=sae_difference args=ce_sae.args
  [ $job = diff_crosscoder ] && dir=crosscoder args=ce_crosscoder.args
  mapfile -t ARGS < "$METHOD_FIXTURES/dict/$args"
  run_job "${1:-1}" $job "$OUT" "$WORK/$job.log" "${ARGS[@]}" || { cat "$WORK/$job.log"; fail "$job failed"; }
  [ "$(grep -c "CE loss recovered" "$WORK/$job.log")" = 2 ] || { cat "$WORK/$job.log"; fail "$job: no CE line per layer"; }
  grep "CE loss recovered" "$WORK/$job.log"
  "$DICT_CHECK" ce "$GOLDEN" $job "$OUT/$RESULTS/$dir" 1e-5 || fail "$job: CE loss recovered differs from the golden"
done
echo PASS
