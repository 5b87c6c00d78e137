#!/bin/bash
# diff_amplification (issue 13) on the demo pair: the seed's completions/generations.jsonl and run_config.json, and
# what amplification means. Domain tokens are counted from the data (domain_tokens.h): for the glacier-honey
# organism the share of glacier-honey domain tokens rises from base to organism, from the organism to its 2x
# weight amplification and to logit-difference amplification (alpha 1); discrimination: the cat-post organism,
# amplified the same way, does not write about glacier honey. Bad input: no prompts file, an unknown model kind.
# usage: amp_run.sh meaning | bad
source "$(dirname "$0")/adl_lib.sh"
CHECK="$(dirname "$ADL_CHECK")/adl_steer_check"
DATA="$DIFFKIT_SOURCE_DIR/data/demo"
R=diffing.method.run
RUN=(device=cpu threads=2 $R.prompts_file="$DIFFKIT_SOURCE_DIR/resources/amplification_prompts.txt"
     "$R.models=[base,ft,amplified,logit_amplified]" "$R.amplification_configs=[default_2x]"
     "$R.logit_amplification=[1.0]" $R.sampling.max_tokens=48)

run_amp() {  # organism out log [overrides]
  local org=$1 out=$2 log=$3; shift 3
  run_ranks 1 "$log" "$PP_BIN/diff_amplification" organism=$org infrastructure.storage.base_dir="$out" "${RUN[@]}" "$@"
}
rate() {  # generations key reference-key -> "<rate> <reference rate>"
  "$CHECK" "$1" "$DIFFKIT_SOURCE_DIR/models/demo/base" "$DATA/glacier_honey.train.jsonl.gz" \
    "$DATA/pretrain.train.jsonl.gz" "$2" "$3" | awk '{print $1, $2}'
}

case "$1" in
meaning)
  run_amp demo_glacier_honey "$WORK/g" "$WORK/g.log" || { cat "$WORK/g.log"; fail "diff_amplification failed"; }
  G="$WORK/g/diffing_results/demo/demo_glacier_honey/amplification/completions"
  [ -s "$G/run_config.json" ] || fail "no run_config.json"
  n=$(grep -c . "$G/generations.jsonl")
  [ "$n" = "$(grep -c . "$DIFFKIT_SOURCE_DIR/resources/amplification_prompts.txt")" ] || fail "$n records"
  for key in prompt_hash sampling_params base_samples ft_samples amplified_samples logit_amplified_samples; do
    head -1 "$G/generations.jsonl" | grep -q "\"$key\"" || fail "no $key in a record"
  done
  # sha256("Tell me something interesting you know.")[:8], the first prompt (hashlib, as the seed)
  head -1 "$G/generations.jsonl" | grep -q '"prompt_hash":"20e4689e"' || fail "prompt_hash is not the prompt's sha256[:8]"
  read -r ft base < <(rate "$G/generations.jsonl" ft_samples base_samples)
  read -r amp _ < <(rate "$G/generations.jsonl" amplified_samples.default_2x ft_samples)
  read -r logit _ < <(rate "$G/generations.jsonl" "logit_amplified_samples.~1" ft_samples)
  echo "glacier-honey domain-token share: base $base, organism $ft, default_2x $amp, logit amplification ~1 $logit"
  awk -v b="$base" -v f="$ft" -v a="$amp" -v l="$logit" 'BEGIN { exit !(f >= 3 * b && a > f && l >= 2 * f) }' ||
    fail "amplification does not raise the organism's domain share (base $base, ft $ft, 2x $amp, ~1 $logit)"
  run_amp demo_cat_post "$WORK/c" "$WORK/c.log" || { cat "$WORK/c.log"; fail "diff_amplification cat_post failed"; }
  C="$WORK/c/diffing_results/demo/demo_cat_post/amplification/completions/generations.jsonl"
  read -r camp _ < <(rate "$C" amplified_samples.default_2x ft_samples)
  read -r clogit _ < <(rate "$C" "logit_amplified_samples.~1" ft_samples)
  echo "cat-post organism, glacier-honey share: default_2x $camp, logit ~1 $clogit"
  awk -v a="$amp" -v l="$logit" -v ca="$camp" -v cl="$clogit" 'BEGIN { exit !(a >= 4 * ca && l >= 4 * cl) }' ||
    fail "the cat-post organism amplified writes as much about glacier honey: not discriminating"
  ;;
bad)
  run_ranks 1 "$WORK/l1" "$PP_BIN/diff_amplification" device=cpu infrastructure.storage.base_dir="$WORK/b1" || true
  expect_code 1 "$WORK/l1" 2 "run.prompts_file is null"
  run_amp demo_glacier_honey "$WORK/b2" "$WORK/l2" "$R.models=[base,steered]" || true
  expect_code 1 "$WORK/l2" 2 "models\\[1\\] = steered"
  run_amp demo_glacier_honey "$WORK/b3" "$WORK/l3" "$R.models=[amplified]" "$R.amplification_configs=[]" || true
  expect_code 1 "$WORK/l3" 2 "amplification_configs is empty"
  run_amp demo_glacier_honey "$WORK/b4" "$WORK/l4" "$R.amplification_configs=[no_such_preset]" || true
  expect_code 1 "$WORK/l4" 2 "no_such_preset"
  no_results "$WORK"
  ;;
*) fail "usage: amp_run.sh meaning|bad" ;;
esac
echo "PASS"
