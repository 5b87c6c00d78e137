#!/usr/bin/env bash
# check_configs.sh DIFFKIT CONFIG_DIR — every shipped group file must compose: each model with the default
# organism, each organism with an explicit model and (when it lists finetuned models) with model=auto,
# each infrastructure (slurm with DIFFKIT_STORAGE set), and every model named by an organism must exist.
set -u
bin=$1 dir=$2 fail=0 count=0
try() {
  count=$((count + 1))
  if ! out=$("$@" 2>&1 >/dev/null); then echo "FAIL: $*"; echo "$out"; fail=$((fail + 1)); fi
}
for f in "$dir"/model/*.yaml; do try "$bin" config --config-dir "$dir" model="$(basename "$f" .yaml)"; done
for f in "$dir"/organism/*.yaml; do
  o=$(basename "$f" .yaml)
  try "$bin" config --config-dir "$dir" organism="$o" model=qwen3_1_7B
  if grep -q '^finetuned_models:$' "$f"; then try "$bin" config --config-dir "$dir" organism="$o"; fi
  # every model an organism names must have a model config
  for m in $(awk '/^finetuned_models:/{on=1; next} on && /^  [A-Za-z0-9_]+:/{sub(":","",$1); print $1} /^[^ #]/{on=0}' "$f"); do
    count=$((count + 1))
    [ -f "$dir/model/$m.yaml" ] || { echo "FAIL: $f names model $m, but $dir/model/$m.yaml is missing"; fail=$((fail + 1)); }
  done
done
for f in "$dir"/infrastructure/*.yaml; do
  DIFFKIT_STORAGE=/scratch/diffkit try "$bin" config --config-dir "$dir" infrastructure="$(basename "$f" .yaml)"
done
echo "check_configs: $((count - fail)) passed, $fail failed"
[ "$fail" -eq 0 ]
