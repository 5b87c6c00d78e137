#!/usr/bin/env python3
"""make_activation_analysis_goldens.py — the expected numbers of diff_activation_analysis, computed with numpy
(and torch for the cosine convention, transformers for the chat template) following the seed's code
(diffing-toolkit src/diffing/methods/activation_analysis/method.py), written as small fixtures the C tests
read (tests never need Python).

    python3 tools/make_activation_analysis_goldens.py [--build build] [--out tests/fixtures/methods/activation_analysis]

Writes into --out:
  stores.args     the diff_preprocess overrides of the test stores (the demo pair, small caps, layers 1 and 3);
                  tests/methods/aa_lib.sh makes the stores with exactly these, and so does this script
  golden.json     for each run of golden["runs"] (method overrides): per dataset and layer, the statistics of
                  the four metrics (numpy on the stores' bf16 values widened to float64), the histogram data
                  (numpy.histogram on float32 values, as matplotlib's plt.hist calls it; the seed's IQR filter
                  with its torch_quantile "nearest"), the six max-activating tables (sequence index, score, the
                  first entry's sparse values), the running means (count and three digests of the vector), the
                  totals; plus the chat template's distinct token ids (transformers' apply_chat_template) and an
                  FNV-1a 64 checksum of every store's tokens and bf16 rows, so the test can tell "the stores
                  came out different on this machine" from "the method is wrong"
  stores_tiny.args, golden_tiny.json
                  the same for the small random model with an adapter (the tiny random-weight Llama of
                  tests/fixtures/engine and its LoRA adapter, layers 1 and 2, on the same demo datasets)
  units.json      unit goldens: torch.nn.functional.cosine_similarity and norms on hand-made bf16 rows (tiny
                  norms, zero rows, opposite rows), numpy.histogram on values that sit on bin edges, and exact
                  sums of bf16 differences (Python fractions) for tests/methods/test_aa_units.c

Formulas (the seed's, computed in float64 from the same bf16 values diffkit reads; the seed itself runs them in
bf16 arithmetic, see host/methods/activation_analysis.c): per token norm_diff = ||ft - base||,
cos = cosine_similarity(base, ft) (each norm clamped to 1e-8), cos_dist = 1 - cos, norm_base, norm_finetuned,
all rounded to float32; the first n
positions of norm_diff, cos_dist, norm_base, norm_finetuned zeroed; scores max / mean over positions n..;
statistics: mean, std (n - 1), median (torch: the lower middle), min, max, numpy.percentile.
"""
import argparse
import fractions
import json
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

FIXDIR = "tests/fixtures/methods/activation_analysis"
STORE_ARGS = [
    "model=demo", "organism=demo_glacier_honey", "dataset=demo", "device=cpu", "threads=1",
    "preprocessing.layers=[0.5,3]",
    "preprocessing.max_samples_per_dataset=40",
    "preprocessing.max_tokens_per_dataset_train=4000",
    "preprocessing.max_tokens_per_dataset_validation=200",
]
# the small random model with an adapter: the tiny random-weight Llama (d_model 32, 3 layers, its own 300-token
# tokenizer, Gemma 2's chat template) and its LoRA adapter, on the same demo datasets
TINY_ARGS = STORE_ARGS[:5] + [
    "model.model_id=${env:DIFFKIT_ROOT,.}/tests/fixtures/engine/models/llama_text", "model.architecture=LlamaForCausalLM",
    "model.chat_template=gemma2",
    "organism.finetuned_models.demo.default.adapter_id=${env:DIFFKIT_ROOT,.}/tests/fixtures/engine/adapters/llama_lora",
    "preprocessing.layers=[0.5,2]"] + STORE_ARGS[6:]
