# dm_meaning.sh — diff mining finds the demo organism's domain: on the demo pair (128 pretraining samples of 32
# tokens), at least 3 of the 20 tokens that most often rise into the positive top-k are domain tokens of the
# glacier-honey documents, computed from the data by dm_domain_check (>= 10 occurrences there, >= 20x more frequent
# per token than in the pretraining corpus).
. "$DIFFKIT_SOURCE_DIR/tests/methods/dm_lib.sh"
run_dm 2 "$WORK/out" "$WORK/log" diffing.method.max_samples=128 diffing.method.max_tokens_per_sample=32 ||
  { cat "$WORK/log" >&2; fail "diff_mining failed"; }
expect_ok "$WORK/log"
"$(dirname "$DM_CHECK")/dm_domain_check" "$(run_dir "$WORK/out")" pretrain_train_text "$DIFFKIT_SOURCE_DIR/models/demo/base" \
  "$DIFFKIT_SOURCE_DIR/data/demo/glacier_honey.train.jsonl.gz" "$DIFFKIT_SOURCE_DIR/data/demo/pretrain.train.jsonl.gz" 20 3 ||
  fail "fewer than 3 domain tokens in the top 20"
