#!/usr/bin/env python3
"""make_report_fixture.py — trims real demo results into tests/fixtures/report/results/, the small results folder
the report tests read (tests/report/). Every value kept is a value a diffkit method wrote on the demo pair; only
what the report reads is kept, and big arrays are cut:

  - ADL: the first 6 positions (positions, mean_diff, logit lens top 10 tokens), Patchscope, steering, token
    relevance, model norms; the JSON files beside it with the fields the report reads; 2 steering prompts.
  - KL: per dataset the statistics groups and the first 4000 per-token values; max-act tables cut to 2 examples
    of at most 48 tokens (the window around each example's largest value, as the report shows it).
  - activation analysis: statistics, 4 histograms, the mean_norm_diff tables (cut as above).
  - PCA: the variance ratios; component 0's tables (cut).
  - SAE / crosscoder: training curves, the first 32 latents' statistics (the summary's top_latents kept where
    they fall among them), max-act tables of the first 2 the report picks (cut).
  - diff mining: the orderings' first 20 tokens.
  - amplification: results.h5 as is, 2 prompts of generations.jsonl.

Usage: /work/venv/bin/python tools/make_report_fixture.py diffkit_output/diffing_results/demo/demo_glacier_honey \
           tests/fixtures/report/results
"""
import json
import os
import shutil
import sys

import h5py
import numpy as np

POSITIONS, TOKENS, EXAMPLES, WINDOW, KL_TOKENS, LATENTS, ORDER_ROWS = 6, 10, 2, 48, 1500, 32, 20
STR = h5py.string_dtype("utf-8")


def copy_attrs(src, dst):
    for k, v in src.attrs.items():
        dst.attrs[k] = v


def ensure_group(out, path):
    g = out.require_group(path)
    return g


def copy_ds(src, out, path, data=None):
    d = src[path]
    arr = d[...] if data is None else data
    if d.dtype.kind in ("O", "S") or h5py.check_string_dtype(d.dtype) is not None:
        arr = np.array([x.decode() if isinstance(x, bytes) else x for x in np.ravel(arr)], dtype=object).reshape(np.shape(arr))
        nd = out.create_dataset(path, data=arr, dtype=STR)
    else:
        nd = out.create_dataset(path, data=arr)
    copy_attrs(d, nd)
    # the groups on the way keep their attributes
    parts = path.strip("/").split("/")
    for i in range(1, len(parts)):
        gp = "/" + "/".join(parts[:i])
        copy_attrs(src[gp], out[gp])


def copy_root(src, out):
    copy_attrs(src, out)
    for name in ("summary/json",):  # config_yaml, inputs, json_files: the report does not read them
        if name in src:
            copy_ds(src, out, "/" + name)


def copy_group_attrs(src, out, path):
    g = ensure_group(out, path)
    copy_attrs(src[path], g)
    parts = path.strip("/").split("/")
    for i in range(1, len(parts)):
        gp = "/" + "/".join(parts[:i])
        copy_attrs(src[gp], out[gp])


