#!/bin/bash
# A complete base store with a matching fingerprint is reused by another organism of the same base: its
# forward pass is skipped (the log says so) and the file is untouched; the organism's stores are written.
source "$(dirname "$0")/pp_lib.sh"
ARGS=(preprocessing.training_only=true)
run_pp 2 "$WORK/o" "$WORK/log1" "${ARGS[@]}" || { cat "$WORK/log1"; fail "first run failed"; }
base="$WORK/o/activations/llama_text/org/train.h5"
before=$(md5sum "$base")
cp -r "$DIFFKIT_FIXTURES/engine/adapters/llama_lora" "$WORK/second_organism"
run_pp 2 "$WORK/o" "$WORK/log2" "${ARGS[@]}" organism.finetuned_models.tiny.default.adapter_id="$WORK/second_organism" \
  || { cat "$WORK/log2"; fail "second organism failed"; }
grep -q 'llama_text/org/train: .* reused, base model forward skipped' "$WORK/log2" || { cat "$WORK/log2"; fail "base not reused"; }
grep -q 'second_organism/org/train: writing' "$WORK/log2" || { cat "$WORK/log2"; fail "organism store not written"; }
[ "$before" = "$(md5sum "$base")" ] || fail "the reused base store changed"
"$PP_TOOL" pair "$base" "$WORK/o/activations/second_organism/org/train.h5" 1 || fail "pair check"
echo "PASS"
