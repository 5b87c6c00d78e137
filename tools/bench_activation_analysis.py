#!/usr/bin/env python3
"""bench_activation_analysis.py — diff_activation_analysis against a Python reference (numpy + h5py, vectorized,
one thread) doing the same work on the same activation stores: per-token norm difference, cosine distance and
both norms, the statistics, the nine histograms, the six top-k tables and the running means (all tokens,
positions 0..4, the chat template's tokens). Prints wall time, CPU time (user + system, all processes; on a
shared machine the CPU time is the steadier figure) and peak memory of both, side by side.

    python3 tools/bench_activation_analysis.py --base-dir /tmp/bench [--build build] [--ranks 1 2] [--repeat 3]

--base-dir is an infrastructure.storage.base_dir whose activations/ hold the demo pair's stores (make them first,
e.g. with `make demo`'s diff_preprocess overrides). Both sides read the train split of the three demo datasets
at every layer the stores hold; both run single-threaded per process (OPENBLAS/OMP threads = 1).

--widen D --sequences S: first writes wider stores (d_model D, a multiple of the demo's 256, as a 1.7B-8B model
has) into BASE_DIR_dD/activations: the first S sequences of each demo store, every row repeated D/256 times along
the hidden dimension (real values, so norms and cosines stay realistic), every other attribute kept, so the C
reader and the method accept them; then benchmarks on those.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
import h5py  # noqa: E402
import numpy as np  # noqa: E402

DATASETS = ["chat", "pretrain", "glacier_honey"]
K = 100


def read_raw(path, layer):
    with h5py.File(path, "r") as f:
        tokens, offsets = f["tokens"][...], f["seq_offsets"][...]
        ds = f[f"layer_{layer}"]
        raw = np.empty(ds.shape, dtype=np.uint16)
        ds.id.read(h5py.h5s.ALL, h5py.h5s.ALL, raw, mtype=ds.id.get_type())
    return tokens, offsets, raw


def stats(v):
    s = np.sort(v)
    out = {"mean": float(np.mean(v, dtype=np.float64)), "std": float(np.std(v, ddof=1, dtype=np.float64)),
           "median": float(s[(len(s) - 1) // 2]), "min": float(s[0]), "max": float(s[-1])}
    for p in (25, 75, 90, 95, 99):
        out[f"percentile_{p}"] = float(np.percentile(s, p))
    return out


def hist(v, no_outliers):
    v = v[~np.isnan(v)]
    if no_outliers:
        s = np.sort(v)
        q1, q3 = s[round(0.25 * (len(s) - 1))], s[round(0.75 * (len(s) - 1))]
        iqr = q3 - q1
        v = v[(v >= q1 - np.float32(1.5) * iqr) & (v <= q3 + np.float32(1.5) * iqr)]
    return np.histogram(v, 100, range=(v.min(), v.max()))


def reference(acts, layers, template_ids, max_samples=50000):
    out = {}
    for ds in DATASETS:
        for layer in layers:
            tokens, offsets, braw = read_raw(f"{acts}/base/{ds}/train.h5", layer)
            _, _, fraw = read_raw(f"{acts}/glacier_honey/{ds}/train.h5", layer)
            n_seq = min(len(offsets) - 1, max_samples)
            end = offsets[n_seq]
            b = (braw[:end].astype(np.uint32) << 16).view(np.float32).astype(np.float64)
            f = (fraw[:end].astype(np.uint32) << 16).view(np.float32).astype(np.float64)
            diff = f - b
            nb, nf = np.sqrt(np.einsum("ij,ij->i", b, b)), np.sqrt(np.einsum("ij,ij->i", f, f))
            cos = np.einsum("ij,ij->i", b, f) / (np.maximum(nb, 1e-8) * np.maximum(nf, 1e-8))
            nd = np.sqrt(np.einsum("ij,ij->i", diff, diff)).astype(np.float32)
            cd, cs = (1 - cos).astype(np.float32), cos.astype(np.float32)
            nb, nf = nb.astype(np.float32), nf.astype(np.float32)
            starts = offsets[:n_seq]
            lens = np.diff(offsets[:n_seq + 1])
            scores = {"norm_diff": np.maximum.reduceat(nd, starts), "mean_norm_diff": np.add.reduceat(nd.astype(np.float64), starts) / lens,
                      "cos_dist": np.maximum.reduceat(cd, starts), "mean_cos_dist": np.add.reduceat(cd.astype(np.float64), starts) / lens,
                      "norm_base": np.maximum.reduceat(nb, starts), "norm_finetuned": np.maximum.reduceat(nf, starts)}
            tables = {k: np.lexsort((np.arange(n_seq), -v))[:K] for k, v in scores.items()}
            pos = np.arange(end) - np.repeat(starts, lens)
            means = {"all_tokens": diff.mean(axis=0)}
            for p in range(5):
                means[f"pos{p}"] = diff[pos == p].mean(axis=0)
            for t in template_ids:
                m = tokens[:end] == t
                if m.any():
                    means[f"chat_token_{t}"] = diff[m].mean(axis=0)
            rel = nd / (nb + nf)
            hists = [hist(nd, True), hist(nd, False), hist(cs, False), hist(nb, False), hist(nb, True), hist(nf, False),
                     hist(nf, True), hist(rel, False), hist(rel, True)]
            out[(ds, layer)] = {"norm_diff": stats(nd), "cos_dist": stats(cd), "norm_base": stats(nb),
                                "norm_finetuned": stats(nf), "tables": tables, "means": means, "hists": hists}
    return out


def widen_stores(src_base, dst_base, d_new, n_seqs):
    """Copies of the demo stores with the first n_seqs sequences and rows tiled to d_new (see --widen)."""
    for model in ("base", "glacier_honey"):
        for ds in DATASETS:
            src, dst = f"{src_base}/activations/{model}/{ds}/train.h5", f"{dst_base}/activations/{model}/{ds}/train.h5"
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            with h5py.File(src, "r") as fi, h5py.File(dst, "w", libver=("earliest", "v108")) as fo:
                offsets = fi["seq_offsets"][...]
                k = min(n_seqs, len(offsets) - 1)
                n = int(offsets[k])
                fo["tokens"] = fi["tokens"][:n]
                fo["seq_offsets"] = offsets[:k + 1]
                for name, value in fi.attrs.items():
                    fo.attrs[name] = value
                fo.attrs["d_model"] = np.array([d_new], dtype=np.int64)
                fo.attrs["n_tokens"] = np.array([n], dtype=np.int64)
                fo.attrs["n_sequences"] = np.array([k], dtype=np.int64)
                for layer in [int(x) for x in fi.attrs["layers"]]:
                    ds_in = fi[f"layer_{layer}"]
                    d_old = ds_in.shape[1]
                    assert d_new % d_old == 0, f"--widen {d_new} is not a multiple of {d_old}"
                    raw = np.empty(ds_in.shape, dtype=np.uint16)
                    ds_in.id.read(h5py.h5s.ALL, h5py.h5s.ALL, raw, mtype=ds_in.id.get_type())
                    wide = np.tile(raw[:n], (1, d_new // d_old))
                    tid = ds_in.id.get_type()
                    space = h5py.h5s.create_simple((n, d_new))
                    out = h5py.h5d.create(fo.id, f"layer_{layer}".encode(), tid, space)
                    out.write(h5py.h5s.ALL, h5py.h5s.ALL, wide, mtype=tid)


def store_layers(acts):
    with h5py.File(f"{acts}/base/chat/train.h5", "r") as f:
        return [int(x) for x in f.attrs["layers"]]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base-dir", required=True)
    ap.add_argument("--build", default="build")
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--mpirun", default="mpirun")
    ap.add_argument("--widen", type=int, default=0, help="benchmark on stores widened to this d_model")
    ap.add_argument("--sequences", type=int, default=200, help="with --widen: sequences kept per dataset")
    ap.add_argument("overrides", nargs="*", help="extra overrides of diff_activation_analysis")
    args = ap.parse_args()
    if args.widen:
        wide = f"{args.base_dir}_d{args.widen}"
        widen_stores(args.base_dir, wide, args.widen, args.sequences)
        args.base_dir = wide
    acts = f"{args.base_dir}/activations"
    layers = store_layers(acts)
    tokens = sum(len(h5py.File(f"{acts}/base/{ds}/train.h5", "r")["tokens"]) for ds in DATASETS)
    with h5py.File(f"{acts}/base/chat/train.h5", "r") as f:
        d = int(np.asarray(f.attrs["d_model"]).ravel()[0])
    # DIFFKIT_ROOT: the demo model's path resolves to the absolute one the stores record (make demo and the tests
    # set it too); without it, ./models/demo/base is refused as another model
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", DIFFKIT_ROOT=root)
    layer_arg = "preprocessing.layers=[" + ",".join(str(x) for x in layers) + "]"
    rows = []
    res_json = None
    def cpu(who):
        r = resource.getrusage(who)
        return r.ru_utime + r.ru_stime

    for n in args.ranks:
        times, cpus = [], []
        for i in range(args.repeat):
            cmd = [args.mpirun, "-n", str(n), "--oversubscribe", f"{args.build}/bin/diff_activation_analysis",
                   "model=demo", "organism=demo_glacier_honey", "dataset=demo", "threads=1", layer_arg,
                   f"infrastructure.storage.base_dir={args.base_dir}", f"diffing.results_base_dir={args.base_dir}/bench_r{n}_{i}",
                   *args.overrides]
            t0, c0 = time.perf_counter(), cpu(resource.RUSAGE_CHILDREN)
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times.append(time.perf_counter() - t0)
            cpus.append(cpu(resource.RUSAGE_CHILDREN) - c0)
            res_json = f"{args.base_dir}/bench_r{n}_{i}/demo/demo_glacier_honey/activation_analysis/glacier_honey/results.json"
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        rows.append((f"diff_activation_analysis, {n} rank(s) x 1 thread", min(times), min(cpus), peak))
    from transformers import AutoTokenizer  # the chat template's ids, as the seed gets them
    tok = AutoTokenizer.from_pretrained(os.path.join(os.path.dirname(__file__), "..", "models", "demo", "base"))
    ids = tok.apply_chat_template([{"content": "", "role": "user"}], tokenize=True, add_generation_prompt=True)
    ids = sorted(set(ids["input_ids"] if hasattr(ids, "keys") else ids))
    times, cpus = [], []
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), cpu(resource.RUSAGE_SELF)
        ref = reference(acts, layers, ids)
        times.append(time.perf_counter() - t0)
        cpus.append(cpu(resource.RUSAGE_SELF) - c0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows.append(("Python reference (numpy + h5py, float64), 1 thread", min(times), min(cpus), peak))
    ours = json.load(open(res_json))["layers"][f"layer_{layers[0]}"]["statistics"]["mean"]
    theirs = ref[("glacier_honey", layers[0])]["norm_diff"]["mean"]
    print(f"stores: {acts}, layers {layers}, d_model {d}, {tokens} tokens per model and layer over 3 datasets")
    print(f"check: glacier_honey layer {layers[0]} mean norm difference: diffkit {ours:.9g}, reference {theirs:.9g}")
    print(f"{'best of ' + str(args.repeat):55s} {'wall (s)':>9s} {'CPU (s)':>9s} {'peak RSS (MiB)':>15s}")
    for name, t, c, m in rows:
        print(f"{name:55s} {t:9.2f} {c:9.2f} {m:15.0f}")


if __name__ == "__main__":
    sys.exit(main())
