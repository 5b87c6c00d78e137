#!/bin/bash
# The h5py snippet of docs/formats.md ("Activation analysis results") runs as written on a
# diff_activation_analysis results file (the code block is taken from the document, so a stale snippet fails
# here), and what it reads is consistent: the histogram's counts add up to its n and its edges are sorted, the
# mean difference has d values, the best example's per-token values reach its score (a max table). Skips
# (exit 77) when no python3 has h5py.
source "$(dirname "$0")/aa_lib.sh"
PY=$(h5py_python) || exit 77
# the snippet opens diffing_results/... relative to the working directory: the run's base_dir
run_aa 1 "$WORK/run" "$WORK/log" || { cat "$WORK/log"; fail "the run failed"; }
# the python block of the "## Activation analysis results" section
awk '/^## /{in_aa = ($0 ~ /^## Activation analysis results/)} in_aa && /^```$/ && code {exit} \
     in_aa && code {print} in_aa && /^```python/{code=1}' "$DIFFKIT_SOURCE_DIR/docs/formats.md" >"$WORK/snippet.py"
[ -s "$WORK/snippet.py" ] || fail "no h5py snippet in docs/formats.md, section \"Activation analysis results\""
cat >>"$WORK/snippet.py" <<'PYEOF'

# checks on what the snippet read (its variables counts, edges, mean_all, t, i, toks, per_token)
with h5py.File("diffing_results/demo/demo_glacier_honey/activation_analysis/results.h5", "r") as f:
    g = f["layer_1/glacier_honey"]
    h = g["histograms/norm_diff"]
    assert counts.shape == (100,) and edges.shape == (101,), (counts.shape, edges.shape)
    assert counts.sum() == h.attrs["n"] and (np.diff(edges) >= 0).all()
    assert mean_all.shape == (256,) and np.isfinite(mean_all).all() and np.abs(mean_all).max() > 0
    t = f["layer_1/max_act/norm_diff/glacier_honey"]        # a max table: the best value is the score
    toks = t["tokens"][t["token_offsets"][0]:t["token_offsets"][1]]
    a, b = t["value_offsets"][0], t["value_offsets"][1]
    values = np.zeros(len(toks), np.float32)
    values[t["positions"][a:b]] = t["values"][a:b]
    assert abs(values.max() - t["score"][0]) <= 1e-6 * t["score"][0], (values.max(), t["score"][0])
    assert (np.diff(t["score"][...]) <= 0).all()
print("checks passed")
PYEOF
(cd "$WORK/run" && "$PY" "$WORK/snippet.py") || fail "the h5py snippet of docs/formats.md failed or read inconsistent values"
echo "PASS"
