#!/bin/bash
# aa_golden.sh RUN NRANKS: diff_activation_analysis with the overrides of golden.json's run RUN (the ones the numpy
# reference used) on NRANKS ranks equals the reference (tests/methods/test_aa_golden.c does the comparison).
source "$(dirname "$0")/aa_lib.sh"
run=$1 n=$2
mapfile -t ov < <("$AA_TESTS/test_aa_golden" overrides "$FIX/golden.json" "$run") || fail "no run $run in golden.json"
[ "${#ov[@]}" -gt 0 ] || fail "no run $run in golden.json"
run_aa "$n" "$WORK/o" "$WORK/log" "${ov[@]}" || { cat "$WORK/log"; fail "the run failed"; }
"$AA_TESTS/test_aa_golden" golden "$FIX/golden.json" "$run" "$(aa_dir "$WORK/o")" "$AA_STORES"
