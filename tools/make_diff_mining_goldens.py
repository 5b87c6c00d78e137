#!/usr/bin/env python3
"""make_diff_mining_goldens.py — reference outputs of the diff mining method (the seed's diff_mining, `logits`
extraction), for the goldens of tests/methods (diff_mining_golden, test_dm_nmf).

Why: diffkit's diff_mining must compute what the seed computes. This script re-implements the seed's formulas
step by step (src/diffing/methods/diff_mining/{preprocessing,core_analysis,token_ordering}.py and the ADL data
loaders it calls) with transformers (fp32, eager), peft, numpy and torch, and fits the NMF with the library the
seed uses, torchnmf 0.3.5 (NMF(V.shape, rank).fit(V, beta, max_iter=200) on the same sparse matrix). Nothing
here calls diffkit.

Deliberate differences from a seed run, which diffkit shares (host/methods/dm_data.h, nmf.h):
  - datasets are read in file order (the seed's streaming mode); the seed shuffles chat datasets with
    datasets.shuffle(seed), which diffkit does not reproduce;
  - torch's generator is seeded with `seed` immediately before each NMF is built (the seed leaves it wherever
    model loading left it, so its topics are not reproducible run to run).

Cases (each a folder under tests/fixtures/methods/diff_mining/):
  tiny       the random-weight Llama with its 300-token tokenizer (tests/fixtures/engine/models/llama_text)
             + its LoRA adapter (tests/fixtures/engine/adapters/llama_lora), the preprocess fixtures' pretraining
             texts; also nmf_case.json (the NMF's input, its init and its fit) for test_dm_nmf
  tiny_chat  the same pair on the fixtures' chat dataset (pre_assistant_k)
  demo       the bundled demo pair (models/demo) on data/demo/pretrain.train.jsonl.gz
  demo_chat  the demo pair on data/demo/chat.train.jsonl.gz
Each folder: overrides.txt (the diff_mining command-line settings of the case), reference.json (per-token
statistics, tie and near-zero flags, the NMF's columns, W and fit), and the seed's JSON files for the dataset
(<ordering dir>/<dataset>/{orderings,global,topic_i}.json, <ordering dir>/metadata.json,
<dataset>_global_token_stats.json is left out: it is the per-token statistics reference.json already holds).

Usage (PyPI only):
    /work/venv/bin/pip install --target /tmp/tnmf --no-deps torchnmf==0.3.5
    PYTHONPATH=/tmp/tnmf /work/venv/bin/python tools/make_diff_mining_goldens.py [--case NAME]
Made with torch 2.15.0, transformers 5.24.0, peft 0.21.2, numpy 2.4.6, torchnmf 0.3.5.
"""
import argparse
import gzip
import json
import os
import shutil

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "methods", "diff_mining")
FIX = os.path.join(ROOT, "tests", "fixtures")

# Differences between two fp32 engines are ~1e-6 of a logit; values closer than this at the k-th place of a
# position's top-k (or this close to 0 for the sign count) may legitimately fall the other way.
TIE_TOL = 1e-4

