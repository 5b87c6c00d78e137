#!/usr/bin/env python3
"""make_agent_adl_golden.py — the expected agent texts of tests/agent/test_agent_methods.c, written by the SEED's
own functions (methods/activation_difference_lens/{agents,agent_tools,util}.py, methods/diff_mining/agent_tools.py)
on the committed fixture (tools/make_agent_fixture.py).

The fixture is converted into the seed's file layout in a temporary folder (seed_spec §5.8, suffix-free names):
  layer_1/pretrain/logit_lens_pos_{p}.pt       (top_probs, top_ids, inv_probs, inv_ids) tensors, as the seed saves
  layer_1/pretrain/mean_pos_{p}.pt             the mean difference (discovery of positions, the steering vector)
  layer_1/pretrain/auto_patch_scope_pos_{p}.pt the JSON record as a dict
  layer_1/pretrain/steering/position_1/        threshold.json, generations.jsonl as they are
  model_norms_pretrain.pt                      {"ft_model_norms": {layer: tensor}}
  diff_mining_logit_extraction_logits/seed42_top100/   the diff-mining run folder
and the seed's functions run with a minimal `method`: results_dir, a tokenizer whose decode([id]) is our stored
token string of that id, the layer count of models/demo/base (get_layer_indices patched to it), hidden_size.
Heavy imports the code paths do not use (dictionary_learning, the seed's agent base classes) are stubbed;
POST_OVERVIEW_PROMPT is the placeholder <<POST_OVERVIEW>> (the C test puts our text there).

Output: tests/fixtures/agent/agent_methods_golden.json = {case: text}; texts are json.dumps(...) of the tools'
outputs and the first messages; "steering_vector" is load_position_mean_vector's float32 values.
Usage: /work/venv/bin/python tools/make_agent_adl_golden.py
"""
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import types
from pathlib import Path

import h5py
import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
SEED = Path("/work/shared/seed/diffing-toolkit/src/diffing")
FIX = ROOT / "tests/fixtures/agent"
N_LAYERS = json.load(open(ROOT / "models/demo/base/config.json"))["num_hidden_layers"]
POST = "<<POST_OVERVIEW>>"


def stub_packages():
    def mod(name, path=None, **attrs):
        m = types.ModuleType(name)
        if path is not None:
            m.__path__ = [str(path)]
        m.__dict__.update(attrs)
        sys.modules[name] = m
        return m

    mod("diffing", SEED)
    mod("diffing.utils", SEED / "utils")
    mod("diffing.utils.activations",
        get_layer_indices=lambda model, layers: [int(x * (N_LAYERS - 1)) for x in layers])
    mod("diffing.utils.model", has_thinking=lambda cfg: True)
    mod("diffing.utils.configs", DatasetConfig=object)

    class _Agent:  # the seed's base classes: only the methods under test are used
        pass

    mod("diffing.utils.agents", BlackboxAgent=_Agent, DiffingMethodAgent=_Agent)
    mod("diffing.utils.agents.prompts", POST_OVERVIEW_PROMPT=POST)
    mod("diffing.methods", SEED / "methods")
    mod("diffing.methods.activation_difference_lens", SEED / "methods/activation_difference_lens")
    mod("diffing.methods.diff_mining", SEED / "methods/diff_mining")


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    m = importlib.util.module_from_spec(spec)
    sys.modules[name] = m
    spec.loader.exec_module(m)
    return m


def seed_layout(tmp):
    """The fixture's ADL results in the seed's files; returns the decode table {id: token}."""
    src = FIX / "adl_demo"
    out = tmp / "adl"
    ldir = out / "layer_1/pretrain"
    ldir.mkdir(parents=True)
    vocab = {}
    with h5py.File(src / "results.h5", "r") as f:
        g = f["layer_1/pretrain"]
        labels = g["positions"][...]
        probs = g["logit_lens/mean_diff/top_probs"][...]
        ids = g["logit_lens/mean_diff/top_ids"][...]
        toks = g["logit_lens/mean_diff/top_tokens"].asstr()[...]
        mean = g["mean_diff"][...]
        for i, p in enumerate(labels):
            for t, s in zip(ids[i], toks[i]):
                assert vocab.get(int(t), s) == s
                vocab[int(t)] = s
            ll = (torch.tensor(probs[i]), torch.tensor(ids[i]).long(), torch.tensor(probs[i]), torch.tensor(ids[i]).long())
            torch.save(ll, ldir / f"logit_lens_pos_{int(p)}.pt")
            torch.save(torch.tensor(mean[i]), ldir / f"mean_pos_{int(p)}.pt")
    for p in (0, 1):
        rec = json.load(open(src / f"layer_1/pretrain/auto_patch_scope_pos_{p}.json", encoding="utf-8"))
        torch.save(rec, ldir / f"auto_patch_scope_pos_{p}.pt")
    shutil.copytree(src / "layer_1/pretrain/steering", ldir / "steering")
    norms = json.load(open(src / "model_norms_pretrain.json"))
    torch.save({"ft_model_norms": {int(k): torch.tensor(v) for k, v in norms["ft_model_norms"].items()}},
               out / "model_norms_pretrain.pt")
    dm = tmp / "diff_mining_logit_extraction_logits" / "seed42_top100"
    shutil.copytree(FIX / "dm_demo", dm)
    return out, tmp / "diff_mining_logit_extraction_logits", vocab


