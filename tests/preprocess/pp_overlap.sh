#!/bin/bash
# The collective write of round r overlaps the compute of round r + 1 (host/pipeline/pp_run.c). The test
# hook DIFFKIT_TEST_HOLD_WRITES=1 makes the writer thread write round r only after round r + 1 is computed.
# That completes only if compute runs ahead of the writer into the second buffer set: a loop that computes,
# then writes, then computes stops with "does not run ahead" (after 60 s). And the stores must still equal
# an unheld 1-rank run's bit for bit: if round r + 1's compute overwrote round r's rows before they were
# written (one buffer set, or a set reused too early), the held run stores the wrong rows.
source "$(dirname "$0")/pp_lib.sh"
ARGS=(preprocessing.training_only=true)
run_pp 1 "$WORK/ref" "$WORK/ref.log" "${ARGS[@]}" || { cat "$WORK/ref.log"; fail "reference run failed"; }
( export DIFFKIT_TEST_HOLD_WRITES=1; run_pp 2 "$WORK/h" "$WORK/h.log" "${ARGS[@]}" ) \
  || { cat "$WORK/h.log"; fail "the run with writes held failed"; }
expect_ok "$WORK/h.log"
held=$(sed -n 's/.*test hook hold_writes: \([0-9]*\) rounds written after the next.*/\1/p' "$WORK/h.log" | head -1)
[ "${held:-0}" -gt 0 ] || { cat "$WORK/h.log"; fail "the hook held no round (is the store a single round?)"; }
grep -q '% of the narrowing and I/O hidden behind the forward' "$WORK/h.log" || { cat "$WORK/h.log"; fail "no overlap in the report"; }
compare_trees "$WORK/ref/activations" "$WORK/h/activations"
echo "PASS ($held rounds held in the first store)"
