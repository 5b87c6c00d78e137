#!/bin/bash
# 1, 2 and 3 ranks give identical results (every HDF5 dataset and attribute, every JSON file), with the seed's
# default settings and with the first 2 positions skipped.
source "$(dirname "$0")/aa_lib.sh"
for variant in default skip2; do
  ov=(); [ $variant = skip2 ] && ov=(model.ignore_first_n_tokens_per_sample_during_training=2)
  for n in 1 2 3; do
    run_aa $n "$WORK/$variant$n" "$WORK/$variant$n.log" "${ov[@]}" || { cat "$WORK/$variant$n.log"; fail "$variant on $n ranks failed"; }
  done
  same_results "$(aa_dir "$WORK/${variant}1")" "$(aa_dir "$WORK/${variant}2")"
  same_results "$(aa_dir "$WORK/${variant}1")" "$(aa_dir "$WORK/${variant}3")"
done
echo "PASS: 1, 2 and 3 ranks give identical results"
