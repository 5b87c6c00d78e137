#!/usr/bin/env python3
"""bench_diff_mining.py — diff_mining against the Python reference of the seed's method, same inputs, same threads.

The reference is tools/make_diff_mining_goldens.py's pipeline (the seed's formulas: transformers fp32 eager +
peft for both models' logits, torch.topk / bincount for the statistics, the seed's NMF collection loop and
torchnmf 0.3.5 for the topics), timed in this process; diffkit's is `diff_mining` on one rank with the same
thread count, timed with /usr/bin/time. Both run on the demo pair (models/demo) over the first --samples
pretraining texts of --tokens tokens. Prints wall time, CPU time (user + sys) and peak memory of each.

Usage (from the repository root, after `make build`; PyPI only):
    PYTHONPATH=/tmp/tnmf /work/venv/bin/python tools/bench_diff_mining.py [--samples 512] [--tokens 64] [--threads 2]
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))


def reference(samples, tokens, threads, top_k, batch_size):
    import torch
    import make_diff_mining_goldens as g
    torch.set_num_threads(threads)
    case = dict(g.CASES["demo"], max_samples=samples, n=tokens, top_k=top_k, batch_size=batch_size)
    t0, c0 = time.perf_counter(), time.process_time()
    tok, base, ft = g.load_models(case)
    data, _ = g.load_text_samples(tok, case["dataset"], "text", tokens, samples)
    t_load = time.perf_counter()
    lb, mask = g.batch_logits(base, data, tok.pad_token_id, batch_size)
    lf, _ = g.batch_logits(ft, data, tok.pad_token_id, batch_size)
    diff = lf - lb
    del lb, lf
    t_fwd = time.perf_counter()
    st = g.compute_stats(diff, mask, tokens, samples, top_k, batch_size)
    t_stats = time.perf_counter()
    fit = g.fit_nmf(st["nmf"], 3, 42)
    g.orderings(tok, st, fit, max(100, top_k), 3)
    t1, c1 = time.perf_counter(), time.process_time()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(wall=t1 - t0, cpu=c1 - c0, peak_mib=peak, load=t_load - t0, forward=t_fwd - t_load,
                stats=t_stats - t_fwd, nmf=t1 - t_stats, positions=st["total"], nmf_iter=fit["n_iter"])


def diffkit(samples, tokens, threads, top_k, batch_size):
    out = tempfile.mkdtemp(prefix="dk_bench_dm_")
    env = dict(os.environ, DIFFKIT_ROOT=ROOT, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OPENBLAS_NUM_THREADS=str(threads))
    cmd = ["/usr/bin/time", "-f", "%e %U %S %M", os.path.join(ROOT, "build", "bin", "diff_mining"), "device=cpu",
           f"threads={threads}", f"infrastructure.storage.base_dir={out}", f"diffing.method.max_samples={samples}",
           f"diffing.method.max_tokens_per_sample={tokens}", f"diffing.method.top_k={top_k}",
           f"diffing.method.batch_size={batch_size}", "diffing.method.debug_print_samples=0"]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"diff_mining failed:\n{p.stderr[-3000:]}")
    wall, user, sys_, kib = p.stderr.strip().splitlines()[-1].split()
    subprocess.run(["rm", "-rf", out])
    return dict(wall=float(wall), cpu=float(user) + float(sys_), peak_mib=int(kib) / 1024)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=512)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top-k", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=16)
    a = ap.parse_args()
    ours = diffkit(a.samples, a.tokens, a.threads, a.top_k, a.batch_size)
    ref = reference(a.samples, a.tokens, a.threads, a.top_k, a.batch_size)
    print(f"demo pair, {ref['positions']} positions ({a.samples} samples x {a.tokens} tokens), top_k {a.top_k}, "
          f"{a.threads} threads; NMF {ref['nmf_iter']} iterations")
    print(f"{'':28s}{'wall s':>10s}{'CPU s':>10s}{'peak MiB':>10s}")
    print(f"{'Python reference (seed)':28s}{ref['wall']:10.1f}{ref['cpu']:10.1f}{ref['peak_mib']:10.0f}"
          f"   (load {ref['load']:.1f}, forwards {ref['forward']:.1f}, statistics {ref['stats']:.1f}, "
          f"NMF + orderings {ref['nmf']:.1f})")
    print(f"{'diffkit diff_mining':28s}{ours['wall']:10.1f}{ours['cpu']:10.1f}{ours['peak_mib']:10.0f}")
    print(f"speed-up (wall) {ref['wall'] / ours['wall']:.1f}x, peak memory {ours['peak_mib'] / ref['peak_mib']:.2f}x")


if __name__ == "__main__":
    main()
