#!/usr/bin/env bash
# demo.sh BUILD_DIR [overrides...] — what `make demo` runs: exactly `diffkit run pipeline=demo` on the bundled demo
# pair (configs/pipeline/demo.yaml: every stage, two ranks, settings reduced to a few minutes on 2 cores), then the
# findings a user should see, read from the run's log and results, and the report's path and headline.
# A rerun skips every stage whose results are complete (diffkit run checks each stage first).
set -uo pipefail
build=${1:-build}
bin=$build/bin
args=(pipeline=demo "${@:2}")
if [ ! -f models/demo/base/config.json ] || [ ! -f models/demo/glacier_honey/adapter_model.safetensors ]; then
  echo "demo: the demo model pair in models/demo/ is not complete (tools/make_demo_models.py makes it)" >&2
  exit 1
fi
log=$build/demo_run.log
echo "== diffkit run ${args[*]} =="
t0=$(date +%s)
"$bin/diffkit" run "${args[@]}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
echo "(diffkit run: exit $rc after $(( $(date +%s) - t0 )) s; the full log is $log)"

# ---- the findings (each method's evidence that the organism was finetuned on glacier honey) ----------------
get() { "$bin/diffkit" config --get "$1" "${args[@]}"; }
results_dir=$(get diffing.results_dir)
demo_data=(models/demo/base data/demo/glacier_honey.train.jsonl.gz data/demo/pretrain.train.jsonl.gz)
echo
echo "== findings =="
echo "KL(organism || base), mean per token by dataset (the organism's own data should stand out):"
sed -n 's/.*diff_kl \([^:]*\): .*mean KL per token \(.*\)/  \1: \2/p' "$log"
run=$(ls -td "$results_dir"/diff_mining/seed*_top* 2>/dev/null | head -1)
if [ -n "$run" ] && [ -x "$build/tests/dm_domain_check" ]; then
  echo "diff_mining: glacier-honey domain tokens among the top 20 pushed up on pretraining text:"
  "$build/tests/dm_domain_check" "$run" pretrain_train_text "${demo_data[@]}" 20 0 2>/dev/null | sed 's/^/  /' || true
fi
adl_dir=$results_dir/activation_difference_lens
if [ -f "$adl_dir/results.h5" ] && [ -x "$build/tests/adl_check" ]; then
  echo "ADL: the logit lens of the mean activation difference on pretraining text ([glacier-honey domain tokens]):"
  "$build/tests/adl_check" meaning "$adl_dir" "${demo_data[@]}" pretrain first 2>&1 | sed 's/^/  /' || true
fi
grep -h -E "auto_patch_scope mean_diff: best scale|steering: average threshold|token_relevance difference" "$log" |
  sed 's/^\[[^]]*\] /  ADL: /' || true
gen=$(ls "$adl_dir"/layer_*/pretrain/steering/position_1/generations.jsonl 2>/dev/null | head -1)
if [ -n "$gen" ] && [ -x "$build/tests/adl_steer_check" ]; then
  echo "  a steered and an unsteered sample at the threshold ($gen):"
  "$build/tests/adl_steer_check" sample "$gen" steered_samples unsteered_samples | sed 's/^/    /' || true
  read -r s u ss us < <("$build/tests/adl_steer_check" "$gen" "${demo_data[@]}" 2>/dev/null)
  echo "  glacier-honey domain tokens: $s of the steered tokens ($ss of samples) vs $u unsteered ($us)"
fi
amp=$results_dir/amplification/completions/generations.jsonl
if [ -f "$amp" ] && [ -x "$build/tests/adl_steer_check" ]; then
  echo "amplification: share of glacier-honey domain tokens in the samples (base < organism < amplified):"
  for k in base_samples ft_samples amplified_samples.default_2x "logit_amplified_samples.~1"; do
    read -r r _ < <("$build/tests/adl_steer_check" "$amp" "${demo_data[@]}" "$k" ft_samples 2>/dev/null)
    echo "  $k: $r"
  done
fi
grep -h -E "explain .* of the variance|CE loss recovered|finding:" "$log" | sed 's/^\[[^]]*\] /  /' || true
if [ -x "$build/tests/dict_meaning_check" ]; then  # latents peaking on glacier-honey domain tokens (from the data)
  for m in sae_difference:sae crosscoder:crosscoder; do
    [ -f "$results_dir/${m%%:*}/results.h5" ] &&
      "$build/tests/dict_meaning_check" "$results_dir/${m%%:*}/results.h5" "${m##*:}" "${demo_data[@]}" | sed 's/^/  /'
  done
fi

summary=$results_dir/agent_summary.md
if [ -f "$summary" ]; then
  echo "agent (diff_agent; ${results_dir}/agent_summary.md):"
  sed 's/^/  /' "$summary"
  grep -h "no LLM configured for the agent" "$log" | head -1 | sed 's/^\[[^]]*\] /  /' | cut -c1-240 || true
fi

# ---- the report: its path and headline, as diff_report printed them ----------------------------------------
echo
report=$(sed -n 's/^report: //p' "$log" | tail -1)
if [ -z "$report" ] && [ -x "$bin/diff_report" ]; then  # a rerun skipped the report (up to date): its headline again
  "$bin/diff_report" "${args[@]}" > "$build/demo_report.log" 2>&1 && log=$build/demo_report.log
  report=$(sed -n 's/^report: //p' "$log" | tail -1)
fi
if [ -n "$report" ]; then
  grep -h -i -E "^(headline|finding)" "$log" | tail -3
  echo "report: $report"
else
  echo "report: none (diff_report did not run: see the stage list above)"
fi
exit "$rc"