class Tokenizer:
    def __init__(self, vocab):
        self.vocab = vocab

    def decode(self, ids):
        assert len(ids) == 1
        return self.vocab[int(ids[0])]


def nmf_dir_name(nmf):  # DiffMiningMethod._ordering_dir_name for nmf, as the seed writes it
    beta_str = str(float(nmf.beta)).replace(".", "p")
    w_str = str(float(getattr(nmf, "orthogonal_weight", 1.0))).replace(".", "p")
    orth_str = "true" if bool(getattr(nmf, "orthogonal", False)) else "false"
    return (f"nmf_topics{int(nmf.num_topics)}_topn{int(nmf.top_n_tokens_per_topic)}_mode_{nmf.mode}"
            f"_beta{beta_str}_orth{orth_str}_w{w_str}")


def main():
    stub_packages()
    tools = load("diffing.methods.activation_difference_lens.agent_tools",
                 SEED / "methods/activation_difference_lens/agent_tools.py")
    util = load("diffing.methods.activation_difference_lens.util", SEED / "methods/activation_difference_lens/util.py")
    agents = load("diffing.methods.activation_difference_lens.agents",
                  SEED / "methods/activation_difference_lens/agents.py")
    dm_tools = load("diffing.methods.diff_mining.agent_tools", SEED / "methods/diff_mining/agent_tools.py")
    dm_cfg_yaml = OmegaConf.load(ROOT / "configs/diffing/method/diff_mining.yaml")
    out = {}
    with tempfile.TemporaryDirectory() as td:
        adl_dir, dm_base, vocab = seed_layout(Path(td))
        method = types.SimpleNamespace(
            results_dir=adl_dir, tokenizer=Tokenizer(vocab),
            base_model_cfg=types.SimpleNamespace(model_id="demo"),
            finetuned_model=types.SimpleNamespace(config=types.SimpleNamespace(hidden_size=256)))
        ov = {"datasets": [], "layers": [0.5], "top_k_tokens": 10, "steering_samples_per_prompt": 1,
              "max_sample_chars": 128, "positions": [0, 1, 2, 3, 4, 10, 11]}
        fake = types.SimpleNamespace(cfg=OmegaConf.create({"diffing": {"method": {"agent": {"overview": ov}}}}))
        out["adl_first_message"] = agents.ADLAgent.build_first_user_message(fake, method)
        out["adl_mapping"] = json.dumps(fake._dataset_mapping)
        ov2 = dict(ov, layers=[1, 1.0], top_k_tokens=3, positions=[11, 1, 10, 5], max_sample_chars=20)
        fake2 = types.SimpleNamespace(cfg=OmegaConf.create({"diffing": {"method": {"agent": {"overview": ov2}}}}))
        out["adl_first_message_2"] = agents.ADLAgent.build_first_user_message(fake2, method)
        out["adl_blackbox_first_message"] = agents.ADLBlackboxAgent.build_first_user_message(fake, method)
        out["logitlens_1"] = json.dumps(tools.get_logitlens_details(method, "pretrain", 0.5, [1, 0, 11, 1], 20))
        out["logitlens_2"] = json.dumps(tools.get_logitlens_details(method, "pretrain", 1, [10], 100))
        out["patchscope_1"] = json.dumps(tools.get_patchscope_details(method, "pretrain", 1, [1, 0], 5))
        out["patchscope_2"] = json.dumps(tools.get_patchscope_details(method, "pretrain", 0.5, [0], 20))
        gens = [json.loads(l) for l in open(adl_dir / "layer_1/pretrain/steering/position_1/generations.jsonl")]
        out["steering_1"] = json.dumps(tools.get_steering_samples(method, "pretrain", 0.5, 1, None, 1, 1000))
        subset = [gens[2]["prompt"], gens[0]["prompt"], "not a prompt"]
        out["steering_2"] = json.dumps(tools.get_steering_samples(method, "pretrain", 1, 1, subset, 2, 1000))
        out["steering_subset"] = json.dumps(subset)
        vec = util.load_position_mean_vector(method, "pretrain", 1, 1)
        out["steering_vector"] = json.dumps([float(x) for x in vec.tolist()])
        out["steering_strength"] = json.dumps(json.load(open(adl_dir / "layer_1/pretrain/steering/position_1/threshold.json"))["avg_threshold"])
        # diff mining
        dm_method = types.SimpleNamespace(base_results_dir=dm_base, _get_run_folder_name=lambda: "seed42_top100",
                                          _ordering_dir_name=lambda t: nmf_dir_name(dm_cfg_yaml.token_ordering.nmf)
                                          if t == "nmf" else t)
        for name, ordering, top_k in (("dm_top_k_occurring", "top_k_occurring", 100), ("dm_nmf_7", "nmf", 7),
                                      ("dm_fraction", "fraction_positive_diff", 12)):
            cfg = {"datasets": [], "top_k_tokens": top_k, "ordering_type": ordering, "extraction_method": "logits",
                   "extraction_layer": None}
            payload, mapping = dm_tools.get_overview(dm_method, cfg)
            out[name] = "OVERVIEW:\n" + json.dumps(payload) + "\n\n" + POST
            out[name + "_mapping"] = json.dumps(mapping)
    with open(FIX / "agent_methods_golden.json", "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print("wrote", FIX / "agent_methods_golden.json", len(out), "cases")


if __name__ == "__main__":
    main()
