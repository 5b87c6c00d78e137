#!/bin/bash
# The dictionary analysis (dk_dict_analyse, host/methods/dict_analysis.c) over the tiny test pair's stores, run by
# the test job tests/dict_analysis_job (random SAE and crosscoder, no training) on 1, 2 and 3 ranks: every numeric
# result (latent statistics, betas, active counts, max-activating tables) is the same whatever the rank count
# (betas are fp64 sums in another order: 1e-9 relative), and the parts are there: the latent_df columns, the
# crosscoder's tags, the tables of fired latents, the SAELens exports and the summary's top latents.
source "$(dirname "$0")/dict_lib.sh"
JOB="$(dirname "$DICT_CHECK")/dict_analysis_job"
make_stores "$WORK/o"
for n in 1 2 3; do
  out="$WORK/o"
  [ $n = 1 ] || { out="$WORK/o$n"; mkdir -p "$out"; cp -r "$WORK/o/activations" "$out/"; }
  DK_PP_OUT="$out" run_ranks $n "$WORK/an$n.log" "$JOB" --config-dir "$CONFIGS" || { cat "$WORK/an$n.log"; fail "analysis on $n ranks"; }
done
D=$RESULTS/dict_analysis_test
R=$D/results.h5
for n in 2 3; do
  "$DICT_CHECK" same "$WORK/o$n/$R" "$WORK/o/$R" 1e-9 1e-12 sae cc || fail "$n ranks differ from 1"
done
for p in sae/latent_stats/dec_norm sae/latent_stats/beta_activation_ratio sae/latent_stats/max_act_train \
         sae/latent_stats/freq_train sae/latent_scaling/ft_activation/beta sae/latent_scaling/count_active \
         cc/latent_stats/dec_norm_diff cc/latent_stats/beta_ratio_error cc/latent_stats/effective_ft_only_latent \
         cc/latent_scaling/base_error/beta cc/latent_scaling/effective_ft_only_latents "sae/latent_activations@total_tokens" \
         "cc/latent_scaling@rows"; do
  "$DICT_CHECK" value "$WORK/o/$R" "$p" >/dev/null || fail "$p is missing"
done
[ "$("$DICT_CHECK" value "$WORK/o/$R" "cc/latent_scaling@rows")" = 250 ] || fail "latent scaling did not use 250 rows"
tables=$(grep -Eo '"max_act_tables":[[:space:]]*[0-9]+' "$WORK/o/$D/summary.json" | head -1 | grep -Eo '[0-9]+$')
[ "${tables:-0}" -gt 0 ] || fail "no max-activating table written"
grep -Eq '"top_latents":[[:space:]]*\[\{' "$WORK/o/$D/summary.json" || fail "no top latents in the summary"
grep -q '"ft_only":' "$WORK/o/$D/summary.json" || fail "no crosscoder tag counts in the summary"
for k in sae cc; do
  [ -s "$WORK/o/$D/saelens_$k/sae_weights.safetensors" ] && grep -Eq '"architecture":[[:space:]]*"jumprelu"' "$WORK/o/$D/saelens_$k/cfg.json" \
    || fail "SAELens export of $k missing"
done
echo PASS