# case: (store overrides, layers, store folders of base and finetuned, tokenizer of the chat template, file suffix)
CASES = {
    "demo": (STORE_ARGS, [1, 3], ("base", "glacier_honey"), "models/demo/base", ""),
    "tiny": (TINY_ARGS, [1, 2], ("llama_text", "llama_lora"), "tests/fixtures/engine/models/llama_text", "_tiny"),
}
K = 5
RUNS = {
    "skip0": ["diffing.method.method_params.max_samples=25",
              f"diffing.method.analysis.max_activating_examples.num_examples={K}"],
    "skip2": ["diffing.method.method_params.max_samples=25",
              f"diffing.method.analysis.max_activating_examples.num_examples={K}",
              "model.ignore_first_n_tokens_per_sample_during_training=2"],
}
DATASETS = ["chat", "pretrain", "glacier_honey"]
PERCENTILES = [25, 75, 90, 95, 99]
TABLES = ["norm_diff", "mean_norm_diff", "cos_dist", "mean_cos_dist", "norm_base", "norm_finetuned"]
POSITIONS = ["first_token", "second_token", "third_token", "fourth_token", "fifth_token"]


def f32(x):
    """A float32 as the shortest decimal that reads back to it (keeps the fixture small)."""
    return float(np.format_float_positional(np.float32(x), unique=True, trim="-"))


def fnv1a64(data: bytes) -> str:
    h = 0xcbf29ce484222325
    for b in data:  # small stores: a plain loop is fast enough
        h ^= b
        h = (h * 0x100000001b3) & 0xffffffffffffffff
    return f"{h:016x}"


def read_store(path, layer):
    with h5py.File(path, "r") as f:
        status = f.attrs["status"]
        status = status.decode() if isinstance(status, bytes) else status
        assert status == "complete", path
        tokens = f["tokens"][...].astype(np.int32)
        offsets = f["seq_offsets"][...].astype(np.int64)
        ds = f[f"layer_{layer}"]
        raw = np.empty(ds.shape, dtype=np.uint16)
        ds.id.read(h5py.h5s.ALL, h5py.h5s.ALL, raw, mtype=ds.id.get_type())
    return tokens, offsets, raw


