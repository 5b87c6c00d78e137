#!/usr/bin/env python3
"""Writes tests/fixtures/dtype/bf16_reference.bin.gz: bfloat16 <-> float32 conversions computed by
ml_dtypes (the numpy bfloat16 used by JAX; same rounding as torch), the reference that
tests/unit/test_dtype.c checks our kernels/dtype_convert.h against.

Layout (little-endian, gzip-compressed):
  decode:  65536 x uint32   float32 bits of bfloat16(h) for every bit pattern h = 0..65535
  encode:  65536 x 6 x uint16   bfloat16 bits of float32 x, for x = (h << 16) | low, with
           low in ENCODE_LOW_BITS (exact, +1, just below half, exactly half, just above half, max)
           for every h: every rounding case around every bfloat16 value, NaN payloads included.

Usage: pip install ml_dtypes numpy && python3 tools/make_dtype_fixtures.py
"""
import gzip
import pathlib

import ml_dtypes
import numpy as np

ENCODE_LOW_BITS = [0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF]

def main():
    out = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/dtype/bf16_reference.bin.gz"
    h = np.arange(65536, dtype=np.uint32)
    decoded = h.astype(np.uint16).view(ml_dtypes.bfloat16).astype(np.float32).view(np.uint32)
    inputs = ((h[:, None] << 16) | np.array(ENCODE_LOW_BITS, dtype=np.uint32)[None, :]).reshape(-1)
    encoded = inputs.view(np.float32).astype(ml_dtypes.bfloat16).view(np.uint16)
    with gzip.GzipFile(out, "wb", mtime=0) as f:
        f.write(decoded.astype("<u4").tobytes())
        f.write(encoded.astype("<u2").tobytes())
    print(f"wrote {out} (ml_dtypes {ml_dtypes.__version__}, numpy {np.__version__})")

if __name__ == "__main__":
    main()
