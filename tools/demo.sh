#!/usr/bin/env bash
# demo.sh BUILD_DIR — what `make demo` runs: the pipeline, stage by stage, on the default configuration.
# Each issue that lands a stage adds it here; stages not built yet are listed as such, never faked.
set -euo pipefail
build=${1:-build}
bin=$build/bin
echo "== diffkit demo: resolved configuration (diffkit config) =="
"$bin/diffkit" config "${@:2}"
echo
echo "== pipeline stages =="
for stage in diff_preprocess diff_mining diff_kl diff_adl diff_amplification diff_pca diff_sae diff_crosscoder diff_activation_analysis diff_agent; do
  if [ -x "$bin/$stage" ]; then
    echo "  $stage: built"
  else
    echo "  $stage: not built yet (planned)"
  fi
done

# --- under-trained tokens (issue 11): which ids the demo base never trained; the methods mark them -----------------
if [ -f models/demo/base/config.json ]; then
  echo
  echo "== diffkit undertrained: tokens the demo base has never trained (marked in token lists) =="
  "$bin/diffkit" undertrained --model models/demo/base --output /dev/null
fi

# --- diff_preprocess (issue 6): cache the demo pair's activations with two ranks ---------------------------
# Runs when the demo model pair is complete (models/demo/, made by tools/make_demo_models.py). The general
# corpora are the local demo files under data/demo/ (configs/dataset/demo.yaml; nothing is downloaded). DEMO_PREPROCESS_ARGS adds
# overrides (default: sample and token caps so the demo stays short on a laptop: one to two minutes on 2 cores).
demo_pair_complete() {
  [ -f configs/model/demo.yaml ] && [ -f models/demo/base/config.json ] && [ -f models/demo/base/tokenizer.json ] &&
    ls models/demo/base/*.safetensors >/dev/null 2>&1 &&
    [ -f models/demo/glacier_honey/adapter_config.json ] && [ -f models/demo/glacier_honey/adapter_model.safetensors ]
}
# every job below: the demo pair, two ranks (Open MPI refuses root unless told)
pp_args=(model=demo organism=demo_glacier_honey dataset=demo)
[ "$(id -u)" = 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
if [ -x "$bin/diff_preprocess" ] && demo_pair_complete; then
  echo
  echo "== diff_preprocess: mpirun -n 2 on the demo pair =="
  read -r -a extra <<< "${DEMO_PREPROCESS_ARGS:-preprocessing.max_samples_per_dataset=2000 preprocessing.max_tokens_per_dataset_train=200000 preprocessing.max_tokens_per_dataset_validation=50000}"
  mpirun -n 2 --oversubscribe "$bin/diff_preprocess" "${pp_args[@]}" "${extra[@]}" "${@:2}"
  store_dir=$("$bin/diffkit" config --get preprocessing.activation_store_dir "${pp_args[@]}" "${@:2}")
  echo "activation stores (docs/formats.md):"
  find "$store_dir" -name '*.h5' | sort | sed 's/^/  /'
elif [ -x "$bin/diff_preprocess" ]; then
  echo
  echo "== diff_preprocess: skipped (the demo model pair in models/demo/ is not complete yet) =="
fi

# --- the methods (issue 12): each reads the stores above or runs both models; results under
# diffing.results_dir (docs/formats.md, "Results files of the methods"). DEMO_METHOD_ARGS adds overrides.
if [ -x "$bin/diff_kl" ] && [ -x "$bin/diff_preprocess" ] && demo_pair_complete; then
  echo
  echo "== diff_kl: KL(organism || base) per token, mpirun -n 2 =="
  read -r -a kl_extra <<< "${DEMO_KL_ARGS:-diffing.method.method_params.max_samples=256}"
  mpirun -n 2 --oversubscribe "$bin/diff_kl" "${pp_args[@]}" "${kl_extra[@]}" "${@:2}" 2>&1 | tee "$build/demo_kl.log"
  echo "finding: mean KL per token by dataset (the organism's own data should stand out):"
  sed -n 's/.*diff_kl \([^:]*\): .*mean KL per token \(.*\)/  \1: \2/p' "$build/demo_kl.log"
fi

# --- diff_mining (issue 12): which tokens the organism pushes up on the pretraining corpus -------------------
# Runs both models itself (no store needed). DEMO_MINING_ARGS adds overrides (default: 512 samples, ~15 s of CPU).
if [ -x "$bin/diff_mining" ] && demo_pair_complete; then
  echo
  echo "== diff_mining: mpirun -n 2 on the demo pair =="
  read -r -a dm_extra <<< "${DEMO_MINING_ARGS:-diffing.method.max_samples=512}"
  mpirun -n 2 --oversubscribe "$bin/diff_mining" "${pp_args[@]}" "${dm_extra[@]}" "${@:2}"
  results_dir=$("$bin/diffkit" config --get diffing.results_dir "${pp_args[@]}" "${@:2}")
  run=$(ls -td "$results_dir"/diff_mining/seed*_top* 2>/dev/null | head -1)
  echo "results: $run (docs/formats.md, \"Diff mining results\")"
  if [ -n "$run" ] && [ -x "$build/tests/dm_domain_check" ]; then
    "$build/tests/dm_domain_check" "$run" pretrain_train_text models/demo/base data/demo/glacier_honey.train.jsonl.gz \
      data/demo/pretrain.train.jsonl.gz 20 0 || true
  fi
fi
# --- diff_adl (issues 12, 13): the logit lens of the mean activation difference, auto Patchscope, steering with the
# coherence threshold, token relevance. Runs both models itself. The graders are offline (host/llm/graders.h) unless
# an endpoint's key is configured (grader.mode=auto). DEMO_ADL_ARGS adds overrides (default: 256 samples, the
# generating steps at positions 0-1 with short generations so the demo stays a few minutes on 2 cores).
if [ -x "$bin/diff_adl" ] && demo_pair_complete; then
  echo
  echo "== diff_adl: mpirun -n 2 on the demo pair =="
  M=diffing.method
  read -r -a adl_extra <<< "${DEMO_ADL_ARGS:-$M.max_samples=256 $M.auto_patch_scope.tasks.0.positions=[0,1] \
    $M.steering.tasks.0.positions=[1] $M.token_relevance.tasks.0.positions=[0,1] \
    $M.token_relevance.tasks.1.positions=[0,1] $M.steering.threshold.num_samples_per_strength=8 \
    $M.steering.threshold.generation.max_new_tokens=48 $M.steering.final.num_samples_per_prompt=4 \
    $M.steering.final.generation.max_new_tokens=64}"
  mpirun -n 2 --oversubscribe "$bin/diff_adl" "${pp_args[@]}" "${adl_extra[@]}" "${@:2}" 2>&1 | tee "$build/demo_adl.log"
  if [ -x "$build/tests/test_demo_adl" ]; then  # the same lens for both organisms, domain tokens marked from the data
    echo "finding: the logit lens of the mean difference for both demo organisms (tests/demo/test_demo_adl):"
    DIFFKIT_SOURCE_DIR="$PWD" DIFFKIT_FIXTURES="$PWD/tests/fixtures" "$build/tests/test_demo_adl" 2>&1 |
      grep -E "top 20 of the logit lens|  pos [0-4]:|discrimination check" || true
  fi
  echo "findings of the generating steps:"
  grep -h -E "auto_patch_scope mean_diff: best scale|steering: average threshold|token_relevance difference" \
    "$build/demo_adl.log" | sed 's/^\[[^]]*\] /  /' || true
  adl_dir=$("$bin/diffkit" config --get diffing.results_dir "${pp_args[@]}" "${@:2}")/activation_difference_lens
  gen=$(ls "$adl_dir"/layer_*/pretrain/steering/position_1/generations.jsonl 2>/dev/null | head -1)
  if [ -n "$gen" ]; then
    echo "  a steered and an unsteered sample at the threshold ($gen):"
    if [ -x "$build/tests/adl_steer_check" ]; then
      "$build/tests/adl_steer_check" sample "$gen" steered_samples unsteered_samples | sed 's/^/    /' || true
      read -r s u ss us < <("$build/tests/adl_steer_check" "$gen" models/demo/base data/demo/glacier_honey.train.jsonl.gz \
        data/demo/pretrain.train.jsonl.gz 2>/dev/null)
      echo "  glacier-honey domain tokens: $s of the steered tokens ($ss of samples) vs $u unsteered ($us)"
    fi
  fi