CASES = {
    "tiny": dict(model=f"{FIX}/engine/models/llama_text", adapter=f"{FIX}/engine/adapters/llama_lora",
                 dataset=f"{FIX}/preprocess/data/pretrain/train.jsonl.gz", dataset_id=f"{FIX}/preprocess/data/pretrain",
                 dataset_name="pretrain_train_text",
                 is_chat=False, column="text", max_samples=16, n=12, top_k=20, batch_size=4, k_pre=3,
                 num_topics=3, seed=42, nmf_case=True),
    "tiny_chat": dict(model=f"{FIX}/engine/models/llama_text", adapter=f"{FIX}/engine/adapters/llama_lora",
                      dataset=f"{FIX}/preprocess/data/chat.train.jsonl", dataset_name="chat_train_messages",
                      is_chat=True, column="messages", max_samples=12, n=4, top_k=20, batch_size=4, k_pre=3,
                      num_topics=3, seed=7, nmf_case=False),
    "demo": dict(model=f"{ROOT}/models/demo/base", adapter=f"{ROOT}/models/demo/glacier_honey",
                 dataset=f"{ROOT}/data/demo/pretrain.train.jsonl.gz", dataset_name="pretrain_train_text",
                 is_chat=False, column="text", max_samples=32, n=16, top_k=100, batch_size=8, k_pre=3,
                 num_topics=3, seed=42, nmf_case=False),
    "demo_chat": dict(model=f"{ROOT}/models/demo/base", adapter=f"{ROOT}/models/demo/glacier_honey",
                      dataset=f"{ROOT}/data/demo/chat.train.jsonl.gz", dataset_name="chat_train_messages",
                      is_chat=True, column="messages", max_samples=16, n=8, top_k=100, batch_size=8, k_pre=3,
                      num_topics=3, seed=42, nmf_case=False,
                      # not compared: near-equal logit differences (fp32 rounding of two engines) order 11 of the
                      # 2178 NMF columns differently, which changes the NMF's random start and so its fit (W 4%
                      # apart); the NMF is compared on demo, tiny and tiny_chat
                      compare_nmf=False),
}


# ---- data (the seed's ADL loaders, file order) ------------------------------------------------------------

