#!/bin/bash
# The h5py snippet of docs/formats.md ("ADL results", "Reading with h5py") runs as written on a diff_adl results
# file (the code block is taken from the document, so a stale snippet fails here), and what it reads is
# consistent: mean_diff = ft_mean - base_mean (to float32 rounding), tokens beside ids, probabilities sorted, the
# overview's tokens equal the lens tokens at positions 0-4. Skips (exit 77) when no python3 has h5py.
source "$(dirname "$0")/adl_lib.sh"
PY=$(h5py_python) || exit 77
# the snippet opens diffkit_output/... relative to the working directory: the default base_dir, here under $WORK
run_adl 1 "$WORK/diffkit_output" "$WORK/log" diffing.method.max_samples=8 diffing.method.n=16 \
  || { cat "$WORK/log"; fail "run failed"; }
# the first python block after "### Reading with h5py" in the "## ADL results" section
awk '/^## /{in_adl = ($0 ~ /^## ADL results/)} in_adl && /^### Reading with h5py/{want=1} \
     want && /^```$/ && code {exit} want && code {print} want && /^```python/{code=1}' \
  "$DIFFKIT_SOURCE_DIR/docs/formats.md" >"$WORK/snippet.py"
[ -s "$WORK/snippet.py" ] || fail "no h5py snippet in docs/formats.md, section \"ADL results\""
cat >>"$WORK/snippet.py" <<'PYEOF'

# checks on what the snippet read (its variables f, g, labels, mean_diff, ll, norms, overview)
import numpy as np
with h5py.File("diffkit_output/diffing_results/demo/demo_glacier_honey/activation_difference_lens/results.h5") as f:
    g = f["layer_1/pretrain"]
    assert mean_diff.shape == (16, 256) and mean_diff.dtype == np.float32, (mean_diff.shape, mean_diff.dtype)
    scale = np.abs(g["ft_mean"][...]).max()
    assert np.abs(mean_diff - (g["ft_mean"][...] - g["base_mean"][...])).max() < 1e-5 * scale
    assert list(labels) == list(range(16))
    ll = g["logit_lens/mean_diff"]
    assert ll["top_ids"].shape == ll["top_tokens"].shape == ll["top_probs"].shape == (16, 100)
    probs = ll["top_probs"][...]
    assert (np.diff(probs, axis=1) <= 0).all() and (probs > 0).all() and probs.sum(axis=1).max() <= 1 + 1e-5
    assert list(norms) == [1] and norms[1] > 0
    entry = overview["datasets"]["ds1"]["layers"]["1"]
    assert entry["available_positions"]["logit_lens"] == [0, 1, 2, 3, 4]
    for q in range(5):
        row = list(labels).index(q)
        assert entry["logit_lens"]["per_position"][str(q)]["tokens"] == list(ll["top_tokens"].asstr()[row, :10])
print("checks passed")
PYEOF
(cd "$WORK" && "$PY" snippet.py) || fail "the h5py snippet of docs/formats.md failed or read inconsistent values"
echo "PASS"
