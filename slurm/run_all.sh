#!/usr/bin/env bash
#SBATCH --job-name=diff_run_all
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#SBATCH --time=00:10:00
#SBATCH --output=logs/%x-%j.out
# The whole pipeline as a chain of SLURM jobs:
#     sbatch slurm/run_all.sh model=qwen3_1_7B organism=cake_bake        (or: bash slurm/run_all.sh ...)
# submits preprocessing -> one array task per method (afterok) -> agent evaluation (afterok), each with
# --kill-on-invalid-dep=yes so a failed stage cancels what depends on it, and prints the job ids.
# METHODS (default below) and MAX_PARALLEL choose the methods; overrides go to every stage; partition,
# account, node shape and time limits come from infrastructure.slurm.* in the configuration.
set -euo pipefail
source "${DIFFKIT_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}/slurm/common.sh"
overrides=(infrastructure=slurm "$@")
# Fail now, not hours later: the configuration must compose and every stage must be built.
"$DIFFKIT_BIN/diffkit" config "${overrides[@]}" > /dev/null
cfg() { "$DIFFKIT_BIN/diffkit" config --get "infrastructure.slurm.$1" "${overrides[@]}"; }

METHODS=${METHODS:-"kl adl pca sae crosscoder activation_analysis"}
MAX_PARALLEL=${MAX_PARALLEL:-$(cfg max_parallel_methods)}
read -r -a methods <<< "$METHODS"
dk_require diff_preprocess
for m in "${methods[@]}"; do dk_require "diff_$m"; done
dk_require diff_agent

# sbatch options from configs/infrastructure/<name>.yaml (infrastructure.slurm.*) override the #SBATCH
# defaults written in each script.
site=()
partition=$(cfg partition); [ -n "$partition" ] && site+=(--partition="$partition")
account=$(cfg account); [ -n "$account" ] && site+=(--account="$account")
gpus=(--nodes="$(cfg nodes)" --ntasks-per-node="$(cfg ntasks_per_node)" --gpus-per-node="$(cfg gpus_per_node)"
      --cpus-per-task="$(cfg cpus_per_task)")

mkdir -p logs
slurm_dir=$DIFFKIT_ROOT/slurm
pre=$(sbatch --parsable --export=ALL "${site[@]}" "${gpus[@]}" --time="$(cfg time_preprocess)" \
        "$slurm_dir/preprocess.sbatch" "$@")
arr=$(sbatch --parsable --export=ALL,METHODS="$METHODS" "${site[@]}" --time="$(cfg time_method)" \
        --dependency=afterok:"$pre" --kill-on-invalid-dep=yes \
        --array=0-$(( ${#methods[@]} - 1 ))%"$MAX_PARALLEL" "$slurm_dir/method.sbatch" "$@")
agent=$(sbatch --parsable --export=ALL "${site[@]}" --time="$(cfg time_agent)" \
          --dependency=afterok:"$arr" --kill-on-invalid-dep=yes "$slurm_dir/agent.sbatch" "$@")
echo "submitted: preprocess $pre -> methods $arr (${methods[*]}) -> agent $agent"
