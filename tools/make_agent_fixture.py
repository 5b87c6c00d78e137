#!/usr/bin/env python3
"""make_agent_fixture.py — trims the demo's ADL and diff-mining results into the small committed fixture of the
agent tests (tests/fixtures/agent/{adl_demo,dm_demo}).

Why: the agent's overview and tools read real results (docs/formats.md "ADL results", "Diff mining results");
the demo's are megabytes, the tests need a few hundred KB. Only what the agent reads is kept, unchanged:

  ADL (layer_1/pretrain): positions 0..11 of results.h5's positions, logit_lens/mean_diff/{top_tokens,top_probs},
  mean_diff (for the golden's steering vector), the steering vector of position 1, activation_dim; the JSON files
  auto_patch_scope_pos_{0,1}.json (the agent's fields; the grader's long texts dropped), steering/position_1/
  {threshold.json, generations.jsonl (first 6 prompts, samples as written, and one constructed record: the first
  prompt with the second record's samples)}, model_norms_pretrain.json.
  Diff mining (seed42_top100): run_metadata.json, every ordering folder's metadata.json, orderings.json and
  ordering files with the first 40 tokens, and an empty results.h5 (the agent only checks that it exists).

  The null pair (adl_null): demo_null's ADL results (the base against itself), the same trimming, no patchscope or
  steering (diff_adl writes none for a zero difference).

Usage: /work/venv/bin/python tools/make_agent_fixture.py [DEMO_RESULTS_DIR] [OUT_DIR] [NULL_RESULTS_DIR]
  defaults: diffkit_output/diffing_results/demo/demo_glacier_honey  tests/fixtures/agent
            diffkit_output/diffing_results/demo/demo_null
"""
import json
import os
import shutil
import sys

import h5py
import numpy as np

P_KEEP = 12
SAMPLE_PROMPTS = 6
DM_TOKENS = 40


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


def copy_lens(gi, go):
    """The first P_KEEP positions of a dataset group: positions, mean_diff and the difference's logit lens."""
    go["positions"] = gi["positions"][:P_KEEP]
    go["mean_diff"] = gi["mean_diff"][:P_KEEP]
    ll = go.create_group("logit_lens/mean_diff")
    ll["top_probs"] = gi["logit_lens/mean_diff/top_probs"][:P_KEEP]
    ll["top_ids"] = gi["logit_lens/mean_diff/top_ids"][:P_KEEP]
    toks = gi["logit_lens/mean_diff/top_tokens"].asstr()[:P_KEEP]
    ll.create_dataset("top_tokens", data=np.array(toks, dtype=object), dtype=h5py.string_dtype(encoding="utf-8"))