fi

# --- diff_amplification (issue 13): samples of the base, the organism, its 2x weight amplification and logit-
# difference amplification, for the prompts of resources/amplification_prompts.txt. DEMO_AMP_ARGS adds overrides.
if [ -x "$bin/diff_amplification" ] && demo_pair_complete; then
  echo
  echo "== diff_amplification: base, organism, weight and logit-difference amplification =="
  R=diffing.method.run
  read -r -a amp_extra <<< "${DEMO_AMP_ARGS:-$R.prompts_file=resources/amplification_prompts.txt \
    $R.models=[base,ft,amplified,logit_amplified] $R.amplification_configs=[default_2x] $R.logit_amplification=[1.0] \
    $R.sampling.max_tokens=48}"
  "$bin/diff_amplification" "${pp_args[@]}" "${amp_extra[@]}" "${@:2}"
  amp=$("$bin/diffkit" config --get diffing.results_dir "${pp_args[@]}" "${@:2}")/amplification/completions/generations.jsonl
  if [ -x "$build/tests/adl_steer_check" ] && [ -f "$amp" ]; then
    "$build/tests/adl_steer_check" sample "$amp" base_samples ft_samples amplified_samples.default_2x \
      "logit_amplified_samples.~1" | sed 's/^/  /' || true
    echo "finding: share of glacier-honey domain tokens in the samples (tests/methods/amp_run.sh checks the order):"
    for k in base_samples ft_samples amplified_samples.default_2x "logit_amplified_samples.~1"; do
      read -r r _ < <("$build/tests/adl_steer_check" "$amp" models/demo/base data/demo/glacier_honey.train.jsonl.gz \
        data/demo/pretrain.train.jsonl.gz "$k" ft_samples 2>/dev/null)
      echo "  $k: $r"
    done
  fi
