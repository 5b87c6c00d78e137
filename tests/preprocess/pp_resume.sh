#!/bin/bash
# Killed runs resume to the same result as an uninterrupted run: a kill -9 of rank 0 right after a chunk
# round (test hook), resumed with another rank count, and a kill -9 of every rank at a random moment.
# While a store is unfinished no file is marked complete.
source "$(dirname "$0")/pp_lib.sh"
ARGS=(preprocessing.training_only=true)
run_pp 1 "$WORK/ref" "$WORK/ref.log" "${ARGS[@]}" || { cat "$WORK/ref.log"; fail "reference run failed"; }

# 1) deterministic kill after round 2 of the first store, resume with 3 ranks
# plain mpiexec here (not run_pp): a rank killed by a signal must bring the job down, as in production
DIFFKIT_TEST_KILL_AFTER_ROUNDS=2 DK_PP_OUT="$WORK/k" "$MPIEXEC" -n 2 --oversubscribe "$PP_BIN/diff_preprocess" \
  --config-dir "$CONFIGS" "${ARGS[@]}" >"$WORK/k1.log" 2>&1 && fail "the killed run exited 0"
grep -q 'test hook: killing rank 0' "$WORK/k1.log" || { cat "$WORK/k1.log"; fail "the test hook did not fire"; }
no_complete "$WORK/k"
ls "$WORK/k/activations/llama_text/org/train.h5.partial" >/dev/null || fail "no partial file after the kill"
run_pp 3 "$WORK/k" "$WORK/k2.log" "${ARGS[@]}" || { cat "$WORK/k2.log"; fail "resume failed"; }
grep -q 'resuming, [1-9][0-9]* of' "$WORK/k2.log" || { cat "$WORK/k2.log"; fail "the rerun did not resume"; }
expect_ok "$WORK/k2.log"
compare_trees "$WORK/ref/activations" "$WORK/k/activations"
[ -z "$(find "$WORK/k" -name '*.partial')" ] || fail "partial files left behind"

# 2) kill -9 of all ranks at several moments (whatever they are doing), then rerun to completion
for delay in 0.4 0.9 1.5; do
  out="$WORK/t$delay"
  DK_PP_OUT="$out" "$MPIEXEC" -n 2 --oversubscribe "$PP_BIN/diff_preprocess" --config-dir "$CONFIGS" "${ARGS[@]}" \
    >"$out.log" 2>&1 &
  launcher=$!
  sleep "$delay"
  ranks=$(pgrep -P "$launcher" -x diff_preprocess || true)
  [ -n "$ranks" ] && kill -9 $ranks 2>/dev/null
  wait "$launcher" 2>/dev/null || true
  run_pp 2 "$out" "$out.2.log" "${ARGS[@]}" || { cat "$out.2.log"; fail "rerun after kill at ${delay}s failed"; }
  compare_trees "$WORK/ref/activations" "$out/activations"
done
echo "PASS"
