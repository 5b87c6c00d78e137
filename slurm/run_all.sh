#!/usr/bin/env bash
#SBATCH --job-name=diff_run_all
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#SBATCH --time=00:10:00
#SBATCH --output=logs/%x-%j.out
# The whole pipeline as a chain of SLURM jobs (what `diffkit run` does on one machine):
#     sbatch slurm/run_all.sh model=qwen3_1_7B organism=cake_bake        (or: bash slurm/run_all.sh ...)
# submits preprocessing (one rank per GPU) -> one array task per method (afterok) -> agent evaluation (afterok on
# the whole array) -> report (afterok on the agent), each dependent with --kill-on-invalid-dep=yes so a failed
# stage cancels every stage after it, and prints the job ids. Each stage goes through slurm/submit.sh, which any
# stage can also be submitted with alone; partition, account, node shape and time limits come from
# infrastructure.slurm.* in the configuration. METHODS (the method executables without diff_; default below)
# and MAX_PARALLEL choose the methods; overrides go to every stage.
set -euo pipefail
source "${DIFFKIT_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}/slurm/common.sh"
# Fail now, not hours later: the configuration must compose and every stage must be built.
"$DIFFKIT_BIN/diffkit" config infrastructure=slurm "$@" > /dev/null
# the default of pipeline.methods (configs/pipeline/default.yaml) as executables: diff_kl, diff_mining, diff_adl, ...
# (diff_amplification also needs diffing.method.run.prompts_file)
export METHODS=${METHODS:-"kl mining adl activation_analysis pca sae crosscoder"}
read -r -a methods <<< "$METHODS"
dk_require diff_preprocess
for m in "${methods[@]}"; do dk_require "diff_$m"; done
dk_require diff_agent
dk_require diff_report

submit=$DIFFKIT_ROOT/slurm/submit.sh
after() { echo "--dependency=afterok:$1 --kill-on-invalid-dep=yes"; }
pre=$(bash "$submit" preprocess "$@")
arr=$(SBATCH_EXTRA=$(after "$pre") bash "$submit" method "$@")
agent=$(SBATCH_EXTRA=$(after "$arr") bash "$submit" agent "$@")
report=$(SBATCH_EXTRA=$(after "$agent") bash "$submit" report "$@")
echo "submitted: preprocess $pre -> methods $arr (${methods[*]}) -> agent $agent -> report $report"
