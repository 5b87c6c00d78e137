#!/usr/bin/env python3
"""kl_fp32_error_sim.py — where the tolerances of dk_cuda_kl_rows and dk_cuda_log_softmax_at come from.

Why this exists: the CUDA KL kernel (kernels/cuda/diffops.cu) works in fp32, its CPU twin
(kernels/cpu/diffops.c) in double. Their difference is not a relative one: fp32 rounds z/T, z_ft − z_base and
the log-sum-exps to ~1 ulp of the logits' magnitude, and KL = Σp·(z_ft − z_base) − (lse_ft − lse_base) does not
cancel those errors when KL is small. This script replays the kernel's fp32 arithmetic with numpy, in the
kernel's order (512 threads, each a running max/sum over float4 groups i = t, t + 512, ..., then the xor-shuffle
trees of dk_block_reduce), on logits shaped like a language model's (Gaussian bulk, a few large outliers; the
finetuned row near the base row, or shifted by a constant, or unrelated), for vocabularies up to 262144 and
temperatures 0.7, 1 and 2, and prints the worst error in units of

    unit = 2^-24 · (A + ln V + 1),   A = max |z|/T over both rows.

The tests (tests/gpu/test_diffops_cuda.c) allow KL_UNITS units + KL_REL·kl for KL and LSE_UNITS units for
log-softmax (checked here on the log-sum-exp, and at T = 1 on the outputs z_v − lse of the base row); the script
prints each case's error as a fraction of that allowance (run on 2026-12-05 with seeds 1-3: at most 0.25 of it for
KL, 0.28 for log-softmax). The margin covers CUDA's expf/logf (within 2/1 ulp; numpy's are closer) and nvcc's
fma contraction, modelled here by rounding a·b + c once.

    /work/venv/bin/python tools/kl_fp32_error_sim.py [seed]      (about 30 s)
"""
import math
import sys

import numpy as np

THREADS = 512
KL_UNITS, KL_REL, LSE_UNITS = 8.0, 4e-6, 6.0  # the tolerances of tests/gpu/test_diffops_cuda.c
f32 = np.float32


def fma32(a, b, c):
    """a·b + c rounded once to fp32 (the fma nvcc contracts to)."""
    return (a.astype(np.float64) * b.astype(np.float64) + c.astype(np.float64)).astype(f32)


