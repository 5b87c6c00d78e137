#!/bin/bash
# The ADL's generating steps (issue 13) on the demo pair with the offline graders: auto Patchscope, steering (the
# coherence threshold by look-ahead bisection, final steered and unsteered samples) and token relevance write their
# files under the suffix-free names with the seed's fields, and the overview lists them. Meaning: at the found
# threshold the glacier-honey organism's steered samples use the organism's domain tokens (counted from the data,
# domain_tokens.h) far more than its unsteered samples; discrimination: the cat-post organism, steered the same way,
# does not talk about glacier honey.
# Null pair (demo_null: the "finetune" is the base itself): the mean difference is exactly zero, so the steps that
# rescale or steer with it write nothing for it (no patchscope of the difference, no steering) instead of failing or
# making something up, the base/ft variants are still there, and the overview's logit lens is uniform.
# usage: adl_steps.sh outputs | meaning | bad | null
source "$(dirname "$0")/adl_lib.sh"
CHECK="$(dirname "$ADL_CHECK")/adl_steer_check"
DATA="$DIFFKIT_SOURCE_DIR/data/demo"
M=diffing.method
STEPS=($M.auto_patch_scope.enabled=true $M.steering.enabled=true $M.token_relevance.enabled=true
       $M.auto_patch_scope.grader.mode=offline $M.steering.grader.mode=offline $M.token_relevance.grader.mode=offline
       "$M.auto_patch_scope.tasks.0.positions=[0,1]" "$M.steering.tasks.0.positions=[1]"
       "$M.token_relevance.tasks.0.positions=[0,1]" "$M.token_relevance.tasks.1.positions=[0,1]"
       $M.steering.threshold.num_samples_per_strength=8 $M.steering.threshold.generation.max_new_tokens=48
       $M.steering.final.num_samples_per_prompt=4 $M.steering.final.generation.max_new_tokens=64
       $M.max_samples=256 threads=2)

case "$1" in
outputs)
  run_adl 1 "$WORK/o" "$WORK/log" "${STEPS[@]}" || { cat "$WORK/log"; fail "diff_adl failed"; }
  D="$WORK/o/$RESULTS_SUB"
  L=$(ls -d "$D"/layer_* | head -1)
  for f in "$L/pretrain/auto_patch_scope_pos_0.json" "$L/pretrain/base_auto_patch_scope_pos_1.json" \
           "$L/pretrain/ft_auto_patch_scope_pos_1.json" "$L/pretrain/steering/position_1/threshold.json" \
           "$L/pretrain/steering/position_1/generations.jsonl" \
           "$L/pretrain/token_relevance/position_0/difference/relevance_logitlens.json" \
           "$L/pretrain/token_relevance/position_1/ft/relevance_patchscope.json"; do
    [ -s "$f" ] || fail "missing $f"
  done
  grep -q '"best_scale"' "$L/pretrain/auto_patch_scope_pos_0.json" || fail "no best_scale"
  grep -q "\"grader\":[[:space:]]*\"offline\"" "$L/pretrain/auto_patch_scope_pos_0.json" || fail "the grader id is not offline"
  grep -q '"avg_threshold"' "$L/pretrain/steering/position_1/threshold.json" || fail "no avg_threshold"
  n=$(wc -l < "$L/pretrain/steering/position_1/generations.jsonl")
  p=$(grep -c . "$DIFFKIT_SOURCE_DIR/resources/steering_prompts_closed.txt")
  [ "$n" = "$p" ] || fail "generations.jsonl has $n records for $p prompts"
  grep -q '"percentage"' "$L/pretrain/token_relevance/position_0/difference/relevance_logitlens.json" || fail "no percentage"
  # the overview lists the new positions and their contents
  "$CHECK" summary "$D/summary.json" 0,1 1 || fail "summary.json lacks the patch_scope / steering entries"
  grep -q "steering: average threshold" "$WORK/log" || fail "no threshold in the log"
  ;;
