#!/bin/bash
# dict_meaning.sh — the dictionary methods find the organism on the demo pair, and the finding discriminates.
# Stores (small caps, ~30 s): the glacier-honey organism on its own documents, and the cat-post organism on the SAME
# glacier-honey documents (organism.dataset.id overridden), so both runs see identical text and differ only in the
# finetune. On each: diff_sae and diff_crosscoder at the demo's scale. tests/dict_meaning_check counts latents whose
# strongest example peaks on a domain token of the glacier-honey documents (counted from the data):
#   SAE          the glacier-honey SAE has such latents (share >= 0.12), at least 2.5 times the cat-post SAE's share
#   crosscoder   the 20 latents of lowest relative decoder norm (the seed's effective finetuned-only latents) of the
#                glacier-honey crosscoder: share >= 0.25, at least 2.5 times its shared latents' share and 2.5 times
#                the cat-post crosscoder's lowest-norm latents' share
# (measured when written: SAE 0.19 vs 0.055; crosscoder 0.40 vs shared 0.09 and cat-post 0.00).
source "$(dirname "$0")/methods_lib.sh"
export DIFFKIT_ROOT="$DIFFKIT_SOURCE_DIR"
OUT="$WORK/out"
CHECK="$(dirname "$DICT_CHECK")/dict_meaning_check"
GLACIER='${env:DIFFKIT_ROOT,.}/data/demo/glacier_honey.train.jsonl.gz'
PAIR=(model=demo dataset=demo infrastructure.storage.base_dir="$OUT" threads=1)
PP=(preprocessing.max_samples_per_dataset=600 preprocessing.max_tokens_per_dataset_train=60000
    preprocessing.max_tokens_per_dataset_validation=10000)
DICT=(diffing.method.training.epochs=2 diffing.method.training.batch_size=1024 diffing.method.training.k=16
      diffing.method.training.lr=1e-3 diffing.method.training.validate_every_n_steps=1000
      diffing.method.optimization.warmup_steps=20 diffing.method.training.threshold_start_step=20
      diffing.method.training.dead_feature_threshold=500000 diffing.method.datasets.normalization.subsample_size=50000
      diffing.method.evaluation.ce_loss_recovered=false diffing.method.analysis.latent_activations.max_num_samples=200
      diffing.method.analysis.latent_activations.n_max_activations=5 diffing.method.analysis.latent_scaling.num_samples=50000)
CC=(diffing.method.training.expansion_factor=4 diffing.method.training.k_max=64 diffing.method.training.k_annealing_steps=50)
org_args() { [ "$1" = demo_cat_post ] && echo "organism.dataset.id=$GLACIER"; }
for org in demo_glacier_honey demo_cat_post; do
  extra=$(org_args $org)
  run_ranks 2 "$WORK/pp_$org.log" "$PP_BIN/diff_preprocess" "${PAIR[@]}" "${PP[@]}" organism=$org $extra \
    || { cat "$WORK/pp_$org.log"; fail "diff_preprocess $org"; }
  run_ranks 2 "$WORK/sae_$org.log" "$PP_BIN/diff_sae" "${PAIR[@]}" "${DICT[@]}" organism=$org $extra \
    || { cat "$WORK/sae_$org.log"; fail "diff_sae $org"; }
  run_ranks 2 "$WORK/cc_$org.log" "$PP_BIN/diff_crosscoder" "${PAIR[@]}" "${DICT[@]}" "${CC[@]}" organism=$org $extra \
    || { cat "$WORK/cc_$org.log"; fail "diff_crosscoder $org"; }
done
check() { # check ORG METHOD_DIR MODE KEY: the value of KEY printed by dict_meaning_check
  "$CHECK" "$OUT/diffing_results/demo/$1/$2/results.h5" "$3" "$DIFFKIT_SOURCE_DIR/models/demo/base" \
    "$DIFFKIT_SOURCE_DIR/data/demo/glacier_honey.train.jsonl.gz" "$DIFFKIT_SOURCE_DIR/data/demo/pretrain.train.jsonl.gz" \
    > "$WORK/check.txt" || { cat "$WORK/check.txt"; fail "dict_meaning_check $1 $2"; }
  cat "$WORK/check.txt" >&2
  sed -n "s/^$4 //p" "$WORK/check.txt"
}
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'; }
sae_g=$(check demo_glacier_honey sae_difference sae domain_rate)
sae_c=$(check demo_cat_post sae_difference sae domain_rate)
echo "SAE: domain latents, glacier-honey organism $sae_g, cat-post organism on the same documents $sae_c"
ge "$sae_g" 0.12 || fail "the glacier-honey SAE has too few domain latents ($sae_g)"
ge "$sae_g" "$(awk -v c="$sae_c" 'BEGIN { print 2.5 * c }')" || fail "the SAE does not discriminate ($sae_g vs $sae_c)"
low_g=$(check demo_glacier_honey crosscoder crosscoder domain_rate_low)
sh_g=$(check demo_glacier_honey crosscoder crosscoder domain_rate_shared)
low_c=$(check demo_cat_post crosscoder crosscoder domain_rate_low)
echo "crosscoder: lowest-norm latents $low_g, shared latents $sh_g; cat-post organism's lowest-norm latents $low_c"
ge "$low_g" 0.25 || fail "the crosscoder's finetuned-leaning latents are not domain latents ($low_g)"
ge "$low_g" "$(awk -v c="$sh_g" 'BEGIN { print 2.5 * c }')" || fail "finetuned-leaning vs shared: $low_g vs $sh_g"
ge "$low_g" "$(awk -v c="$low_c" 'BEGIN { print 2.5 * c }')" || fail "glacier-honey vs cat-post: $low_g vs $low_c"
echo PASS
