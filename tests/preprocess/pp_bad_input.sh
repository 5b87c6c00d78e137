#!/bin/bash
# Bad input: each case gives a clear message, a non-zero exit on every rank, and no store marked complete.
#     pp_bad_input.sh CASE     (missing | empty | malformed | malformed_skip | short | tokenizers | mismatch | hf_id)
source "$(dirname "$0")/pp_lib.sh"
D="$DIFFKIT_FIXTURES/preprocess/data"
ORG=(preprocessing.training_only=true)
case "$1" in
  missing)
    run_pp 2 "$WORK/o" "$WORK/log" "${ORG[@]}" organism.dataset.id="$D/nope.train.jsonl" && fail "exit 0"
    expect_fail 2 "$WORK/log" "nope.train.jsonl.*does not exist"
    no_complete "$WORK/o" ;;
  hf_id)
    run_pp 2 "$WORK/o" "$WORK/log" "${ORG[@]}" organism.dataset.id=science-of-finetuning/some-dataset && fail "exit 0"
    expect_fail 2 "$WORK/log" "not a local .jsonl.*give a local path"
    no_complete "$WORK/o" ;;
  empty)
    run_pp 2 "$WORK/o" "$WORK/log" "${ORG[@]}" organism.dataset.id="$D/empty.train.jsonl" organism.dataset.splits=[train] \
      && fail "exit 0"
    expect_fail 2 "$WORK/log" "empty.train.jsonl: the dataset is empty"
    no_complete "$WORK/o" ;;
  malformed)
    run_pp 2 "$WORK/o" "$WORK/log" "${ORG[@]}" organism.dataset.id="$D/bad_json.train.jsonl" organism.dataset.splits=[train] \
      && fail "exit 0"
    expect_fail 2 "$WORK/log" "bad_json.train.jsonl:3: malformed record"
    no_complete "$WORK/o" ;;
  malformed_skip)
    run_pp 2 "$WORK/o" "$WORK/log" "${ORG[@]}" organism.dataset.id="$D/bad_json.train.jsonl" organism.dataset.splits=[train] \
      preprocessing.on_bad_record=skip || { cat "$WORK/log"; fail "on_bad_record=skip failed"; }
    grep -q 'bad_json.train.jsonl:3: malformed record skipped' "$WORK/log" || fail "skip not logged"
    expect_ok "$WORK/log" ;;
  short)
    run_pp 2 "$WORK/o" "$WORK/log" "${ORG[@]}" organism.dataset.id="$D/short.train.jsonl" organism.dataset.splits=[train] \
      && fail "exit 0"
    expect_fail 2 "$WORK/log" "short.train.jsonl:2: the record gives a sequence of [01] token"
    no_complete "$WORK/o" ;;
  tokenizers)
    run_pp 2 "$WORK/o" "$WORK/log" "${ORG[@]}" organism_variant=other_tokenizer && fail "exit 0"
    expect_fail 2 "$WORK/log" "use different tokenizers"
    no_complete "$WORK/o" ;;
  mismatch)
    run_pp 2 "$WORK/o" "$WORK/log1" "${ORG[@]}" || { cat "$WORK/log1"; fail "first run failed"; }
    before=$(md5sum "$WORK/o/activations/llama_text/org/train.h5")
    run_pp 2 "$WORK/o" "$WORK/log" "${ORG[@]}" preprocessing.context_len=40 && fail "exit 0"
    expect_fail 2 "$WORK/log" "refusing to touch an existing store.*another plan.*overwrite=true"
    [ "$before" = "$(md5sum "$WORK/o/activations/llama_text/org/train.h5")" ] || fail "the refused store was modified"
    run_pp 2 "$WORK/o" "$WORK/log2" "${ORG[@]}" preprocessing.context_len=40 preprocessing.overwrite=true \
      || { cat "$WORK/log2"; fail "overwrite=true failed"; }
    grep -q 'replacing it' "$WORK/log2" || fail "overwrite not logged" ;;
  *) fail "unknown case $1" ;;
esac
echo "PASS"
