#!/bin/bash
# aa_golden.sh RUN NRANKS: diff_activation_analysis with the overrides of golden.json's run RUN (the ones the numpy
# reference used) on NRANKS ranks equals the reference (tests/methods/test_aa_golden.c does the comparison).
# AA_CASE=tiny: the small random model with its adapter (golden_tiny.json; see aa_lib.sh).
source "$(dirname "$0")/aa_lib.sh"
run=$1 n=$2
mapfile -t ov < <("$AA_TESTS/test_aa_golden" overrides "$GOLDEN" "$run") || fail "no run $run in $GOLDEN"
[ "${#ov[@]}" -gt 0 ] || fail "no run $run in $GOLDEN"
run_aa "$n" "$WORK/o" "$WORK/log" "${ov[@]}" || { cat "$WORK/log"; fail "the run failed"; }
"$AA_TESTS/test_aa_golden" golden "$GOLDEN" "$run" "$(aa_dir "$WORK/o")" "$AA_STORES"
