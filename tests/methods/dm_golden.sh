# dm_golden.sh CASE [NRANKS] — diff_mining on a fixture case against the reference of
# tools/make_diff_mining_goldens.py (dm_golden_check says what must hold).
. "$DIFFKIT_SOURCE_DIR/tests/methods/dm_lib.sh"
name=$1 n=${2:-2}
case_overrides "$name"
# shellcheck disable=SC2046
run_dm "$n" "$WORK/out" "$WORK/log" $(pair_args "$name") "${OV[@]}" || { cat "$WORK/log" >&2; fail "diff_mining failed"; }
expect_ok "$WORK/log"
grep 'diff_mining .*top_k_occurring' "$WORK/log" | sed 's/^\[[^]]*\] //'
"$DM_CHECK" "$(run_dir "$WORK/out")" "$CASES/$name"
