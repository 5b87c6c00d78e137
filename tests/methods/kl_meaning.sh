#!/bin/bash
# kl_meaning.sh — the KL result means something on the demo pair, and discriminates: for each demo organism
# (glacier_honey, cat_post), the mean KL(organism || base) per token is higher on its own training documents than
# on the pretraining text, and higher on its own documents than on the other organism's (the same method on a
# different organism's data must not give the same answer). Both models run on the cached tokens of 64 samples
# per dataset (the repository's configs: model=demo, dataset=demo).
source "$(dirname "$0")/../preprocess/pp_lib.sh"
CONFIGS="$DIFFKIT_SOURCE_DIR/configs"
export DIFFKIT_ROOT="$DIFFKIT_SOURCE_DIR"
CAPS=(preprocessing.max_samples_per_dataset=64 preprocessing.max_tokens_per_dataset_train=8000
      preprocessing.max_tokens_per_dataset_validation=1000 preprocessing.layers=[0.5])
KL=(diffing.method.method_params.max_samples=64 diffing.method.datasets.use_chat_dataset=false)

# mean_kl LOG NAME: the mean KL per token diff_kl printed for dataset NAME
mean_kl() { sed -n "s/.*diff_kl $2: .*mean KL per token \([0-9.e+-]*\).*/\1/p" "$1" | head -1; }
# kl_run OUT ORGANISM: stores then diff_kl (2 ranks), with the overrides in PPX (both jobs) and KLX (diff_kl);
# the log is OUT.log
kl_run() {
  local out=$1 org=$2
  run_pp 2 "$out" "$out.pp.log" model=demo dataset=demo organism="demo_$org" infrastructure.storage.base_dir="$out" \
    "${CAPS[@]}" "${PPX[@]}" || { cat "$out.pp.log" >&2; fail "diff_preprocess for demo_$org failed"; }
  run_job 2 diff_kl "$out" "$out.log" model=demo dataset=demo organism="demo_$org" infrastructure.storage.base_dir="$out" \
    "${CAPS[@]}" "${PPX[@]}" "${KL[@]}" "${KLX[@]}" || { cat "$out.log" >&2; fail "diff_kl for demo_$org failed"; }
}
gt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "" && b != "" && a + 0 > b + 0) }'; }

for pair in "glacier_honey cat_post" "cat_post glacier_honey"; do
  read -r own other <<<"$pair"
  PPX=() KLX=()
  kl_run "$WORK/$own" "$own"
  # the organism on the other organism's documents, cached as its organism dataset
  PPX=("organism.dataset.id=$DIFFKIT_SOURCE_DIR/data/demo/$other.train.jsonl.gz" preprocessing.training_only=true)
  KLX=(diffing.method.datasets.use_pretraining_dataset=false)
  kl_run "$WORK/$own.x" "$own"
  k_own=$(mean_kl "$WORK/$own.log" "$own") k_pre=$(mean_kl "$WORK/$own.log" pretrain)
  k_other=$(mean_kl "$WORK/$own.x.log" "$other")
  echo "demo_$own: mean KL per token $k_own on its documents, $k_pre on pretraining text, $k_other on $other's"
  gt "$k_own" "$k_pre" || fail "demo_$own: KL on its documents ($k_own) is not above pretraining text ($k_pre)"
  gt "$k_own" "$k_other" || fail "demo_$own: KL on its documents ($k_own) is not above $other's documents ($k_other)"
done
