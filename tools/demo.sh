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
echo
echo "The bundled tiny model pair (models/demo/) and the stages above arrive with their issues; until then"
echo "the demo shows the configuration every stage will run with."