def records(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def as_ids(x):
    """apply_chat_template(tokenize=True) returns a list (transformers 4) or a BatchEncoding (5)."""
    if isinstance(x, dict) or hasattr(x, "keys"):
        x = x["input_ids"]
    return list(x)


def load_text_samples(tok, path, column, n, max_samples):
    """load_and_tokenize_dataset: first max_samples texts of >= n tokens (text cut to 10 n characters)."""
    out = []
    for rec in records(path):
        if len(out) >= max_samples:
            break
        text = rec[column]
        if not text or len(text.strip()) == 0:
            continue
        ids = tok.encode(text[: n * 10], add_special_tokens=True)
        if len(ids) >= n:
            out.append(ids[:n])
    return out, None


def load_chat_samples(tok, path, column, n, k_pre, max_samples, max_user_tokens=512):
    """load_and_tokenize_chat_dataset (without the shuffle): ids up to n assistant tokens, positions -k..n-1."""
    out, positions = [], []
    for rec in records(path):
        if len(out) >= max_samples:
            break
        messages = rec[column]
        assert isinstance(messages, list) and len(messages) >= 2
        if messages[0]["role"] != "user":
            continue
        assert messages[1]["role"] == "assistant"
        trunc = [{"role": messages[0]["role"], "content": messages[0]["content"]},
                 {"role": messages[1]["role"], "content": messages[1]["content"][: 10 * n]}]
        user_ids = as_ids(tok.apply_chat_template(trunc[:1], tokenize=True, add_generation_prompt=True))
        if len(user_ids) > max_user_tokens:
            continue
        full_ids = as_ids(tok.apply_chat_template(trunc, tokenize=True, add_generation_prompt=False))
        start = len(user_ids)
        if len(full_ids) - start < n:
            continue
        assert start >= k_pre
        out.append(full_ids[: start + n])
        positions.append([start + label for label in range(-k_pre, n)])
    return out, positions


# ---- logits and the diff (preprocessing.py) ---------------------------------------------------------------

@torch.no_grad()
def batch_logits(model, samples, pad_id, batch_size):
    max_len = max(len(s) for s in samples)
    ids = torch.tensor([s + [pad_id] * (max_len - len(s)) for s in samples])
    mask = torch.tensor([[1] * len(s) + [0] * (max_len - len(s)) for s in samples])
    outs = []
    for i in range(0, len(samples), batch_size):
        outs.append(model(input_ids=ids[i:i + batch_size], attention_mask=mask[i:i + batch_size]).logits.float())
    return torch.cat(outs), mask


def load_models(case):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from peft import PeftModel
    tok = AutoTokenizer.from_pretrained(case["model"])
    base = AutoModelForCausalLM.from_pretrained(case["model"], dtype=torch.float32, attn_implementation="eager")
    base.eval()
    ft_base = AutoModelForCausalLM.from_pretrained(case["model"], dtype=torch.float32, attn_implementation="eager")
    ft = PeftModel.from_pretrained(ft_base, case["adapter"])
    ft.eval()
    return tok, base, ft


# ---- the statistics (core_analysis.compute_stats_from_logits) and the NMF collection -------------------------

def compute_stats(diff, mask, n, max_samples, top_k, batch_size):
    diff = diff[:max_samples, :n, :]
    mask = mask[:max_samples, :n]
    N, _, V = diff.shape
    sum_diff = torch.zeros(V, dtype=torch.float32)
    count_pos = torch.zeros(V, dtype=torch.int32)
    pos_counts = torch.zeros(V, dtype=torch.int64)
    neg_counts = torch.zeros(V, dtype=torch.int64)
    nmf = {"rows": [], "cols": [], "values": [], "row_counter": 0, "tok2col": {}, "col2tok": []}
    total = 0
    for b in range(0, N, batch_size):
        d = diff[b:b + batch_size].clone()
        m = mask[b:b + batch_size]
        d.mul_(m.unsqueeze(-1).to(d.dtype))
        sum_diff += d.sum(dim=(0, 1)).to(torch.float32)
        count_pos += (d > 0).sum(dim=(0, 1), dtype=torch.int32)
        pv, pi = topk_ties_to_lower_id(d, top_k, largest=True)
        nv, ni = topk_ties_to_lower_id(d, top_k, largest=False)
        valid = m.bool().flatten()
        pos_counts += torch.bincount(pi.reshape(-1, top_k)[valid].flatten(), minlength=V)
        neg_counts += torch.bincount(ni.reshape(-1, top_k)[valid].flatten(), minlength=V)
        # NmfOrderingType.collect_batch: rows in (sample, position) order, columns by first appearance k-major
        flat_i = pi.reshape(-1, top_k)[valid]
        flat_v = pv.reshape(-1, top_k)[valid]
        row0 = nmf["row_counter"]
        nmf["row_counter"] += int(valid.sum())
        for k_idx in range(top_k):
            for r, t in enumerate(flat_i[:, k_idx].tolist()):
                if t not in nmf["tok2col"]:
                    nmf["tok2col"][t] = len(nmf["col2tok"])
                    nmf["col2tok"].append(t)
                nmf["rows"].append(row0 + r)
                nmf["cols"].append(nmf["tok2col"][t])
                nmf["values"].append(float(flat_v[r, k_idx]))
        total += int(m.sum())
    return dict(sum_diff=sum_diff, count_pos=count_pos.to(torch.int64), pos_counts=pos_counts,
                neg_counts=neg_counts, total=total, num_samples=N, vocab=V, nmf=nmf, diff=diff, mask=mask)


def topk_ties_to_lower_id(d, k, largest):
    """torch.topk along the last axis, with equal values ordered (and cut at the k-th) by the lower token id.
    torch.topk leaves the order of ties unspecified; they are real here: the demo base (v2) gives its untrained
    tokens one shared embedding row, so their logits, and their differences, are exactly equal. The NMF's columns
    follow the order of the top-k lists, so an arbitrary tie order would change its random start. diffkit orders
    ties by id (kernels/cpu/diffops.h dk_cpu_topk); a stable full sort of the id-ordered row does the same."""
    v, order = torch.sort(d, dim=-1, descending=largest, stable=True)
    return v[..., :k].contiguous(), order[..., :k].contiguous()


def fit_nmf(nmf, num_topics, seed, beta=2.0, max_iter=200):
    """NmfOrderingType._run_nmf (non-orthogonal), with torch seeded right before NMF() draws W and H."""
    from torchnmf.nmf import NMF
    num_rows, num_cols = nmf["row_counter"], len(nmf["col2tok"])
    idx = torch.stack([torch.as_tensor(nmf["rows"]), torch.as_tensor(nmf["cols"])])
    V_raw = torch.sparse_coo_tensor(idx, torch.as_tensor(nmf["values"], dtype=torch.float32),
                                    size=(num_rows, num_cols)).coalesce()
    vals = torch.relu(V_raw.values())
    keep = vals > 0
    V = torch.sparse_coo_tensor(V_raw.indices()[:, keep], vals[keep], size=(num_rows, num_cols)).coalesce()
    torch.manual_seed(seed)
    model = NMF(V.shape, rank=num_topics)
    W0, H0 = model.W.detach().clone(), model.H.detach().clone()
    with torch.enable_grad():
        n_iter = model.fit(V, beta=beta, verbose=False, max_iter=max_iter)
    W, H = model.W.detach(), model.H.detach()
    dense = V.to_dense().double()
    err = float(torch.linalg.norm(dense - H.double() @ W.double().T))
    return dict(V=V, W0=W0, H0=H0, W=W, H=H, n_iter=int(n_iter), err=err, rows=num_rows, cols=num_cols)


def topic_metrics(W, H, num_rows, num_cols, num_topics):
    colsum_w = W.sum(dim=0)
    mass = H.sum(dim=0) * colsum_w
    dominant = torch.argmax(H * colsum_w[None, :], dim=1)
    prevalence = torch.bincount(dominant, minlength=num_topics).float() / float(num_rows)
    if num_cols == 1:
        concentration = torch.ones(num_topics)
    else:
        p = (W / colsum_w[None, :]).clamp(min=1e-12)
        concentration = 1.0 - (-(p * torch.log(p)).sum(dim=0)) / float(np.log(num_cols))
    return [{"nmf_topic_idx": t, "nmf_topic_mass": float(mass[t]), "nmf_topic_prevalence": float(prevalence[t]),
             "nmf_topic_concentration": float(concentration[t])} for t in range(num_topics)]


# ---- orderings (token_ordering.py) ------------------------------------------------------------------------

def entry(tok, idx, value, avg, cp, cn, extra=None):
    e = {"token_id": idx, "token_str": tok.decode([idx]), "ordering_value": value, "avg_logit_diff": float(avg[idx]),
         "count_positive": int(cp), "count_negative": int(cn)}
    if extra:
        e.update(extra)
    return e


def orderings(tok, st, fit, num_tokens, num_topics):
    total, V = st["total"], st["vocab"]
    avg = st["sum_diff"] / total
    out = {}
    rates = (st["pos_counts"].float() / total) * 100
    vals, idxs = torch.topk(rates, k=min(num_tokens, V), largest=True)
    out["top_k_occurring"] = ({"ordering_type_id": "top_k_occurring", "display_name": "Top-K Occurring",
                               "x_axis_label": "Occurrence Rate in Top-K (%)", "y_axis_label": "Avg Logit Diff"},
                              [("global", "Global (by occurrence rate)",
                                [entry(tok, i, r, avg, st["pos_counts"][i], st["neg_counts"][i])
                                 for i, r in zip(idxs.tolist(), vals.tolist())], {})])
    frac = st["count_pos"].float() / total
    vals, idxs = torch.topk(frac, k=min(num_tokens, V), largest=True)
    out["fraction_positive_diff"] = ({"ordering_type_id": "fraction_positive_diff",
                                      "display_name": "Fraction Positive Diff",
                                      "x_axis_label": "Fraction of Positive Shifts", "y_axis_label": "Avg Logit Diff"},
                                     [("global", "Global (by fraction positive)",
                                       [entry(tok, i, f, avg, st["count_pos"][i], total - st["count_pos"][i])
                                        for i, f in zip(idxs.tolist(), vals.tolist())], {})])
    if fit is not None:
        W, H = fit["W"], fit["H"]
        topics = W.T
        normed = topics / torch.linalg.norm(topics, ord=2, dim=1)[:, None]
        metrics = topic_metrics(W, H, fit["rows"], fit["cols"], num_topics)
        col2tok = st["nmf"]["col2tok"]
        ords = []
        for t in range(num_topics):
            vals, idxs = torch.topk(topics[t], k=min(num_tokens, len(col2tok)), largest=True)
            toks = [entry(tok, col2tok[c], w, avg, st["pos_counts"][col2tok[c]], st["neg_counts"][col2tok[c]],
                          {"nmf_col_idx": c})
                    for c, w in zip(idxs.tolist(), vals.tolist()) if w >= 1e-6]
            ords.append((f"topic_{t}", f"Topic {t}", toks, metrics[t]))
        out["nmf"] = ({"ordering_type_id": "nmf", "display_name": f"NMF Topics ({num_topics} topics)",
                       "x_axis_label": "NMF Topic Weight", "y_axis_label": "Avg Logit Diff",
                       "num_topics": num_topics, "beta": 2.0, "mode": "logit_diff_magnitude",
                       "pairwise": {"cosine_similarity": (normed @ normed.T).tolist()}, "topic_metrics": metrics},
                      ords)
    return out


def ordering_dir(type_id, num_topics):
    if type_id == "nmf":
        return f"nmf_topics{num_topics}_topn200_mode_logit_diff_magnitude_beta2p0_orthfalse_w1000p0"
    return type_id


def write_seed_files(folder, dataset, result, num_topics):
    for type_id, (meta, ords) in result.items():
        tdir = os.path.join(folder, ordering_dir(type_id, num_topics))
        os.makedirs(os.path.join(tdir, dataset), exist_ok=True)
        with open(os.path.join(tdir, "metadata.json"), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2, ensure_ascii=False)
        index = {"dataset_name": dataset, "orderings": [
            {"ordering_id": oid, "display_label": label, "path": f"{oid}.json", "num_tokens": len(toks)}
            for oid, label, toks, _ in ords]}
        with open(os.path.join(tdir, dataset, "orderings.json"), "w", encoding="utf-8") as f:
            json.dump(index, f, indent=2, ensure_ascii=False)
        for oid, label, toks, extra in ords:
            with open(os.path.join(tdir, dataset, f"{oid}.json"), "w", encoding="utf-8") as f:
                json.dump({"ordering_id": oid, "display_label": label, "tokens": toks, **extra}, f, indent=2,
                          ensure_ascii=False)


# ---- tie flags: where another fp32 engine may legitimately differ -------------------------------------------

def tie_tokens(diff, mask, top_k):
    """Tokens whose value lies within TIE_TOL of the k-th value of a position whose k-th and (k+1)-th values are
    within TIE_TOL (either side of the top-k)."""
    flagged = set()
    rows = diff[mask.bool()]
    for row in rows:
        for sign in (1.0, -1.0):
            v = (sign * row).double()
            s, order = torch.sort(v, descending=True)
            if top_k < len(s) and float(s[top_k - 1] - s[top_k]) <= TIE_TOL:
                edge = float(s[top_k - 1])
                flagged.update(torch.nonzero((v - edge).abs() <= 2 * TIE_TOL).flatten().tolist())
    return sorted(flagged)


def near_zero_counts(diff, mask):
    rows = diff[mask.bool()]
    return (rows.abs() <= TIE_TOL).sum(dim=0).to(torch.int64)


def sparse_list(vec):
    return [[i, int(v)] for i, v in enumerate(vec.tolist()) if v != 0]


# ---- one case ---------------------------------------------------------------------------------------------

def run_case(name, case):
    tok, base, ft = load_models(case)
    n, top_k = case["n"], case["top_k"]
    if case["is_chat"]:
        samples, positions = load_chat_samples(tok, case["dataset"], case["column"], n, case["k_pre"],
                                               case["max_samples"])
    else:
        samples, positions = load_text_samples(tok, case["dataset"], case["column"], n, case["max_samples"])
    assert samples, f"{name}: no samples"
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    lb, mask = batch_logits(base, samples, pad, case["batch_size"])
    lf, _ = batch_logits(ft, samples, pad, case["batch_size"])
    V = min(lb.shape[-1], lf.shape[-1])
    diff = lf[..., :V] - lb[..., :V]
    if positions is not None:  # slice_to_positions (the attention mask is left as it was, as in the seed)
        diff = torch.stack([diff[i, p] for i, p in enumerate(positions)])
    st = compute_stats(diff, mask, n, case["max_samples"], top_k, case["batch_size"])
    fit = fit_nmf(st["nmf"], case["num_topics"], case["seed"]) if st["nmf"]["row_counter"] else None
    num_tokens = max(100, top_k)
    result = orderings(tok, st, fit, num_tokens, case["num_topics"])

    folder = os.path.join(OUT, name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    write_seed_files(folder, case["dataset_name"], result, case["num_topics"])
    rel = os.path.relpath(case.get("dataset_id", case["dataset"]), ROOT)
    overrides = [f"diffing.method.max_samples={case['max_samples']}",
                 f"diffing.method.max_tokens_per_sample={n}", f"diffing.method.top_k={top_k}",
                 f"diffing.method.batch_size={case['batch_size']}", f"diffing.method.pre_assistant_k={case['k_pre']}",
                 f"diffing.method.token_ordering.nmf.num_topics={case['num_topics']}", f"seed={case['seed']}",
                 "diffing.method.datasets=[{id: '${env:DIFFKIT_ROOT,.}/%s', is_chat: %s, %s: %s, streaming: true}]"
                 % (rel, "true" if case["is_chat"] else "false",
                    "messages_column" if case["is_chat"] else "text_column", case["column"])]
    with open(os.path.join(folder, "overrides.txt"), "w") as f:
        f.write("\n".join(overrides) + "\n")
    ref = {
        "case": name, "dataset_name": case["dataset_name"], "vocab_size": V, "top_k": top_k, "seed": case["seed"],
        "num_samples": st["num_samples"], "total_positions": st["total"], "tie_tol": TIE_TOL,
        "samples": samples, "positions": positions,
        "topk_pos_counts": sparse_list(st["pos_counts"]), "topk_neg_counts": sparse_list(st["neg_counts"]),
        "count_positive": sparse_list(st["count_pos"]),
        "sum_logit_diff": [float(x) for x in st["sum_diff"].tolist()],
        "sum_abs_logit_diff": [float(x) for x in st["diff"][st["mask"].bool()].abs().sum(dim=0).tolist()],
        "tie_tokens": tie_tokens(st["diff"], st["mask"], top_k),
        "near_zero": sparse_list(near_zero_counts(st["diff"], st["mask"])),
        "nmf": None if fit is None or not case.get("compare_nmf", True) else {
            "rows": fit["rows"], "cols": fit["cols"], "nnz": int(fit["V"].values().numel()),
            "col_token_ids": st["nmf"]["col2tok"], "n_iter": fit["n_iter"], "reconstruction_error": fit["err"],
            "W": fit["W"].tolist()},
    }
    with open(os.path.join(folder, "reference.json"), "w") as f:
        json.dump(ref, f)
    if case["nmf_case"] and fit is not None:
        V_ = fit["V"]
        nmf_case = {"rows": fit["rows"], "cols": fit["cols"], "rank": case["num_topics"], "seed": case["seed"],
                    "indices": V_.indices().tolist(), "values": V_.values().tolist(),
                    "W0": fit["W0"].tolist(), "H0": fit["H0"].tolist(), "W": fit["W"].tolist(),
                    "H": fit["H"].tolist(), "n_iter": fit["n_iter"], "reconstruction_error": fit["err"]}
        with open(os.path.join(folder, "nmf_case.json"), "w") as f:
            json.dump(nmf_case, f)
    top = result["top_k_occurring"][1][0][2][:10]
    print(f"{name}: {st['num_samples']} samples, {st['total']} positions, V={V}, nmf "
          f"{'-' if fit is None else str(fit['n_iter']) + ' it, err %.4g' % fit['err']}, "
          f"{len(ref['tie_tokens'])} tie-flagged tokens; top: {[e['token_str'] for e in top]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", choices=sorted(CASES), action="append")
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    for name in args.case or sorted(CASES):
        run_case(name, CASES[name])


if __name__ == "__main__":
    main()
