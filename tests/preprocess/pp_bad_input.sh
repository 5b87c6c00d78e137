#!/bin/bash
# Bad input: each case gives a clear message, a non-zero exit on every rank, and no store marked complete.
#     pp_bad_input.sh CASE     (missing | empty | malformed | malformed_skip | short | tokenizers | mismatch | hf_id
#                               | trailing | truncated_gz | truncated_gz_skip | nan_adapter | locked
#                               | locked_overwrite | file_size_limit | batch_size_zero)
# The later cases are issue 18's: nothing may be lost or stored wrong silently.
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
  trailing)   # a line with a second object after the first: an error, not the first object kept
    head -3 "$D/org.train.jsonl" >"$WORK/glued.train.jsonl"
    printf '{"text": "one two three four"}{"text": "dropped before"}\n' >>"$WORK/glued.train.jsonl"
    run_pp 2 "$WORK/o" "$WORK/log" "${ORG[@]}" organism.dataset.id="$WORK/glued.train.jsonl" organism.dataset.splits=[train] \
      && fail "exit 0"
    expect_fail 2 "$WORK/log" "glued.train.jsonl:4: malformed record: not a JSON object: trailing data after the JSON value"
    no_complete "$WORK/o" ;;
  truncated_gz|truncated_gz_skip)   # a cut-off .jsonl.gz is an I/O error, never a skippable record
    gzip -c "$D/org.train.jsonl" >"$WORK/full.gz"
    head -c $(($(stat -c %s "$WORK/full.gz") / 2)) "$WORK/full.gz" >"$WORK/cut.train.jsonl.gz"
    extra=(); [ "$1" = truncated_gz_skip ] && extra=(preprocessing.on_bad_record=skip)
    run_pp 2 "$WORK/o" "$WORK/log" "${ORG[@]}" organism.dataset.id="$WORK/cut.train.jsonl.gz" \
      organism.dataset.splits=[train] "${extra[@]}" && fail "exit 0"
    expect_fail 2 "$WORK/log" "cannot read .*cut.train.jsonl.gz: the gzip data ends early .*truncated"
    grep -q "malformed record" "$WORK/log" && { cat "$WORK/log" >&2; fail "reported as a malformed record"; }
    no_complete "$WORK/o" ;;
  nan_adapter)   # an adapter whose last tensors are NaN: the store must not be marked complete
    cp -r "$DIFFKIT_FIXTURES/engine/adapters/llama_lora" "$WORK/nan_lora"
    f="$WORK/nan_lora/adapter_model.safetensors"
    head -c 256 /dev/zero | tr '\0' '\377' | dd of="$f" bs=1 seek=$(($(stat -c %s "$f") - 256)) conv=notrunc status=none
    run_pp 2 "$WORK/o" "$WORK/log" "${ORG[@]}" organism.finetuned_models.tiny.default.adapter_id="$WORK/nan_lora" \
      && fail "exit 0"
    expect_fail 2 "$WORK/log" "nan_lora/org/train: the model produced non-finite activations \(NaN\) at layer [0-9]+, sequence [0-9]+"
    [ -e "$WORK/o/activations/llama_text/org/train.h5" ] || fail "the base store (finite) was not written"
    no_complete "$WORK/o/activations/nan_lora" ;;
  locked|locked_overwrite)   # another job holds the store: refuse at once, touch nothing
    store="$WORK/o/activations/llama_text/org/train.h5"
    mkdir -p "$(dirname "$store")"
    echo "pid 4242 on host node17 since 2025-01-01T00:00:00Z" >"$store.lock"
    echo "the other job's half-written store" >"$store.partial"
    extra=(); [ "$1" = locked_overwrite ] && extra=(preprocessing.overwrite=true)
    exec 9<"$store.lock"   # this shell is the other job: it holds the lock while diff_preprocess runs
    flock -n 9 || fail "cannot take the lock for the test"
    run_pp 2 "$WORK/o" "$WORK/log" "${ORG[@]}" "${extra[@]}"; rc=$?
    exec 9<&-
    [ "$rc" != 0 ] || fail "exit 0"
    expect_fail 2 "$WORK/log" "train.h5 is being written by another job \(pid 4242 on host node17 since"
    [ "$(cat "$store.partial")" = "the other job's half-written store" ] || fail "the other job's .partial was touched"
    no_complete "$WORK/o" ;;
  file_size_limit)   # disk full as a file-size limit on the ranks: a message naming the store, no HDF5 stack
    RANKS_ULIMIT_F=1000 run_pp 2 "$WORK/o" "$WORK/log" "${ORG[@]}" || true
    grep -Eq "error: .*activations/llama_text/org/train.h5.partial grew past the file-size limit \(File too large\)" \
      "$WORK/log" || { cat "$WORK/log" >&2; fail "no file-size message"; }
    grep -q "HDF5-DIAG\|error stack" "$WORK/log" && { cat "$WORK/log" >&2; fail "an HDF5 error stack was printed"; }
    grep -q '^rank-exit 0' "$WORK/log" && { cat "$WORK/log" >&2; fail "a rank exited 0"; }
    no_complete "$WORK/o" ;;
  batch_size_zero)
    run_pp 2 "$WORK/o" "$WORK/log" "${ORG[@]}" preprocessing.batch_size=0 && fail "exit 0"
    expect_fail 2 "$WORK/log" "preprocessing.batch_size=0: it must be at least 1" ;;
  *) fail "unknown case $1" ;;
esac
echo "PASS"
