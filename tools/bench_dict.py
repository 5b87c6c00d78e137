#!/usr/bin/env python3
"""bench_dict.py — training steps per second of diffkit's dictionary trainer against the reference package's trainers
(dictionary_learning's BatchTopKTrainer and BatchTopKCrossCoderTrainer from ../shared/seed/crosscoder_learning, fp32,
CPU), side by side on the same machine, the same shapes (d, dictionary size, k, batch) and the same thread count
(torch.set_num_threads and OPENBLAS_NUM_THREADS). Random normal rows, normalised to target_rms 100 by both (the
reference through its activation_mean/std, diffkit by dict_norm), the seed's schedule. Prints one JSON line per run
and a table for docs/perf.md.

Usage:  /work/venv/bin/python tools/bench_dict.py --build build [--threads 1 2] [--steps 20]
The reference needs the package importable: SETUPTOOLS_SCM_PRETEND_VERSION=0.0.0 pip install --no-deps
../shared/seed/crosscoder_learning (tools/make_dict_goldens.py says the same)."""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_dict_goldens import import_reference  # noqa: E402

SHAPES = [  # kind, d, dict size, k, batch
    ("sae", 256, 512, 16, 2048),      # the demo pair (d 256, expansion 2)
    ("sae", 896, 1792, 100, 2048),    # Qwen2.5-0.5B, the seed's expansion 2 and k 100
    ("crosscoder", 256, 1024, 16, 2048),
    ("crosscoder", 896, 3584, 100, 1024),
]


def reference(kind, d, F, k, B, steps, threads):
    import torch
    torch.set_num_threads(threads)
    BatchTopKTrainer, BatchTopKCrossCoderTrainer = import_reference()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    L = 1 if kind == "sae" else 2
    shape = (d,) if L == 1 else (2, d)
    common = dict(steps=100_000, activation_dim=d, dict_size=F, k=k, layer=0, lm_name="bench", device="cpu",
                  warmup_steps=1000, activation_mean=torch.zeros(shape), activation_std=torch.ones(shape), target_rms=100.0)
    if L == 1:
        tr = BatchTopKTrainer(**common)
    else:
        tr = BatchTopKCrossCoderTrainer(num_layers=2, k_max=k, k_annealing_steps=2000, **common,
                                        dict_class_kwargs={"same_init_for_all_layers": True, "norm_init_scale": 1.0,
                                                           "init_with_transpose": True, "encoder_layers": None,
                                                           "code_normalization": "crosscoder",
                                                           "code_normalization_alpha_sae": 1.0,
                                                           "code_normalization_alpha_cc": 0.1})
    tr.ae.to(torch.float32)
    g = torch.Generator().manual_seed(7)
    pool = torch.randn((8 * B,) + shape, generator=g)
    t0 = 0
    for s in range(steps + 3):
        if s == 3:
            t0 = time.perf_counter()
        tr.update(s, pool[(s % 8) * B:(s % 8 + 1) * B].clone())
    secs = time.perf_counter() - t0
    return {"impl": "reference", "kind": kind, "d": d, "F": F, "k": k, "batch": B, "steps": steps,
            "ms_per_step": 1e3 * secs / steps, "rows_per_s": steps * B / secs}


def ours(build, kind, d, F, k, B, steps, threads):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    out = subprocess.run([os.path.join(build, "tests", "dict_bench"), kind, str(d), str(F), str(k), str(B), str(steps)],
                         env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=20)
    a = ap.parse_args()
    rows = []
    for threads in a.threads:
        for kind, d, F, k, B in SHAPES:
            steps = a.steps if d < 512 else max(3, a.steps // 4)
            r = reference(kind, d, F, k, B, steps, threads)
            o = ours(a.build, kind, d, F, k, B, steps, threads)
            print(json.dumps(r))
            print(json.dumps(o))
            rows.append((threads, kind, d, F, k, B, r["ms_per_step"], o["ms_per_step"]))
    print("\n| threads | model | d | dict | k | batch | reference ms/step | diffkit ms/step | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|")
    for t, kind, d, F, k, B, rm, om in rows:
        print(f"| {t} | {kind} | {d} | {F} | {k} | {B} | {rm:.1f} | {om:.1f} | {rm / om:.2f}x |")


if __name__ == "__main__":
    main()
