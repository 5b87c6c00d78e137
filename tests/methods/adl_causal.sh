#!/bin/bash
# The ADL's causal effect step (issue 13, seed_spec §5.7) on the demo pair, tiny settings: v̂ from the pretraining
# means at layer 1, the finetuned model's component along v̂ set to the base model's (base_to_ft) on three eval
# datasets: the organism's own documents (training), the cat-post organism's documents and the chat dataset
# (assistant tokens only). Outputs: each position's results.json with the seed's fields (adl_causal_check), the log
# line. Meaning: removing the finetune's direction raises the glacier-honey model's loss on its training documents
# far more than any random or random-difference direction does; on the cat-post documents (a finetune it never saw)
# the same intervention does not raise it. A bad patch_direction, an eval dataset without eval_dataset_is_chat:
# usage errors (exit 2).
source "$(dirname "$0")/adl_lib.sh"
CHECK="$(dirname "$ADL_CHECK")/adl_causal_check"
DATA="$DIFFKIT_SOURCE_DIR/data/demo"
C=diffing.method.causal_effect
ARGS=(diffing.method.max_samples=64 threads=2 $C.enabled=true
      "$C.tasks.0.positions=[1,2]"
      $C.tasks.1.eval_dataset="$DATA/cat_post.train.jsonl.gz" $C.tasks.1.eval_dataset_is_chat=false "$C.tasks.1.positions=[1]"
      "$C.tasks.2.positions=[1]"
      $C.max_samples=16 $C.max_total_tokens=128 $C.batch_size=4 $C.num_random_vectors=4 $C.num_random_diff_vectors=4)

run_adl 1 "$WORK/o" "$WORK/log" "${ARGS[@]}" || { cat "$WORK/log"; fail "diff_adl failed"; }
D="$WORK/o/$RESULTS_SUB/layer_1/pretrain/causal_effect/direction_base_to_ft"
for f in eval_glacier_honey/position_1 eval_glacier_honey/position_2 eval_cat_post/position_1 eval_chat/position_1; do
  [ -s "$D/$f/results.json" ] || fail "missing $D/$f/results.json"
  "$CHECK" "$D/$f/results.json" 4 4 > "$WORK/$(echo "$f" | tr / _).txt" || fail "$f/results.json lacks the seed's fields"
done
grep -q "causal_effect pretrain layer 1 position 1 eval glacier_honey (base_to_ft, [0-9]* targets): CE of the finetuned model intervened" \
  "$WORK/log" || fail "no causal effect log line"
read -r own own_rand own_n < "$WORK/eval_glacier_honey_position_1.txt"
read -r other other_rand other_n < "$WORK/eval_cat_post_position_1.txt"
read -r chat chat_rand chat_n < "$WORK/eval_chat_position_1.txt"
echo "glacier-honey documents ($own_n targets): CE +$own intervened, at most +$own_rand along a random direction"
echo "cat-post documents ($other_n targets):      CE $other intervened, at most $other_rand along a random direction"
echo "chat, assistant tokens ($chat_n targets):   CE $chat intervened"
# measured: +0.356 vs +0.0097 at most (random); cat-post documents -0.029
awk -v i="$own" -v r="$own_rand" 'BEGIN { exit !(i >= 0.15 && i >= r + 0.1 && i >= 10 * r) }' ||
  fail "patching v̂ does not raise the finetuned model's loss on its documents beyond the random directions ($own vs $own_rand)"
awk -v i="$other" -v o="$own" 'BEGIN { exit !(i < 0.05 && i < o / 3) }' ||
  fail "the intervention raises the loss on the cat-post documents as well ($other vs $own on its own): not specific"

run_adl 1 "$WORK/bad" "$WORK/bad.log" "${ARGS[@]}" $C.patch_direction=sideways
expect_code 1 "$WORK/bad.log" 2 "causal_effect.patch_direction = sideways: expected base_to_ft"
no_results "$WORK/bad"
run_adl 1 "$WORK/bad2" "$WORK/bad2.log" "${ARGS[@]}" $C.tasks.1.eval_dataset_is_chat=null
expect_code 1 "$WORK/bad2.log" 2 "tasks.1.eval_dataset_is_chat is missing: say whether"
no_results "$WORK/bad2"
echo "PASS"
