# dm_ranks.sh CASE — diff_mining on 1, 2 and 3 ranks gives the same results: results.h5 bit for bit (but the
# run's own records: config, time, rank count) and the same JSON files (but run_metadata.json's timestamp).
. "$DIFFKIT_SOURCE_DIR/tests/methods/dm_lib.sh"
name=$1
case_overrides "$name"
for n in 1 2 3; do
  # shellcheck disable=SC2046
  run_dm "$n" "$WORK/out$n" "$WORK/log$n" $(pair_args "$name") "${OV[@]}" || { cat "$WORK/log$n" >&2; fail "$n rank(s) failed"; }
  expect_ok "$WORK/log$n"
done
a=$(run_dir "$WORK/out1")
for n in 2 3; do
  b=$(run_dir "$WORK/out$n")
  "$DM_CHECK" --same "$a/results.h5" "$b/results.h5" || fail "1 and $n ranks give different results.h5"
  diff -r -x run_metadata.json -x results.h5 "$a" "$b" >&2 || fail "1 and $n ranks give different JSON files"
  diff <(grep -v '"timestamp"' "$a/run_metadata.json") <(grep -v '"timestamp"' "$b/run_metadata.json") >&2 ||
    fail "run_metadata.json differs"
done
echo "1, 2 and 3 ranks: the same results ($(cd "$a" && find . -type f | wc -l) files)"