def block_reduce(v, op, identity):
    """dk_block_reduce: xor-shuffle tree in each warp, then across the warps' lane-0 values."""
    v = v.copy()
    lanes = np.arange(THREADS)
    for o in (16, 8, 4, 2, 1):
        v = op(v, v[lanes ^ o])
    w = np.full(32, identity, dtype=f32)
    w[: THREADS // 32] = v[::32]
    lanes = np.arange(32)
    for o in (16, 8, 4, 2, 1):
        w = op(w, w[lanes ^ o])
    return w[0]


def add(a, b):
    return (a + b).astype(f32)


def thread_order(V):
    """(steps, THREADS) element indices each thread visits in order (-1: none), as k_kl_rows' loops."""
    if V % 4 == 0:
        groups = V // 4
        steps = -(-groups // THREADS)
        g = np.arange(steps)[:, None] * THREADS + np.arange(THREADS)[None, :]
        idx = np.where(g < groups, 4 * g, -1)
        out = np.empty((steps * 4, THREADS), dtype=np.int64)
        for j in range(4):
            out[j::4] = np.where(idx >= 0, idx + j, -1)
        return out
    steps = -(-V // THREADS)
    v = np.arange(steps)[:, None] * THREADS + np.arange(THREADS)[None, :]
    return np.where(v < V, v, -1)


def gpu_kl(zf_raw, zb_raw, temperature):
    inv_t = f32(1.0 / temperature)
    order = thread_order(len(zf_raw))
    mf = np.full(THREADS, -np.inf, f32)
    sf = np.zeros(THREADS, f32)
    tf = np.zeros(THREADS, f32)
    mb = np.full(THREADS, -np.inf, f32)
    sb = np.zeros(THREADS, f32)
    with np.errstate(invalid="ignore", over="ignore"):
        for row in order:
            live = row >= 0
            zf = (zf_raw[np.where(live, row, 0)] * inv_t).astype(f32)
            zb = (zb_raw[np.where(live, row, 0)] * inv_t).astype(f32)
            d = (zf - zb).astype(f32)
            up = live & (zf > mf)
            c = np.exp((mf - zf).astype(f32)).astype(f32)
            e = np.exp((zf - mf).astype(f32)).astype(f32)
            sf = np.where(up, fma32(sf, c, np.ones_like(sf)), np.where(live, add(sf, e), sf))
            tf = np.where(up, fma32(tf, c, d), np.where(live, fma32(e, d, tf), tf))
            mf = np.where(up, zf, mf)
            upb = live & (zb > mb)
            cb = np.exp((mb - zb).astype(f32)).astype(f32)
            eb = np.exp((zb - mb).astype(f32)).astype(f32)
            sb = np.where(upb, fma32(sb, cb, np.ones_like(sb)), np.where(live, add(sb, eb), sb))
            mb = np.where(upb, zb, mb)
        Mf = block_reduce(mf, np.fmax, f32(-np.inf))
        cf = np.exp((mf - Mf).astype(f32)).astype(f32)
        Sf = block_reduce((sf * cf).astype(f32), add, f32(0))
        Tf = block_reduce((tf * cf).astype(f32), add, f32(0))
        Mb = block_reduce(mb, np.fmax, f32(-np.inf))
        Sb = block_reduce((sb * np.exp((mb - Mb).astype(f32))).astype(f32), add, f32(0))
    lse_f = f32(Mf + f32(np.log(Sf)))
    lse_b = f32(Mb + f32(np.log(Sb)))
    return float(f32(f32(Tf / Sf) - f32(lse_f - lse_b))), float(lse_b)


def cpu_kl(zf, zb, temperature):
    inv_t = 1.0 / temperature
    a, b = zf.astype(np.float64) * inv_t, zb.astype(np.float64) * inv_t
    lf = a - (a.max() + math.log(np.exp(a - a.max()).sum()))
    lb = b - (b.max() + math.log(np.exp(b - b.max()).sum()))
    return float(np.sum(np.exp(lf) * (lf - lb))), float(b.max() + math.log(np.exp(b - b.max()).sum()))


def lm_logits(rng, V):
    z = rng.normal(0.0, 2.5, V)
    z[rng.integers(0, V, 20)] += rng.uniform(8, 22, 20)
    return z


def main():
    rng = np.random.default_rng(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
    worst_kl = worst_lse = 0.0
    for V in (1001, 32000, 128256, 151936, 262144):
        for temperature in (0.7, 1.0, 2.0):
            for kind in ("near 0.01", "near 0.3", "shift 7", "unrelated"):
                zb = lm_logits(rng, V)
                if kind.startswith("near"):
                    zf = zb + rng.normal(0.0, float(kind.split()[1]), V)
                elif kind == "shift 7":
                    zf = zb + 7.0
                else:
                    zf = lm_logits(rng, V)
                zf, zb = zf.astype(f32), zb.astype(f32)
                got, lse_gpu = gpu_kl(zf, zb, temperature)
                want, lse_cpu = cpu_kl(zf, zb, temperature)
                A = max(np.abs(zf).max(), np.abs(zb).max()) / temperature
                unit = 2.0**-24 * (A + math.log(V) + 1)
                kl_frac = abs(got - want) / (KL_UNITS * unit + KL_REL * abs(want))
                # log_softmax_at's outputs z_v − lse (no temperature there: model it with the base row at T = 1)
                if temperature == 1.0:
                    out_gpu = (zb - f32(lse_gpu)).astype(f32).astype(np.float64)
                    out_cpu = zb.astype(np.float64) - lse_cpu
                    lse_frac = np.abs(out_gpu - out_cpu).max() / (LSE_UNITS * unit)
                else:
                    lse_frac = abs(lse_gpu - lse_cpu) / (LSE_UNITS * unit)
                print(f"V {V:6d} T {temperature:3.1f} {kind:9s} kl {want:.6g} gpu {got:.6g} "
                      f"err {abs(got - want):.3g} = {abs(got - want) / unit:.2f} units, {kl_frac:.2f} of the "
                      f"tolerance; log-softmax err {lse_frac:.2f} of its tolerance")
                worst_kl, worst_lse = max(worst_kl, kl_frac), max(worst_lse, lse_frac)
    print(f"worst: KL error {worst_kl:.2f} of its tolerance ({KL_UNITS:g} units + {KL_REL:g}·kl), "
          f"log-softmax error {worst_lse:.2f} of its tolerance ({LSE_UNITS:g} units)")


if __name__ == "__main__":
    main()
