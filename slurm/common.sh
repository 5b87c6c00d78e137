# common.sh — sourced by every diffkit sbatch script. Holds the site knobs and the launcher; no pipeline
# logic lives in the SLURM files (all behaviour is in the binaries and the YAML configs).
#
# Site knobs (environment, all optional):
#   DIFFKIT_ROOT     checkout with configs/ (default: the folder above slurm/)
#   DIFFKIT_BIN      folder of the built binaries (default: $DIFFKIT_ROOT/build/bin)
#   DIFFKIT_STORAGE  where activations, results and run records go (infrastructure=slurm requires it)
#   LAUNCHER         srun (default: direct launch through PMIx) or mpirun (sites without Slurm PMIx)
#   SRUN_MPI         --mpi= value for srun (default pmix)
#   MODULES          space-separated `module load` names (e.g. "cuda/12.4 openmpi/4.1 hdf5/1.10-mpi")
#   NCCL_DEBUG etc.  passed through untouched

DIFFKIT_ROOT=${DIFFKIT_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
DIFFKIT_BIN=${DIFFKIT_BIN:-$DIFFKIT_ROOT/build/bin}
export DIFFKIT_CONFIG_DIR=${DIFFKIT_CONFIG_DIR:-$DIFFKIT_ROOT/configs}
LAUNCHER=${LAUNCHER:-srun}

if [ -n "${MODULES:-}" ] && command -v module >/dev/null 2>&1; then
  for m in $MODULES; do module load "$m"; done
fi

# dk_require BINARY: stop with a clear message when a stage has not been built.
dk_require() {
  if [ ! -x "$DIFFKIT_BIN/$1" ]; then
    echo "diffkit: $DIFFKIT_BIN/$1 does not exist: build it first (make build in $DIFFKIT_ROOT)" >&2
    exit 2
  fi
}

# dk_slurm KEY OVERRIDES...: infrastructure.slurm.KEY of the configuration (an empty line for null).
dk_slurm() {
  local key=$1; shift
  "$DIFFKIT_BIN/diffkit" config --get "infrastructure.slurm.$key" infrastructure=slurm "$@"
}

# dk_stage_opts STAGE OVERRIDES...: the sbatch options of one stage (preprocess | method | agent | report), one per
# line, from infrastructure.slurm.*: partition and account when set, the node shape for preprocessing (one rank per
# GPU), the stage's time limit (time_STAGE). They override the #SBATCH defaults written in each script.
dk_stage_opts() {
  local stage=$1 v; shift
  v=$(dk_slurm partition "$@"); if [ -n "$v" ]; then echo "--partition=$v"; fi
  v=$(dk_slurm account "$@"); if [ -n "$v" ]; then echo "--account=$v"; fi
  if [ "$stage" = preprocess ]; then
    echo "--nodes=$(dk_slurm nodes "$@")"
    echo "--ntasks-per-node=$(dk_slurm ntasks_per_node "$@")"
    echo "--gpus-per-node=$(dk_slurm gpus_per_node "$@")"
    echo "--cpus-per-task=$(dk_slurm cpus_per_task "$@")"
  fi
  echo "--time=$(dk_slurm "time_$stage" "$@")"
}

# dk_record_run DIR ARGS...: what ran, for provenance (git commit, job, environment, resolved config).
dk_record_run() {
  local dir=$1; shift
  mkdir -p "$dir"
  git -C "$DIFFKIT_ROOT" rev-parse HEAD > "$dir/git_commit.txt" 2>/dev/null || true
  [ -n "${SLURM_JOB_ID:-}" ] && scontrol show job "$SLURM_JOB_ID" > "$dir/slurm_job.txt" 2>/dev/null
  env | grep -E '^(SLURM|NCCL|OMPI|HDF5|CUDA)_' | sort > "$dir/environment.txt"
  "$DIFFKIT_BIN/diffkit" config "$@" > "$dir/config.yaml"
  echo "restart count: ${SLURM_RESTART_COUNT:-0}" >> "$dir/environment.txt"
}

# dk_launch BINARY ARGS...: one rank per GPU over the whole allocation; a failing rank ends the step.
dk_launch() {
  local exe=$DIFFKIT_BIN/$1; shift
  if [ "$LAUNCHER" = mpirun ]; then
    mpirun --bind-to none "$exe" "$@" &
  else
    srun --mpi="${SRUN_MPI:-pmix}" --kill-on-bad-exit=1 "$exe" "$@" &
  fi
  local pid=$!
  # preemption: SLURM sends USR1 to this shell (--signal=B:USR1@T); pass it on so the job checkpoints
  trap 'kill -USR1 $pid 2>/dev/null' USR1
  wait $pid; local rc=$?
  # wait returns early when a trapped signal arrives; wait again for the real exit status
  while kill -0 $pid 2>/dev/null; do wait $pid; rc=$?; done
  return $rc
}
