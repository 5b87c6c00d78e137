# dm_h5py.sh — the h5py snippet of docs/formats.md ("Diff mining results") reads a diff_mining run: the rates
# agree with the counts, the NMF columns give topic 0's tokens, the summary holds the overview. Skips (exit 77)
# when no python3 has h5py.
. "$DIFFKIT_SOURCE_DIR/tests/methods/dm_lib.sh"
PY=""
for p in /usr/bin/python3 python3; do
  if command -v "$p" >/dev/null && "$p" -c "import h5py, numpy" 2>/dev/null; then PY=$p; break; fi
done
[ -n "$PY" ] || { echo "SKIP: no python3 with h5py (apt-get install python3-h5py python3-numpy)"; exit 77; }
case_overrides tiny
# shellcheck disable=SC2046
run_dm 2 "$WORK/out" "$WORK/log" $(pair_args tiny) "${OV[@]}" || { cat "$WORK/log" >&2; fail "diff_mining failed"; }
"$PY" - "$(run_dir "$WORK/out")" <<'PYEOF' || fail "the h5py snippet failed"
import sys, h5py, json, numpy as np
run = sys.argv[1]
with h5py.File(f"{run}/results.h5", "r") as f:
    ds = f["pretrain_train_text"]
    P = ds.attrs["total_positions"]
    g = ds["orderings/top_k_occurring/global"]
    ids, words, rate = g["token_id"][...], g["token_str"].asstr()[...], g["ordering_value"][...]
    assert np.allclose(100 * ds["topk_pos_counts"][...][ids] / P, rate, rtol=1e-6)
    avg = ds["sum_logit_diff"][...] / P
    W, cols = ds["nmf/W"][...], ds["nmf/col_token_id"][...]
    topic0 = cols[np.argsort(-W[:, 0], kind="stable")][:20]
    assert np.array_equal(topic0, ds["orderings/nmf/topic_0/token_id"][:20]), (topic0, ds["orderings/nmf/topic_0/token_id"][:20])
    overview = json.loads(f["summary/json"][()])["overview"]
    assert overview["datasets"]["ds1"]["token_groups"][0][0]["token_str"] == words[0]
    print("h5py: %d positions, top token %r at %.2f%%, mean diff %.4f" % (P, words[0], rate[0], avg[ids[0]]))
PYEOF
