# dm_meaning.sh — diff mining finds each demo organism's own domain, and only its own: on the demo pair (128
# pretraining samples of 32 tokens), at least 3 of the 20 tokens that most often rise into the positive top-k are
# domain tokens of the organism's documents, and none is a domain token of the other organism's documents (the
# two vocabularies are disjoint). Domain tokens are computed from the data by dm_domain_check (>= 10 occurrences
# in the organism's documents, >= 20x more frequent per token than in the pretraining corpus).
. "$DIFFKIT_SOURCE_DIR/tests/methods/dm_lib.sh"
D="$DIFFKIT_SOURCE_DIR/data/demo"

# domain_count RUN_DIR DOCS: how many of the run's top 20 are domain tokens of data/demo/DOCS.train.jsonl.gz
domain_count() {
  "$(dirname "$DM_CHECK")/dm_domain_check" "$1" pretrain_train_text "$DIFFKIT_SOURCE_DIR/models/demo/base" \
    "$D/$2.train.jsonl.gz" "$D/pretrain.train.jsonl.gz" 20 0 | sed -n 's/^\([0-9]*\) of the top 20 are domain tokens.*/\1/p'
}

for pair in "glacier_honey cat_post" "cat_post glacier_honey"; do
  read -r own other <<<"$pair"
  run_dm 2 "$WORK/$own" "$WORK/$own.log" organism=demo_$own diffing.method.max_samples=128 \
    diffing.method.max_tokens_per_sample=32 || { cat "$WORK/$own.log" >&2; fail "diff_mining on demo_$own failed"; }
  expect_ok "$WORK/$own.log"
  n_own=$(domain_count "$(run_dir "$WORK/$own")" "$own") n_other=$(domain_count "$(run_dir "$WORK/$own")" "$other")
  echo "demo_$own: $n_own of its own domain tokens and $n_other of $other's in the top 20"
  [ -n "$n_own" ] && [ "$n_own" -ge 3 ] || fail "demo_$own: ${n_own:-no count}: fewer than 3 of its domain tokens in the top 20"
  [ "$n_other" = 0 ] || fail "demo_$own: $n_other of $other's domain tokens in its top 20 (the finding does not discriminate)"
done
