#!/bin/bash
# Setup of the activation analysis tests (ctest fixture aa_stores): the demo pair's activation stores with the
# overrides of stores.args, in $AA_STORES. CPU stores are bit-reproducible, so the golden numbers computed on them
# by tools/make_activation_analysis_goldens.py hold (test_aa_golden checks a checksum of every store first).
# AA_CASE=tiny: the small random model's stores (fixture aa_stores_tiny).
source "$(dirname "$0")/aa_lib.sh"
rm -rf "$AA_STORES" "$AA_STORES.base"
"$MPIEXEC" -n 2 --oversubscribe "$PP_BIN/diff_preprocess" "${STORE_ARGS[@]}" "infrastructure.storage.base_dir=$AA_STORES.base" \
  >"$WORK/pp.log" 2>&1 || { cat "$WORK/pp.log"; fail "diff_preprocess failed"; }
mv "$AA_STORES.base/activations" "$AA_STORES" && rm -rf "$AA_STORES.base"
echo "stores in $AA_STORES"
