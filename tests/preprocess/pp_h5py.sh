#!/bin/bash
# h5py reads the same values as the C reader: the bf16 custom float decoded by HDF5 to float32, the raw-bits
# fast path of docs/formats.md, tokens and offsets. Skips (exit 77) when no python3 has h5py.
source "$(dirname "$0")/pp_lib.sh"
PY=$(h5py_python) || exit 77
run_pp 2 "$WORK/o" "$WORK/log" preprocessing.training_only=true || { cat "$WORK/log"; fail "run failed"; }
f="$WORK/o/activations/llama_lora/org/train.h5"
"$PP_TOOL" dump "$f" 2 0 -1 > "$WORK/c.txt" || fail "C dump"
"$PY" - "$f" > "$WORK/py.txt" <<'PYEOF' || fail "h5py script failed"
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    assert f.attrs["status"].decode() == "complete" if isinstance(f.attrs["status"], bytes) else f.attrs["status"] == "complete"
    x = f["layer_2"][...]                                  # HDF5 converts the bf16 custom float to float32
    assert x.dtype == np.float32, x.dtype
    ds = f["layer_2"]                                      # fast path: raw bits, widened by hand
    raw = np.empty(ds.shape, dtype=np.uint16)
    ds.id.read(h5py.h5s.ALL, h5py.h5s.ALL, raw, mtype=ds.id.get_type())
    y = (raw.astype(np.uint32) << 16).view(np.float32)
    assert np.array_equal(x, y)
    off = ds.id.get_offset()                               # contiguous: memory-mappable
    mm = np.memmap(sys.argv[1], dtype="<u2", mode="r", offset=off, shape=ds.shape)
    assert np.array_equal(mm, raw)
    seq = f["seq_offsets"][...]
    assert seq[0] == 0 and seq[-1] == x.shape[0]
    count = f["stats/layer_2/count"][0]
    mean = f["stats/layer_2/mean"][...]
    assert count == x.shape[0]
    assert np.allclose(mean, x.astype(np.float64).mean(0), atol=1e-2)
    for v in x.reshape(-1):
        print("%.9g" % v)
    for t in f["tokens"][...]:
        print("token %d" % t)
PYEOF
cmp "$WORK/c.txt" "$WORK/py.txt" || fail "h5py and the C reader disagree"
echo "PASS ($(wc -l < "$WORK/c.txt") values and tokens equal)"