def adl(src, dst, null=False):
    """The ADL fixture (adl_demo); null=True: the null pair's (adl_null: organism demo_null, the base against itself:
    the difference is zero, so diff_adl wrote no patchscope or steering for it; the uniform logit lens is kept)."""
    src = os.path.join(src, "activation_difference_lens")
    dst = os.path.join(dst, "adl_null" if null else "adl_demo")
    shutil.rmtree(dst, ignore_errors=True)
    os.makedirs(dst)
    g = "layer_1/pretrain"
    vstr = h5py.string_dtype(encoding="utf-8")
    with h5py.File(os.path.join(src, "results.h5"), "r") as fi, h5py.File(os.path.join(dst, "results.h5"), "w") as fo:
        fo.attrs["method"] = fi.attrs["method"]
        gi, go = fi[g], fo.create_group(g)
        for a in ("activation_dim", "count"):
            go.attrs[a] = gi.attrs[a]
        if null:
            assert not np.any(gi["mean_diff"][...]), "not a null pair: the mean difference is not zero"
        copy_lens(gi, go)
        if not null:
            sp = go.create_group("steering/position_1")
            sp.attrs["avg_threshold"] = gi["steering/position_1"].attrs["avg_threshold"]
            sp["vector"] = gi["steering/position_1/vector"][...]
        fo.create_dataset("summary/json", data=json.dumps({"note": "trimmed fixture"}), dtype=vstr)
    if null:
        shutil.copy(os.path.join(src, "model_norms_pretrain.json"), dst)
        return
    lsrc, ldst = os.path.join(src, g), os.path.join(dst, g)
    for p in (0, 1):
        rec = json.load(open(os.path.join(lsrc, f"auto_patch_scope_pos_{p}.json"), encoding="utf-8"))
        keep = {k: rec[k] for k in ("best_scale", "tokens_at_best_scale", "selected_tokens", "token_probs",
                                    "normalized", "grader")}
        write_json(os.path.join(ldst, f"auto_patch_scope_pos_{p}.json"), keep)
    sdir = "steering/position_1"
    os.makedirs(os.path.join(ldst, sdir))
    thr = json.load(open(os.path.join(lsrc, sdir, "threshold.json"), encoding="utf-8"))
    write_json(os.path.join(ldst, sdir, "threshold.json"),
               {k: thr[k] for k in ("thresholds", "avg_threshold", "grader")})
    with open(os.path.join(lsrc, sdir, "generations.jsonl"), encoding="utf-8") as f:
        lines = f.read().splitlines()[:SAMPLE_PROMPTS]
    # One constructed record: the first prompt again with the second record's samples, so that the tools' `n`
    # (samples per prompt, counted over records) has something to count; the seed's reader allows several
    # records per prompt.
    extra = json.loads(lines[1])
    extra["prompt"] = json.loads(lines[0])["prompt"]
    lines.append(json.dumps(extra, ensure_ascii=False))
    with open(os.path.join(ldst, sdir, "generations.jsonl"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    shutil.copy(os.path.join(src, "model_norms_pretrain.json"), dst)


def dm(src, dst):
    src = os.path.join(src, "diff_mining", "seed42_top100")
    dst = os.path.join(dst, "dm_demo")
    shutil.rmtree(dst, ignore_errors=True)
    os.makedirs(dst)
    shutil.copy(os.path.join(src, "run_metadata.json"), dst)
    with h5py.File(os.path.join(dst, "results.h5"), "w") as f:
        f.attrs["method"] = "diff_mining"
        f.attrs["logit_extraction_method"] = "logits"
    for folder in sorted(os.listdir(src)):
        fdir = os.path.join(src, folder)
        if not os.path.isfile(os.path.join(fdir, "metadata.json")):
            continue
        meta = json.load(open(os.path.join(fdir, "metadata.json"), encoding="utf-8"))
        write_json(os.path.join(dst, folder, "metadata.json"),
                   {k: meta[k] for k in ("ordering_type_id", "display_name", "x_axis_label", "y_axis_label")})
        for ds in sorted(os.listdir(fdir)):
            ddir = os.path.join(fdir, ds)
            if not os.path.isdir(ddir):
                continue
            index = json.load(open(os.path.join(ddir, "orderings.json"), encoding="utf-8"))
            write_json(os.path.join(dst, folder, ds, "orderings.json"), index)
            for entry in index["orderings"]:
                o = json.load(open(os.path.join(ddir, entry["ordering_id"] + ".json"), encoding="utf-8"))
                o = {k: o[k] for k in ("ordering_id", "display_label", "tokens")}
                o["tokens"] = o["tokens"][:DM_TOKENS]
                write_json(os.path.join(dst, folder, ds, entry["ordering_id"] + ".json"), o)


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "diffkit_output/diffing_results/demo/demo_glacier_honey"
    dst = sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures/agent"
    null_src = sys.argv[3] if len(sys.argv) > 3 else "diffkit_output/diffing_results/demo/demo_null"
    adl(src, dst)
    dm(src, dst)
    if os.path.isdir(null_src):  # made by: diff_preprocess / diff_adl organism=demo_null (README "The agent")
        adl(null_src, dst, null=True)


if __name__ == "__main__":
    main()
