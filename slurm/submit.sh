#!/usr/bin/env bash
# submit.sh STAGE [overrides...] — submits one stage alone, with its partition, account, node shape and time limit
# from infrastructure.slurm.* (configs/infrastructure/slurm.yaml), and prints the job id:
#     bash slurm/submit.sh preprocess model=qwen3_1_7B organism=cake_bake
#     METHODS="kl adl" bash slurm/submit.sh method model=...     (one array task per method, at most MAX_PARALLEL
#                                                                 or max_parallel_methods at once)
# STAGE: preprocess | method | agent | report. SBATCH_EXTRA adds sbatch options (e.g. "--dependency=afterok:123").
set -euo pipefail
source "${DIFFKIT_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}/slurm/common.sh"
stage=${1:?usage: submit.sh preprocess|method|agent|report [overrides...]}; shift
case $stage in
  preprocess|agent|report) dk_require "diff_$stage"; extra=() ;;
  method)
    read -r -a methods <<< "${METHODS:?set METHODS to the method executables without diff_, e.g. \"kl adl\"}"
    for m in "${methods[@]}"; do dk_require "diff_$m"; done
    extra=(--export=ALL,METHODS="$METHODS"
           --array=0-$(( ${#methods[@]} - 1 ))%"${MAX_PARALLEL:-$(dk_slurm max_parallel_methods "$@")}") ;;
  *) echo "submit.sh: unknown stage '$stage': expected preprocess, method, agent or report" >&2; exit 2 ;;
esac
"$DIFFKIT_BIN/diffkit" config infrastructure=slurm "$@" > /dev/null   # the configuration must compose
mapfile -t opts < <(dk_stage_opts "$stage" "$@")
read -r -a more <<< "${SBATCH_EXTRA:-}"
mkdir -p logs
sbatch --parsable "${opts[@]}" "${extra[@]}" "${more[@]}" "$DIFFKIT_ROOT/slurm/$stage.sbatch" "$@"