def copy_table(src, out, path):
    """A max-activating table cut to EXAMPLES examples of at most WINDOW tokens around the largest value."""
    t = src[path]
    off = t["token_offsets"][...]
    toks = t["tokens"][...]
    vals = t["values"][...]
    sparse = "value_offsets" in t
    n = min(EXAMPLES, len(t["score"]))
    new_tok, new_val, new_off, new_voff, new_pos = [], [], [0], [0], []
    for i in range(n):
        a, b = off[i], off[i + 1]
        seq = toks[a:b]
        if sparse:
            va, vb = t["value_offsets"][i], t["value_offsets"][i + 1]
            pos = t["positions"][va:vb]
            v = vals[va:vb]
            dense = np.zeros(len(seq), np.float32)
            dense[pos] = v
        else:
            dense = vals[a:b]
        peak = int(np.argmax(np.abs(np.nan_to_num(dense)))) if len(dense) else 0
        w0 = max(0, peak - WINDOW // 2)
        w1 = min(len(seq), w0 + WINDOW)
        new_tok.append(seq[w0:w1])
        new_off.append(new_off[-1] + (w1 - w0))
        if sparse:
            keep = (pos >= w0) & (pos < w1)
            new_pos.append((pos[keep] - w0).astype(np.int32))
            new_val.append(v[keep])
            new_voff.append(new_voff[-1] + int(keep.sum()))
        else:
            new_val.append(dense[w0:w1])
    g = ensure_group(out, path)
    copy_group_attrs(src, out, path)
    g.create_dataset("score", data=t["score"][:n])
    g.create_dataset("sequence_index", data=t["sequence_index"][:n])
    g.create_dataset("token_offsets", data=np.array(new_off, np.int64))
    g.create_dataset("tokens", data=np.concatenate(new_tok).astype(np.int32))
    g.create_dataset("values", data=np.concatenate(new_val).astype(np.float32))
    text = [x.decode() if isinstance(x, bytes) else x for x in t["text"][:n]]
    g.create_dataset("text", data=np.array(text, dtype=object), dtype=STR)
    if sparse:
        g.create_dataset("value_offsets", data=np.array(new_voff, np.int64))
        g.create_dataset("positions", data=np.concatenate(new_pos).astype(np.int32))


def walk(src, path):
    """Groups and datasets under path (names relative to the file)."""
    out = []
    src[path].visit(lambda name: out.append(path.rstrip("/") + "/" + name))
    return out


def copy_json(src_dir, dst_dir, rel, keep=None):
    with open(os.path.join(src_dir, rel)) as f:
        d = json.load(f)
    if keep is not None:
        d = {k: v for k, v in d.items() if k in keep}
    os.makedirs(os.path.dirname(os.path.join(dst_dir, rel)), exist_ok=True)
    with open(os.path.join(dst_dir, rel), "w") as f:
        json.dump(d, f, indent=1)


def copy_jsonl(src_dir, dst_dir, rel, n, samples):
    lines = [json.loads(x) for x in open(os.path.join(src_dir, rel)) if x.strip()][:n]
    for rec in lines:
        for k, v in list(rec.items()):
            if isinstance(v, list) and v and isinstance(v[0], str) and k.endswith("samples"):
                rec[k] = v[:samples]
            if isinstance(v, dict) and k.endswith("samples"):
                rec[k] = {kk: vv[:samples] for kk, vv in v.items()}
    os.makedirs(os.path.dirname(os.path.join(dst_dir, rel)), exist_ok=True)
    with open(os.path.join(dst_dir, rel), "w") as f:
        for rec in lines:
            f.write(json.dumps(rec) + "\n")


def adl(src_dir, dst_dir):
    m = "activation_difference_lens"
    with h5py.File(f"{src_dir}/{m}/results.h5") as s, h5py.File(f"{dst_dir}/{m}/results.h5", "w", libver="latest") as o:
        copy_root(s, o)
        for layer in [k for k in s if k.startswith("layer_")]:
            for ds in s[layer]:
                g = f"/{layer}/{ds}"
                copy_group_attrs(s, o, g)
                copy_ds(s, o, g + "/positions", s[g + "/positions"][:POSITIONS])
                copy_ds(s, o, g + "/mean_diff", s[g + "/mean_diff"][:POSITIONS])
                for v in ("mean_diff", "base_mean", "ft_mean"):
                    for col in ("top_tokens", "top_probs", "top_ids"):
                        copy_ds(s, o, f"{g}/logit_lens/{v}/{col}", s[f"{g}/logit_lens/{v}/{col}"][:POSITIONS, :TOKENS])
                for sub in ("auto_patch_scope", "steering", "token_relevance"):
                    if g + "/" + sub not in s:
                        continue
                    for p in walk(s, g + "/" + sub):
                        if isinstance(s[p], h5py.Dataset):
                            if not p.endswith("/vector"):
                                copy_ds(s, o, p)
                        else:
                            copy_group_attrs(s, o, p)
        for p in walk(s, "/model_norms"):
            if isinstance(s[p], h5py.Dataset):
                copy_ds(s, o, p)
    shutil.copy(f"{src_dir}/{m}/dataset_mapping.json", f"{dst_dir}/{m}/dataset_mapping.json")
    for root, _, files in os.walk(f"{src_dir}/{m}"):
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), f"{src_dir}/{m}")
            if "auto_patch_scope_pos_" in name:
                copy_json(f"{src_dir}/{m}", f"{dst_dir}/{m}", rel,
                          {"best_scale", "tokens_at_best_scale", "selected_tokens", "token_probs", "normalized", "grader"})
            elif name.startswith("relevance_"):
                copy_json(f"{src_dir}/{m}", f"{dst_dir}/{m}", rel,
                          {"layer", "position", "variant", "source", "labels", "tokens", "percentage", "grader"})
            elif name == "threshold.json":
                copy_json(f"{src_dir}/{m}", f"{dst_dir}/{m}", rel)
            elif name == "generations.jsonl":
                copy_jsonl(f"{src_dir}/{m}", f"{dst_dir}/{m}", rel, 2, 2)


def kl(src_dir, dst_dir):
    with h5py.File(f"{src_dir}/kl/results.h5") as s, h5py.File(f"{dst_dir}/kl/results.h5", "w", libver="latest") as o:
        copy_root(s, o)
        for ds in [k for k in s if isinstance(s[k], h5py.Group) and "per_token_kl" in s[k]]:
            copy_ds(s, o, f"/{ds}/per_token_kl", s[f"/{ds}/per_token_kl"][:KL_TOKENS])
            for st in ("per_token_statistics", "mean_per_sample_statistics"):
                copy_group_attrs(s, o, f"/{ds}/{st}")
            for table in ("per_token", "mean_per_sample"):
                copy_table(s, o, f"/max_act/{table}/{ds}")
    shutil.copy(f"{src_dir}/kl/summary.json", f"{dst_dir}/kl/summary.json")


