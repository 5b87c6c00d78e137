#!/bin/bash
# diff_preprocess on the seed's corners (the coverage issue): each case runs the job and checks its stores or
# its message.
#     pp_coverage.sh CASE
#   config_error_once   a configuration error under mpiexec -n 3 is printed once (not once per rank), exit 2
source "$(dirname "$0")/pp_lib.sh"
case "$1" in
  config_error_once)
    "$MPIEXEC" -n 3 --oversubscribe "$PP_BIN/diff_preprocess" --config-dir "$CONFIGS" preprocesing.context_len=5 \
      >"$WORK/log" 2>&1
    rc=$?
    [ "$rc" = 2 ] || { cat "$WORK/log" >&2; fail "exit code $rc, expected 2"; }
    n=$(grep -c "error: .*there is no key 'preprocesing.context_len'" "$WORK/log")
    [ "$n" = 1 ] || { cat "$WORK/log" >&2; fail "the message is printed $n times"; }
    grep -q "did you mean 'preprocessing.context_len'" "$WORK/log" || fail "no suggestion" ;;
  *) fail "unknown case $1" ;;
esac
echo "PASS"