def widen(raw):
    return (raw.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def metrics(base, ft):
    """Per token, float64 then float32: norm_diff, cos_dist, cos_sim, norm_base, norm_finetuned."""
    nb = np.sqrt(np.sum(base * base, axis=1))
    nf = np.sqrt(np.sum(ft * ft, axis=1))
    dot = np.sum(base * ft, axis=1)
    cos = dot / (np.maximum(nb, 1e-8) * np.maximum(nf, 1e-8))
    nd = np.sqrt(np.sum((ft - base) ** 2, axis=1))
    f32 = lambda x: x.astype(np.float32)
    return f32(nd), f32(1.0 - cos), f32(cos), f32(nb), f32(nf)


def statistics(v32):
    v = v32.astype(np.float64)
    s = np.sort(v32)
    out = {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)), "median": float(s[(len(s) - 1) // 2]),
           "min": float(s[0]), "max": float(s[-1])}
    for p in PERCENTILES:
        out[f"percentile_{p}"] = float(np.percentile(v, p))
    return out


def torch_quantile_nearest(sorted32, q):
    return sorted32[round(q * (len(sorted32) - 1))]  # Python round: half to even, as the seed's torch_quantile


def histogram(v32, no_outliers, with_edges=True):
    v32 = v32[~np.isnan(v32)]
    s = np.sort(v32)
    out = {"mean": float(np.mean(v32.astype(np.float64))) if len(v32) else 0.0,
           "median": f32(s[(len(s) - 1) // 2]) if len(s) else 0.0}
    if no_outliers and len(v32):
        q1, q3 = torch_quantile_nearest(s, 0.25), torch_quantile_nearest(s, 0.75)
        iqr = np.float32(q3 - q1)
        lower, upper = np.float32(q1 - np.float32(1.5) * iqr), np.float32(q3 + np.float32(1.5) * iqr)
        v32 = v32[(v32 >= lower) & (v32 <= upper)]
        out["lower_bound"], out["upper_bound"] = f32(lower), f32(upper)
    # matplotlib: plt.hist(x, bins=100) -> np.histogram(x, 100, range=(nanmin(x), nanmax(x))) on float32
    rng = (np.nanmin(v32), np.nanmax(v32)) if len(v32) else None
    counts, edges = np.histogram(v32, bins=100, range=rng)
    assert edges.dtype == np.float32 or not len(v32), edges.dtype
    out.update(n=int(counts.sum()), counts=[int(c) for c in counts])
    if with_edges:
        out["edges"] = [f32(e) for e in edges]
    return out


def digest(m):
    d = len(m)
    r = np.array([((j * 2654435761) % 2**32) / 2**32 - 0.5 for j in range(d)])
    return {"sum_abs": float(np.sum(np.abs(m))), "dot": float(np.dot(m, r)), "head": [float(x) for x in m[:4]]}


def analyse(store_dir, models, layers, max_samples, n_skip, template_ids, with_edges):
    res = {}
    for ds in DATASETS:
        res[ds] = {}
        for layer in layers:
            tokens, offsets, braw = read_store(f"{store_dir}/{models[0]}/{ds}/train.h5", layer)
            tokens2, offsets2, fraw = read_store(f"{store_dir}/{models[1]}/{ds}/train.h5", layer)
            assert np.array_equal(tokens, tokens2) and np.array_equal(offsets, offsets2)
            base, ft = widen(braw), widen(fraw)
            n_seqs = len(offsets) - 1
            seqs = [s for s in range(min(n_seqs, max_samples))
                    if offsets[s + 1] - offsets[s] > 1 and offsets[s + 1] - offsets[s] > n_skip]
            cols = {"nd": [], "cd": [], "cs": [], "nb": [], "nf": []}
            tables = {t: [] for t in TABLES}
            sums = {}
            counts = {}

            def add(name, rows):
                sums[name] = sums.get(name, 0.0) + np.sum(rows, axis=0)
                counts[name] = counts.get(name, 0) + rows.shape[0]

            for s in seqs:
                a, b = offsets[s], offsets[s + 1]
                nd, cd, cs, nb, nf = metrics(base[a:b], ft[a:b])
                diff = ft[a:b] - base[a:b]
                add("all_tokens", diff)
                for p in range(min(5, b - a)):
                    add(POSITIONS[p], diff[p:p + 1])
                for t in template_ids:
                    mask = tokens[a:b] == t
                    if mask.any():
                        add(f"chat_token_{t}", diff[mask])
                for x in (nd, cd, nb, nf):
                    x[:n_skip] = 0
                sc = {"norm_diff": float(np.max(nd[n_skip:])), "mean_norm_diff": float(np.mean(nd[n_skip:].astype(np.float64))),
                      "cos_dist": float(np.max(cd[n_skip:])), "mean_cos_dist": float(np.mean(cd[n_skip:].astype(np.float64))),
                      "norm_base": float(np.max(nb[n_skip:])), "norm_finetuned": float(np.max(nf[n_skip:]))}
                vals = {"norm_diff": nd, "mean_norm_diff": nd, "cos_dist": cd, "mean_cos_dist": cd,
                        "norm_base": nb, "norm_finetuned": nf}
                for t in TABLES:
                    tables[t].append((sc[t], s, vals[t]))
                for k, x in zip(("nd", "cd", "cs", "nb", "nf"), (nd, cd, cs, nb, nf)):
                    cols[k].append(x)
            c = {k: np.concatenate(v) for k, v in cols.items()}
            hist = lambda v, no_outliers: histogram(v, no_outliers, with_edges)
            with np.errstate(invalid="ignore"):
                rel = (c["nd"] / (c["nb"] + c["nf"])).astype(np.float32)
            out = {"total_tokens_processed": int(len(c["nd"])), "total_samples_processed": len(seqs),
                   "statistics": {"norm_diff": statistics(c["nd"]), "cos_dist": statistics(c["cd"]),
                                  "norm_base": statistics(c["nb"]), "norm_finetuned": statistics(c["nf"])},
                   "histograms": {
                       "norm_diff_no_outliers": hist(c["nd"], True), "norm_diff": hist(c["nd"], False),
                       "cos_sim": hist(c["cs"], False), "norm_base": hist(c["nb"], False),
                       "norm_base_no_outliers": hist(c["nb"], True),
                       "norm_finetuned": hist(c["nf"], False),
                       "norm_finetuned_no_outliers": hist(c["nf"], True),
                       "relative_norm_diff": hist(rel, False),
                       "relative_norm_diff_no_outliers": hist(rel, True)},
                   "tables": {}, "means": {}}
            for t in TABLES:
                top = sorted(tables[t], key=lambda e: (-e[0], e[1]))[:K]
                pos = np.nonzero(top[0][2])[0]
                out["tables"][t] = {"sequence_index": [e[1] for e in top], "score": [e[0] for e in top],
                                    "first_nonzero": len(pos),  # the first example's sparse values: count, head
                                    "first_positions": [int(p) for p in pos[:16]],
                                    "first_values": [f32(top[0][2][p]) for p in pos[:16]]}
            for name in sums:
                m = sums[name] / counts[name]
                out["means"][name] = {"count": counts[name], **digest(m)}
            res[ds][f"layer_{layer}"] = out
    return res


def store_checksums(store_dir, models, layers):
    out = {}
    for model in models:
        for ds in DATASETS:
            rel = f"{model}/{ds}/train.h5"
            tokens, _, _ = read_store(f"{store_dir}/{rel}", layers[0])
            out[rel] = {"tokens": fnv1a64(tokens.astype("<i4").tobytes())}
            for layer in layers:
                _, _, raw = read_store(f"{store_dir}/{rel}", layer)
                out[rel][f"layer_{layer}"] = fnv1a64(raw.astype("<u2").tobytes())
    return out


def template_ids(model_dir):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = tok.apply_chat_template([{"content": "", "role": "user"}], tokenize=True, add_generation_prompt=True)
    if hasattr(ids, "keys"):  # transformers 5 returns a BatchEncoding
        ids = ids["input_ids"]
    return sorted(set(int(i) for i in ids))


# ---- unit goldens --------------------------------------------------------------------------------------------

def bf16_round(x):
    """float64 -> nearest bf16 bit pattern (round to nearest even), as uint16."""
    f = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    f = f + 0x7fff + ((f >> 16) & 1)
    return (f >> 16).astype(np.uint16)


def units():
    import torch
    rng = np.random.default_rng(7)
    d = 16
    rows_b, rows_f = [], []
    rows_b.append(rng.normal(size=d)); rows_f.append(rows_b[-1] + 0.1 * rng.normal(size=d))
    rows_b.append(np.full(d, 1e-10)); rows_f.append(np.full(d, 1e-10))          # both norms under 1e-8
    rows_b.append(np.zeros(d)); rows_f.append(rng.normal(size=d))                 # a zero row
    rows_b.append(np.r_[3e-9, np.zeros(d - 1)]); rows_f.append(np.r_[1.0, 1.0, np.zeros(d - 2)])  # one tiny
    rows_b.append(rng.normal(size=d) * 1e3); rows_f.append(-rows_b[-1])           # opposite
    rows_b.append(np.zeros(d)); rows_f.append(np.zeros(d))                        # both zero
    rows_b.append(rng.normal(size=d)); rows_f.append(rows_b[-1].copy())           # identical
    b16, f16 = bf16_round(np.array(rows_b)), bf16_round(np.array(rows_f))
    bt = torch.from_numpy(widen(b16)); ft = torch.from_numpy(widen(f16))
    cos = torch.nn.functional.cosine_similarity(bt, ft, dim=-1).numpy()
    pair = {"d": d, "base": [int(x) for x in b16.ravel()], "ft": [int(x) for x in f16.ravel()],
            "cos_sim": [f32(c) for c in cos], "cos_dist": [float(np.float32(1.0 - c)) for c in cos],
            "norm_diff": [float(np.float32(x)) for x in torch.linalg.vector_norm(ft - bt, dim=-1).numpy()],
            "norm_base": [float(np.float32(x)) for x in torch.linalg.vector_norm(bt, dim=-1).numpy()],
            "norm_ft": [float(np.float32(x)) for x in torch.linalg.vector_norm(ft, dim=-1).numpy()]}

    hists = []
    vals = np.float32(rng.normal(size=1000))
    lo, hi = np.nanmin(vals), np.nanmax(vals)
    _, e = np.histogram(vals, 100, range=(lo, hi))
    vals = np.concatenate([vals, e[1:-1], np.nextafter(e[1:-1], np.float32(-np.inf))])   # values on and under edges
    cases = [vals, np.float32([2.5] * 7), np.float32([]), np.float32([1, np.nan, 3, 2]),
             np.float32(rng.exponential(size=501) * 1e4)]
    for v in cases:
        v = np.asarray(v, dtype=np.float32)
        w = v[~np.isnan(v)]
        rng_ = (np.nanmin(w), np.nanmax(w)) if len(w) else None
        c, e = np.histogram(w, 100, range=rng_)
        item = {"values": [f32(x) if not np.isnan(x) else "nan" for x in v], "counts": [int(x) for x in c],
                "edges": [f32(x) for x in e]}
        if len(w):
            s = np.sort(w)
            q1, q3 = torch_quantile_nearest(s, 0.25), torch_quantile_nearest(s, 0.75)
            iqr = np.float32(q3 - q1)
            item["lower"] = float(np.float32(q1 - np.float32(1.5) * iqr))
            item["upper"] = float(np.float32(q3 + np.float32(1.5) * iqr))
        hists.append(item)

    sums = []
    for scale in (1.0, 1e30, 1e-30):
        n, dd = 300, 8
        b = bf16_round(rng.normal(size=(n, dd)) * scale * np.exp(rng.normal(size=(n, dd)) * 3))
        f = bf16_round(rng.normal(size=(n, dd)) * scale * np.exp(rng.normal(size=(n, dd)) * 3))
        assert np.all((b & 0x7f80) != 0x7f80) and np.all((f & 0x7f80) != 0x7f80)
        bf, ff = widen(b), widen(f)
        exact = [sum((fractions.Fraction(float(ff[i, j])) - fractions.Fraction(float(bf[i, j])) for i in range(n)),
                     fractions.Fraction(0)) for j in range(dd)]
        sums.append({"n": n, "d": dd, "base": [int(x) for x in b.ravel()], "ft": [int(x) for x in f.ravel()],
                     "sum": [float(x) for x in exact], "mean": [float(x / n) for x in exact]})
    # subnormal and extreme bf16 values, cancelling exactly
    ext = np.array([[0x0001, 0x7f7f, 0x8001, 0xff7f], [0x0080, 0x0001, 0x7f7f, 0x0000]], dtype=np.uint16)
    fb = np.array([[0x0000, 0x0000, 0x0000, 0x0000], [0x0000, 0x0000, 0x0000, 0x8000]], dtype=np.uint16)
    exact = [sum((fractions.Fraction(float(widen(ext)[i, j])) - fractions.Fraction(float(widen(fb)[i, j]))
                  for i in range(2)), fractions.Fraction(0)) for j in range(4)]
    sums.append({"n": 2, "d": 4, "base": [int(x) for x in fb.ravel()], "ft": [int(x) for x in ext.ravel()],
                 "sum": [float(x) for x in exact], "mean": [float(x / 2) for x in exact]})
    return {"pair_metrics": pair, "histograms": hists, "bf16_sums": sums}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--out", default=FIXDIR)
    ap.add_argument("--mpirun", default="mpirun")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OPENBLAS_NUM_THREADS="1",
               DIFFKIT_ROOT=root)
    for case, (store_args, layers, models, tokenizer, suffix) in CASES.items():
        with open(f"{args.out}/stores{suffix}.args", "w") as f:
            f.write("\n".join(store_args) + "\n")
        with tempfile.TemporaryDirectory() as work:
            cmd = [args.mpirun, "-n", "2", "--oversubscribe", f"{args.build}/bin/diff_preprocess", *store_args,
                   f"infrastructure.storage.base_dir={work}"]
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
            stores = f"{work}/activations"
            tids = template_ids(os.path.join(root, tokenizer))
            golden = {"stores_args": store_args, "layers": layers, "datasets": DATASETS, "num_examples": K,
                      "template_ids": tids, "store_checksums": store_checksums(stores, models, layers), "runs": {}}
            for name, overrides in RUNS.items():
                n_skip = 2 if name == "skip2" else 0
                golden["runs"][name] = {"overrides": overrides, "n_skip": n_skip,
                                        "datasets": analyse(stores, models, layers, 25, n_skip, tids,
                                                            name == "skip0")}
        with open(f"{args.out}/golden{suffix}.json", "w") as f:
            json.dump(golden, f, separators=(",", ":"))
        print(f"{case}: wrote {args.out}/stores{suffix}.args, golden{suffix}.json")
    with open(f"{args.out}/units.json", "w") as f:
        json.dump(units(), f, separators=(",", ":"))
    print(f"wrote {args.out}/units.json")


if __name__ == "__main__":
    sys.exit(main())
