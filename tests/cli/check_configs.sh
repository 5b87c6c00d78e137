#!/usr/bin/env bash
# check_configs.sh DIFFKIT CONFIG_DIR — every shipped group file must compose:
#   - each model config alone (organism=null: a base-model-only run); `diffkit config` also refuses a model
#     whose `architecture` the engine does not run, naming it, so this checks that every model is supported;
#   - each organism with model=auto when it lists finetuned models (the seed's default pairing), else with an
#     explicit model, and every model an organism names must have a model config;
#   - each infrastructure (slurm with DIFFKIT_STORAGE set).
# The compositions run 4 at a time: one `diffkit config` costs about a second, mostly loading its libraries.
set -u
bin=$1 dir=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/dk_check_configs.XXXXXX")
trap 'rm -rf "$work"' EXIT
cmds=$work/commands fail=0 count=0
for f in "$dir"/model/*.yaml; do
  m=$(basename "$f" .yaml)
  [ "$m" = auto ] && continue   # the sentinel: never loaded as a model (configs/model/auto.yaml)
  echo "model=$m organism=null" >>"$cmds"
done
echo "model=auto" >>"$cmds"
for f in "$dir"/organism/*.yaml; do
  o=$(basename "$f" .yaml)
  models=$(awk '/^finetuned_models:/{on=1; next} on && /^  [A-Za-z0-9_.-]+:/{sub(":","",$1); print $1} /^[^ #]/{on=0}' "$f")
  if [ -n "$models" ]; then echo "organism=$o model=auto" >>"$cmds"; else echo "organism=$o model=qwen3_1_7B" >>"$cmds"; fi
  for m in $models; do   # every model an organism names must have a model config
    count=$((count + 1))
    [ -f "$dir/model/$m.yaml" ] || { echo "FAIL: $f names model $m, but $dir/model/$m.yaml is missing"; fail=$((fail + 1)); }
  done
done
for f in "$dir"/infrastructure/*.yaml; do echo "infrastructure=$(basename "$f" .yaml)" >>"$cmds"; done
export bin dir
xargs -P 4 -L 1 sh -c 'if out=$(DIFFKIT_STORAGE=/scratch/diffkit "$bin" config --config-dir "$dir" "$@" 2>&1 >/dev/null); then
    echo "ok"; else echo "FAIL: diffkit config $*"; echo "$out"; fi' sh <"$cmds" >"$work/results"
count=$((count + $(wc -l <"$cmds")))
fail=$((fail + $(grep -c '^FAIL' "$work/results")))
grep -v '^ok$' "$work/results"
echo "check_configs: $((count - fail)) passed, $fail failed"
[ "$fail" -eq 0 ]
