#!/usr/bin/env bash
# expect.sh — runs one command and checks its exit code and output, for ctest CLI tests.
#   expect.sh EXIT MATCH NOMATCH STDIN COMMAND [ARGS...]
# EXIT: required exit code ("" = any). MATCH / NOMATCH: extended regexes that the combined stdout+stderr
# must / must not contain ("" = no check). STDIN: file fed to the command ("" = /dev/null).
# On failure it prints what was expected, what happened, and the output.
set -u
want_exit=$1 match=$2 nomatch=$3 stdin=$4
shift 4
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$@" <"${stdin:-/dev/null}" >"$out" 2>&1
got=$?
fail=0
if [ -n "$want_exit" ] && [ "$got" != "$want_exit" ]; then
  echo "FAIL: exit code $got, expected $want_exit"; fail=1
fi
if [ -n "$match" ] && ! grep -Eq -- "$match" "$out"; then
  echo "FAIL: output does not match /$match/"; fail=1
fi
if [ -n "$nomatch" ] && grep -Eq -- "$nomatch" "$out"; then
  echo "FAIL: output matches /$nomatch/, which it must not"; fail=1
fi
echo "--- command: $*"
echo "--- exit code: $got; output:"
head -c 20000 "$out"
exit $fail
