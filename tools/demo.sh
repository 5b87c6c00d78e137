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
for stage in diff_preprocess diff_kl diff_adl diff_pca diff_sae diff_crosscoder diff_activation_analysis diff_agent; do
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
if [ -x "$bin/diff_preprocess" ] && demo_pair_complete; then
  echo
  echo "== diff_preprocess: mpirun -n 2 on the demo pair =="
  pp_args=(model=demo organism=demo_glacier_honey dataset=demo)
  read -r -a extra <<< "${DEMO_PREPROCESS_ARGS:-preprocessing.max_samples_per_dataset=2000 preprocessing.max_tokens_per_dataset_train=200000 preprocessing.max_tokens_per_dataset_validation=50000}"
  launcher=(mpirun)
  [ "$(id -u)" = 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  "${launcher[@]}" -n 2 --oversubscribe "$bin/diff_preprocess" "${pp_args[@]}" "${extra[@]}" "${@:2}"
  store_dir=$("$bin/diffkit" config --get preprocessing.activation_store_dir "${pp_args[@]}" "${@:2}")
  echo "activation stores (docs/formats.md):"
  find "$store_dir" -name '*.h5' | sort | sed 's/^/  /'
elif [ -x "$bin/diff_preprocess" ]; then
  echo
  echo "== diff_preprocess: skipped (the demo model pair in models/demo/ is not complete yet) =="
fi
echo
echo "Stages marked 'not built yet' arrive with their issues and then join this demo (README: status table)."