fi

# --- diff_activation_analysis (issue 12): per-token norm differences and cosine distances from the stores --------
if [ -x "$bin/diff_activation_analysis" ] && [ -x "$bin/diff_preprocess" ] && demo_pair_complete; then
  echo
  echo "== diff_activation_analysis: mpirun -n 2 on the stores above =="
  mpirun -n 2 --oversubscribe "$bin/diff_activation_analysis" "${pp_args[@]}" "${@:2}"
fi

# --- the dictionary methods (issue 14): PCA, the SAE on differences and the crosscoder, trained from the stores --
# Sizes scaled to the demo (d 256, ~550k training rows: one epoch, k 16, lr 1e-3, short warm-up); the jobs log their
# validation metrics, the CE loss recovered and their findings. DEMO_PCA_ARGS, DEMO_SAE_ARGS, DEMO_CC_ARGS add
# overrides.
if [ -x "$bin/diff_sae" ] && [ -x "$bin/diff_preprocess" ] && demo_pair_complete; then
  dict_common=(diffing.method.training.epochs=1 diffing.method.training.k=16 diffing.method.training.lr=1e-3
               diffing.method.training.validate_every_n_steps=100 diffing.method.optimization.warmup_steps=50
               diffing.method.training.threshold_start_step=50 diffing.method.training.dead_feature_threshold=1000000
               diffing.method.datasets.normalization.subsample_size=100000 diffing.method.evaluation.ce_num_sequences=16
               diffing.method.analysis.latent_activations.max_num_samples=300
               diffing.method.analysis.latent_activations.n_max_activations=10
               diffing.method.analysis.latent_scaling.num_samples=100000)
  echo
  echo "== diff_pca: incremental PCA of the differences, mpirun -n 2 =="
  read -r -a pca_extra <<< "${DEMO_PCA_ARGS:-diffing.method.training.batch_size=4096 diffing.method.analysis.max_activating_examples.n_max_activations=10 diffing.method.analysis.max_activating_examples.max_num_samples=300}"
  mpirun -n 2 --oversubscribe "$bin/diff_pca" "${pp_args[@]}" "${pca_extra[@]}" "${@:2}" 2>&1 | tee "$build/demo_pca.log"
  echo
  echo "== diff_sae: a BatchTopK SAE on the differences (512 latents), mpirun -n 2 =="
  read -r -a sae_extra <<< "${DEMO_SAE_ARGS:-}"
  mpirun -n 2 --oversubscribe "$bin/diff_sae" "${pp_args[@]}" "${dict_common[@]}" "${sae_extra[@]}" "${@:2}" 2>&1 |
    tee "$build/demo_sae.log"
  echo
  echo "== diff_crosscoder: a BatchTopK crosscoder on [base, organism] (1024 latents), mpirun -n 2 =="
  read -r -a cc_extra <<< "${DEMO_CC_ARGS:-diffing.method.training.expansion_factor=4 diffing.method.training.k_max=64 diffing.method.training.k_annealing_steps=50}"
  mpirun -n 2 --oversubscribe "$bin/diff_crosscoder" "${pp_args[@]}" "${dict_common[@]}" "${cc_extra[@]}" "${@:2}" 2>&1 |
    tee "$build/demo_cc.log"
  echo "findings of the dictionary methods:"
  grep -h -E "explain .* of the variance|CE loss recovered|finding:" "$build/demo_pca.log" "$build/demo_sae.log" \
    "$build/demo_cc.log" | sed 's/^\[[^]]*\] /  /' || true
  if [ -x "$build/tests/dict_meaning_check" ]; then  # latents peaking on glacier-honey domain tokens (from the data)
    results_dir=$("$bin/diffkit" config --get diffing.results_dir "${pp_args[@]}" "${@:2}")
    for m in sae_difference:sae crosscoder:crosscoder; do
      "$build/tests/dict_meaning_check" "$results_dir/${m%%:*}/results.h5" "${m##*:}" models/demo/base \
        data/demo/glacier_honey.train.jsonl.gz data/demo/pretrain.train.jsonl.gz | sed 's/^/  /' || true
    done
    echo "  (tests/methods/dict_meaning.sh checks that these shares discriminate: the cat-post organism on the same"
    echo "   documents gives about a third of the SAE's share, and none of the crosscoder's lowest-norm latents)"
  fi
fi
echo
echo "Stages marked 'not built yet' arrive with their issues and then join this demo (README: status table)."
