#!/bin/bash
# Bad input: each case gives a clear message, the same non-zero exit on every rank, and no results marked complete.
#     adl_bad_input.sh CASE   (empty | nul | short | layer | unwritable | file_size_limit | other_settings | killed)
source "$(dirname "$0")/adl_lib.sh"
PRE=(diffing.method.max_samples=8 diffing.method.n=16 diffing.method.batch_size=4)
case "$1" in
  empty)          # a dataset without records
    : >"$WORK/empty.train.jsonl"
    run_adl 2 "$WORK/o" "$WORK/log" "${PRE[@]}" \
      "diffing.method.datasets=[{id: $WORK/empty.train.jsonl, is_chat: false, text_column: text}]" && fail "exit 0"
    expect_code 2 "$WORK/log" 2 "empty.train.jsonl: the dataset is empty"
    no_results "$WORK/o" ;;
  nul)            # a text holding U+0000: refused, never cut at the NUL
    printf '{"text": "bees make honey\\u0000 from glacier water and more words"}\n' >"$WORK/nul.train.jsonl"
    run_adl 2 "$WORK/o" "$WORK/log" "${PRE[@]}" \
      "diffing.method.datasets=[{id: $WORK/nul.train.jsonl, is_chat: false, text_column: text}]" && fail "exit 0"
    expect_code 2 "$WORK/log" 1 "nul.train.jsonl:1: the record holds U\+0000"
    no_results "$WORK/o" ;;
  short)          # no record gives n tokens
    run_adl 2 "$WORK/o" "$WORK/log" "${TINY[@]}" diffing.method.n=5000 \
      "diffing.method.datasets=[{id: $FX/preprocess/data/org.train.jsonl, is_chat: false, text_column: text}]" && fail "exit 0"
    expect_code 2 "$WORK/log" 2 "org.train.jsonl: none of its 23 records gives a sequence of diffing.method.n = 5000 tokens"
    no_results "$WORK/o" ;;
  layer)          # a layer outside the model (the tiny model has layers 0..2)
    run_adl 2 "$WORK/o" "$WORK/log" "${TINY[@]}" "${PRE[@]}" "diffing.method.layers=[0.5, 7]" && fail "exit 0"
    expect_code 2 "$WORK/log" 2 "diffing.method.layers\[1\] = 7 .* gives layer 7; the model has layers 0..2"
    no_results "$WORK/o" ;;
  unwritable)     # the results folder cannot be made: its parent is a file
    mkdir -p "$WORK/o" && : >"$WORK/o/blocker"
    run_adl 2 "$WORK/o" "$WORK/log" "${PRE[@]}" diffing.results_dir="$WORK/o/blocker/results" && fail "exit 0"
    expect_code 2 "$WORK/log" 1 "blocker"
    no_results "$WORK/o" ;;
  file_size_limit)  # writing results.h5 fails part way (ulimit -f): an error naming the file, nothing complete
    RANKS_ULIMIT_F=64 run_adl 2 "$WORK/o" "$WORK/log" "${PRE[@]}" && fail "exit 0"
    expect_code 2 "$WORK/log" 1 "results.h5.partial grew past the file-size limit"
    grep -q "HDF5-DIAG\|error stack" "$WORK/log" && { cat "$WORK/log" >&2; fail "an HDF5 error stack was printed"; }
    no_results "$WORK/o" ;;
  other_settings)  # an existing complete result with other settings: refused unless overwrite=true
    run_adl 1 "$WORK/o" "$WORK/log1" "${PRE[@]}" || { cat "$WORK/log1"; fail "first run failed"; }
    before=$(md5sum <"$WORK/o/$RESULTS_SUB/results.h5")
    run_adl 1 "$WORK/o" "$WORK/log2" "${PRE[@]}" || { cat "$WORK/log2"; fail "the same run again failed"; }
    grep -q "is complete with the same inputs" "$WORK/log2" || { cat "$WORK/log2"; fail "an identical rerun was not reused"; }
    run_adl 2 "$WORK/o" "$WORK/log" "${PRE[@]}" diffing.method.n=20 && fail "exit 0"
    expect_code 2 "$WORK/log" 2 "overwrite=true"
    [ "$before" = "$(md5sum <"$WORK/o/$RESULTS_SUB/results.h5")" ] || fail "the refused results were modified"
    run_adl 2 "$WORK/o" "$WORK/log3" "${PRE[@]}" diffing.method.n=20 diffing.method.overwrite=true \
      || { cat "$WORK/log3"; fail "overwrite=true failed"; } ;;
  killed)         # kill -9 while computing: nothing complete; the rerun completes, equal to an uninterrupted run
    ARGS=(diffing.method.max_samples=400 diffing.method.n=64)
    run_adl 1 "$WORK/ref" "$WORK/ref.log" "${ARGS[@]}" || { cat "$WORK/ref.log"; fail "reference run failed"; }
    # plain mpiexec (as in production): the rank is killed while the partial file exists
    "$MPIEXEC" -n 1 "$PP_BIN/diff_adl" "${COMMON[@]}" infrastructure.storage.base_dir="$WORK/k" "${ARGS[@]}" \
      >"$WORK/k1.log" 2>&1 &
    launcher=$!
    for _ in $(seq 1200); do [ -e "$WORK/k/$RESULTS_SUB/results.h5.partial" ] && break; sleep 0.05; done
    ranks=$(pgrep -P "$launcher" -x diff_adl || true)
    [ -e "$WORK/k/$RESULTS_SUB/results.h5.partial" ] && [ -n "$ranks" ] \
      || { kill -9 $ranks 2>/dev/null; wait "$launcher"; cat "$WORK/k1.log"; fail "no partial file while running"; }
    kill -9 $ranks
    wait "$launcher" 2>/dev/null && fail "the killed run exited 0"
    no_results "$WORK/k"
    run_adl 1 "$WORK/k" "$WORK/k2.log" "${ARGS[@]}" || { cat "$WORK/k2.log"; fail "the rerun failed"; }
    "$ADL_CHECK" same "$WORK/ref/$RESULTS_SUB/results.h5" "$WORK/k/$RESULTS_SUB/results.h5" || fail "rerun differs"
    [ -z "$(find "$WORK/k" -name '*.partial')" ] || fail "partial files left behind" ;;
  *) fail "unknown case $1" ;;
esac
echo "PASS"