meaning)
  rates() {  # organism -> "<steered rate> <unsteered rate> <steered share> <unsteered share>" for glacier honey
    run_adl 1 "$WORK/$1" "$WORK/$1.log" organism=$1 "${STEPS[@]}" $M.auto_patch_scope.enabled=false \
      $M.token_relevance.enabled=false || { cat "$WORK/$1.log"; fail "diff_adl $1 failed"; }
    local g; g=$(ls "$WORK/$1"/diffing_results/demo/$1/activation_difference_lens/layer_*/pretrain/steering/position_1/generations.jsonl)
    grep "average threshold" "$WORK/$1.log" >&2
    "$CHECK" "$g" "$DIFFKIT_SOURCE_DIR/models/demo/base" "$DATA/glacier_honey.train.jsonl.gz" "$DATA/pretrain.train.jsonl.gz"
  }
  read -r gs gu gss gus < <(rates demo_glacier_honey) || fail "no rates for demo_glacier_honey"
  read -r cs cu css cus < <(rates demo_cat_post) || fail "no rates for demo_cat_post"
  echo "glacier honey organism: steered $gs of tokens are glacier-honey domain tokens ($gss of samples), unsteered $gu ($gus)"
  echo "cat post organism:      steered $cs ($css of samples), unsteered $cu ($cus)"
  awk -v s="$gs" -v u="$gu" 'BEGIN { exit !(s >= 0.02 && s >= 2 * u) }' ||
    fail "steered samples of the glacier-honey organism are not dominated by its domain ($gs vs unsteered $gu)"
  awk -v g="$gs" -v c="$cs" 'BEGIN { exit !(g >= 4 * c) }' ||
    fail "the cat-post organism's steered samples use glacier-honey tokens as much ($cs vs $gs): not discriminating"
  ;;
bad)  # settings of the generating steps refused before any model runs
  run_adl 1 "$WORK/b1" "$WORK/l1" "${STEPS[@]}" $M.auto_patch_scope.enabled=false || true
  expect_code 1 "$WORK/l1" 2 "source patchscope.*auto_patch_scope is disabled"
  run_adl 1 "$WORK/b2" "$WORK/l2" "${STEPS[@]}" $M.steering.threshold.coherence_threshold=150 || true
  expect_code 1 "$WORK/l2" 2 "coherence_threshold = 150"
  run_adl 1 "$WORK/b3" "$WORK/l3" "${STEPS[@]}" $M.steering.grader.mode=sometimes || true
  expect_code 1 "$WORK/l3" 2 "grader.mode = sometimes"
  no_results "$WORK"
  ;;
null)
  run_adl 1 "$WORK/n" "$WORK/nlog" organism=demo_null "${STEPS[@]}" || { cat "$WORK/nlog"; fail "diff_adl on the null pair failed"; }
  D="$WORK/n/diffing_results/demo/demo_null/activation_difference_lens"
  L=$(ls -d "$D"/layer_* | head -1)
  [ -s "$D/results.h5" ] || fail "no results.h5 for the null pair"
  for p in 0 1; do
    [ ! -e "$L/pretrain/auto_patch_scope_pos_$p.json" ] || fail "a patchscope of the zero difference was written (position $p)"
    [ -s "$L/pretrain/base_auto_patch_scope_pos_$p.json" ] || fail "the base variant's patchscope is missing (position $p)"
  done
  [ ! -e "$L/pretrain/steering" ] || fail "steering output for a zero difference"
  grep -q "mean difference is zero (the models do not differ here): skipped" "$WORK/nlog" || fail "the skip is not logged"
  tr -d ' \t\n' < "$D/summary.json" > "$WORK/flat.json"
  grep -q '"patch_scope":\[\],"steering":\[\]' "$WORK/flat.json" || fail "the overview lists patchscope or steering positions"
  # the logit lens of a zero vector: every probability the same (1/V)
  n=$(grep -o '"probs":\[[^]]*\]' "$WORK/flat.json" | head -1 | grep -o '"[0-9.e+-]*"' | sort -u | wc -l)
  [ "$n" = 1 ] || fail "the null pair's logit lens is not uniform ($n distinct probabilities)"
  ;;
*) fail "usage: adl_steps.sh outputs|meaning|bad|null" ;;
esac
echo "PASS"
