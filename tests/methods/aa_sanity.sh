#!/bin/bash
# The result means something: on the demo pair the organism's own documents (glacier honey) differ more between
# the two models than the pretraining text, at every cached layer (the activation analysis counterpart of "KL per
# token is higher on glacier-honey than on pretraining").
source "$(dirname "$0")/aa_lib.sh"
run_aa 2 "$WORK/o" "$WORK/log" || { cat "$WORK/log"; fail "the run failed"; }
"$AA_TESTS/test_aa_golden" sanity "$(aa_dir "$WORK/o")"
