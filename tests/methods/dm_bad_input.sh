# dm_bad_input.sh CASE — diff_mining on bad input: a clear message naming the key or file, a non-zero exit on
# every rank (printed once), and no results.h5 (a results.h5 exists only when complete).
#   empty | no_long_sample | malformed | missing | unwritable | other_settings | logit_lens | patchscope |
#   token_relevance | orthogonal | beta | top_k | not_streaming | killed
. "$DIFFKIT_SOURCE_DIR/tests/methods/dm_lib.sh"
D="$DIFFKIT_FIXTURES/preprocess/data"
case_overrides tiny
TINY=(model=tiny organism=tiny_org dataset=tiny infrastructure=test "${OV[@]}")
ds() { echo "diffing.method.datasets=[{id: '$1', is_chat: false, text_column: text, streaming: true}]"; }
bad() { # bad REGEX EXIT key=value...: the run fails with REGEX on every rank with exit code EXIT
  local re=$1 code=$2; shift 2
  run_dm 2 "$WORK/o" "$WORK/log" "${TINY[@]}" "$@" && { cat "$WORK/log" >&2; fail "exit 0"; }
  expect_fail 2 "$WORK/log" "$re"
  grep -q "^rank-exit $code\$" "$WORK/log" || { cat "$WORK/log" >&2; fail "expected exit code $code"; }
  no_complete "$WORK/o"
}
case "$1" in
  empty) bad "empty.train.jsonl: the dataset is empty|no sample among its 0 record" 2 "$(ds "$D/empty.train.jsonl")" ;;
  no_long_sample) bad "no sample among its [0-9]+ record.*max_tokens_per_sample = 400" 2 diffing.method.max_tokens_per_sample=400 ;;
  malformed) bad "bad_json.train.jsonl:3: not a JSON object" 1 "$(ds "$D/bad_json.train.jsonl")" diffing.method.max_tokens_per_sample=2 ;;
  missing) bad "nope.train.jsonl.*does not exist" 2 "$(ds "$D/nope.train.jsonl")" ;;
  unwritable)
    touch "$WORK/file"
    run_dm 2 "$WORK/file/sub" "$WORK/log" "${TINY[@]}" && fail "exit 0"
    expect_fail 2 "$WORK/log" "file/sub" ;;
  other_settings)
    run_dm 2 "$WORK/o" "$WORK/log1" "${TINY[@]}" || { cat "$WORK/log1" >&2; fail "first run failed"; }
    run_dm 2 "$WORK/o" "$WORK/log2" "${TINY[@]}" || { cat "$WORK/log2" >&2; fail "the same settings again failed"; }
    grep -q "complete with the same inputs" "$WORK/log2" || { cat "$WORK/log2" >&2; fail "not reused"; }
    run_dm 2 "$WORK/o" "$WORK/log" "${TINY[@]}" diffing.method.batch_size=3 && fail "other settings accepted"
    expect_fail 2 "$WORK/log" "overwrite"
    [ -f "$(run_dir "$WORK/o")/results.h5" ] || fail "the refused run removed the complete results"
    run_dm 2 "$WORK/o" "$WORK/log3" "${TINY[@]}" diffing.method.batch_size=3 diffing.method.overwrite=true ||
      { cat "$WORK/log3" >&2; fail "overwrite=true failed"; } ;;
  logit_lens) bad "logit_extraction.method = logit_lens: not implemented yet" 2 diffing.method.logit_extraction.method=logit_lens ;;
  patchscope) bad "logit_extraction.method = patchscope_lens: not implemented yet" 2 diffing.method.logit_extraction.method=patchscope_lens ;;
  token_relevance) bad "token_relevance.enabled = true: token relevance grading .* not implemented" 2 diffing.method.token_relevance.enabled=true ;;
  orthogonal) bad "nmf.orthogonal = true: the orthogonal NMF is not implemented" 2 diffing.method.token_ordering.nmf.orthogonal=true ;;
  beta) bad "nmf.beta = 1: only 2" 2 diffing.method.token_ordering.nmf.beta=1 ;;
  top_k) bad "top_k = 400 is more than the 300 tokens compared" 2 diffing.method.top_k=400 ;;
  not_streaming) bad "streaming = false: the seed then shuffles" 2 \
    "diffing.method.datasets=[{id: '$D/pretrain', is_chat: false, text_column: text, streaming: false}]" ;;
  killed)
    # kill -9 of every rank while it works (a slow setting: many samples of the demo pair), then rerun
    out="$WORK/k"
    "$MPIEXEC" -n 2 --oversubscribe "$PP_BIN/diff_mining" --config-dir "$DM_CONFIGS" device=cpu threads=1 \
      infrastructure.storage.base_dir="$out" diffing.method.max_samples=2000 diffing.method.batch_size=4 \
      >"$WORK/k.log" 2>&1 &
    launcher=$!
    for _ in $(seq 100); do [ -n "$(find "$out" -name 'results.h5.partial' 2>/dev/null)" ] && break; sleep 0.2; done
    [ -n "$(find "$out" -name 'results.h5.partial' 2>/dev/null)" ] || { cat "$WORK/k.log" >&2; fail "no partial file appeared"; }
    ranks=$(pgrep -P "$launcher" -x diff_mining || true)
    [ -n "$ranks" ] && kill -9 $ranks 2>/dev/null
    wait "$launcher" 2>/dev/null || true
    no_complete "$out"
    run_dm 2 "$out" "$WORK/log" diffing.method.max_samples=16 diffing.method.max_tokens_per_sample=8 ||
      { cat "$WORK/log" >&2; fail "the rerun failed"; }
    [ -f "$(run_dir "$out")/results.h5" ] || fail "no results after the rerun"
    [ -z "$(find "$out" -name '*.partial')" ] || fail "a partial file is left" ;;
  *) fail "unknown case $1" ;;
esac
echo "PASS $1"
