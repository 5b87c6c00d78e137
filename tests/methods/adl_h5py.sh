#!/bin/bash
# The h5py snippet of docs/formats.md ("ADL results") reads a diff_adl results file, and what it reads is
# consistent: mean_diff = ft_mean - base_mean (to float32 rounding), tokens beside ids, the overview's tokens equal
# the lens tokens at positions 0-4. Skips (exit 77) when no python3 has h5py.
source "$(dirname "$0")/adl_lib.sh"
PY=""
for p in /usr/bin/python3 python3; do
  if command -v "$p" >/dev/null && "$p" -c "import h5py, numpy" 2>/dev/null; then PY=$p; break; fi
done
[ -n "$PY" ] || { echo "SKIP: no python3 with h5py (apt-get install python3-h5py python3-numpy)"; exit 77; }
run_adl 1 "$WORK/o" "$WORK/log" diffing.method.max_samples=8 diffing.method.n=16 || { cat "$WORK/log"; fail "run failed"; }
"$PY" - "$WORK/o/$RESULTS_SUB/results.h5" <<'PYEOF' || fail "h5py script failed"
import sys, h5py, json, numpy as np
with h5py.File(sys.argv[1]) as f:
    g = f["layer_1/pretrain"]
    labels = g["positions"][...]                            # (P,) position labels
    mean_diff = g["mean_diff"][...]                          # (P, d) float32
    ll = g["logit_lens/mean_diff"]
    p = list(labels).index(0)                                # position 0
    top = list(zip(ll["top_tokens"].asstr()[p, :10], ll["top_probs"][p, :10]))
    norms = dict(zip(f["model_norms/pretrain/layers"][...], f["model_norms/pretrain/ft_model_norms"][...]))
    overview = json.loads(f["summary/json"].asstr()[()])
    # consistency
    assert mean_diff.shape == (16, 256) and mean_diff.dtype == np.float32
    scale = np.abs(g["ft_mean"][...]).max()
    assert np.abs(mean_diff - (g["ft_mean"][...] - g["base_mean"][...])).max() < 1e-5 * scale
    assert ll["top_ids"].shape == ll["top_tokens"].shape == (16, 100)
    probs = ll["top_probs"][...]
    assert (np.diff(probs, axis=1) <= 0).all() and (probs > 0).all()
    assert list(norms) == [1] and norms[1] > 0
    entry = overview["datasets"]["ds1"]["layers"]["1"]
    assert entry["available_positions"]["logit_lens"] == [0, 1, 2, 3, 4]
    for q in range(5):
        row = list(labels).index(q)
        assert entry["logit_lens"]["per_position"][str(q)]["tokens"] == list(ll["top_tokens"].asstr()[row, :10])
    print("h5py read", len(top), "tokens at position 0:", top[:3])
PYEOF
echo "PASS"