def activation_analysis(src_dir, dst_dir):
    m = "activation_analysis"
    with h5py.File(f"{src_dir}/{m}/results.h5") as s, h5py.File(f"{dst_dir}/{m}/results.h5", "w", libver="latest") as o:
        copy_root(s, o)
        for layer in [k for k in s if k.startswith("layer_")]:
            for ds in [k for k in s[layer] if k != "max_act"]:
                g = f"/{layer}/{ds}"
                copy_group_attrs(s, o, g)
                for st in s[g + "/statistics"]:
                    copy_group_attrs(s, o, f"{g}/statistics/{st}")
                for h in ("norm_diff", "cos_sim", "relative_norm_diff", "norm_finetuned"):
                    copy_ds(s, o, f"{g}/histograms/{h}/counts")
                    copy_ds(s, o, f"{g}/histograms/{h}/edges")
                copy_table(s, o, f"/{layer}/max_act/mean_norm_diff/{ds}")


def pca(src_dir, dst_dir):
    with h5py.File(f"{src_dir}/pca/results.h5") as s, h5py.File(f"{dst_dir}/pca/results.h5", "w", libver="latest") as o:
        copy_root(s, o)
        for p in walk(s, "/"):
            if p.endswith("/explained_variance_ratio"):
                g = p[: -len("/explained_variance_ratio")]
                copy_group_attrs(s, o, g)
                copy_ds(s, o, p)
                copy_ds(s, o, g + "/analysis/cumulative_variance_ratio")
                for sign in ("positive", "negative"):
                    for ds in s[f"{g}/max_act/{sign}"]:
                        copy_table(s, o, f"{g}/max_act/{sign}/{ds}/component_0")


def dictionary(src_dir, dst_dir, m):
    with h5py.File(f"{src_dir}/{m}/results.h5") as s, h5py.File(f"{dst_dir}/{m}/results.h5", "w", libver="latest") as o:
        copy_root(s, o)
        summary = json.loads(s["summary/json"][()])
        for layer in [k for k in s if k.startswith("layer_")]:
            for run in s[layer]:
                g = f"/{layer}/{run}"
                copy_group_attrs(s, o, g)
                for c in s[g + "/training"]:
                    copy_ds(s, o, f"{g}/training/{c}")
                for c in s[g + "/latent_stats"]:
                    copy_ds(s, o, f"{g}/latent_stats/{c}", s[f"{g}/latent_stats/{c}"][:LATENTS])
                lay = summary["layers"][layer[len("layer_"):]]
                lay["top_latents"] = [t for t in lay.get("top_latents", []) if t["latent"] < LATENTS]
                # examples of the first 2 latents the report picks (the first latents when no top latent is left)
                picked = [t["latent"] for t in lay["top_latents"][:2]] or list(range(LATENTS))
                for latent in picked:
                    for ds in s[g + "/max_act"]:
                        p = f"{g}/max_act/{ds}/latent_{latent}"
                        if p in s and sum(1 for x in picked if f"{g}/max_act/{ds}/latent_{x}" in o) < 2:
                            copy_table(s, o, p)
        del o["summary/json"]
        o.create_dataset("summary/json", data=json.dumps(summary), dtype=STR)


def diff_mining(src_dir, dst_dir, run):
    m = f"diff_mining/{run}"
    with h5py.File(f"{src_dir}/{m}/results.h5") as s, h5py.File(f"{dst_dir}/{m}/results.h5", "w", libver="latest") as o:
        copy_root(s, o)
        for ds in [k for k in s if isinstance(s[k], h5py.Group) and "orderings" in s[k]]:
            copy_group_attrs(s, o, "/" + ds)
            for p in walk(s, f"/{ds}/orderings"):
                if isinstance(s[p], h5py.Dataset):
                    copy_ds(s, o, p, s[p][:ORDER_ROWS])
                else:
                    copy_group_attrs(s, o, p)


def amplification(src_dir, dst_dir):
    shutil.copy(f"{src_dir}/amplification/results.h5", f"{dst_dir}/amplification/results.h5")
    copy_jsonl(src_dir, dst_dir, "amplification/completions/generations.jsonl", 2, 2)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    if os.path.exists(dst):
        shutil.rmtree(dst)
    for m in ("activation_difference_lens", "kl", "activation_analysis", "pca", "sae_difference", "crosscoder",
              "amplification"):
        os.makedirs(f"{dst}/{m}")
    adl(src, dst)
    kl(src, dst)
    activation_analysis(src, dst)
    pca(src, dst)
    dictionary(src, dst, "sae_difference")
    dictionary(src, dst, "crosscoder")
    for run in os.listdir(f"{src}/diff_mining"):
        if os.path.isfile(f"{src}/diff_mining/{run}/results.h5"):
            os.makedirs(f"{dst}/diff_mining/{run}")
            diff_mining(src, dst, run)
    amplification(src, dst)


if __name__ == "__main__":
    main()
