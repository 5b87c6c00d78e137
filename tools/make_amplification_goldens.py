"""Goldens of weight amplification (seed_spec.md §12) for tests/engine/test_amplification.c.

The reference is the seed's mechanism, re-done here in a few lines: an amplification config resolved to one
weight per (layer, attention | mlp) (amplification_config.py: LayerAmplification / ModuleAmplification /
LayerRange resolve, relative layers round(f·(L−1)) with Python's round, inclusive ranges, unlisted modules 1,
later entries overwrite earlier ones), then every lora_B.weight whose key matches the seed's module regex
base_model.model.model.layers.<l>.(self_attn|mlp).*.lora_B.weight multiplied by that weight
(patch_lora_weights), loaded into peft and run unmerged with transformers in fp32, eager attention.

Model: tests/fixtures/engine/models/llama_text (3 layers). Adapter: adapters/llama_text_all, made here: random
LoRA on all seven projections of all three layers (so attention and mlp, and every layer, are told apart).

Writes tests/fixtures/engine/amplification/:
  tokens.jsonl                     4 sequences, {"ids": [...]} per line
  configs/<case>.yaml              the amplification configs of the cases not taken from configs/ presets
  golden.safetensors               float32 <case>.seq{i}.logits [T, V] and <case>.weights [L, 2] (the resolved
                                   attention, mlp weights) for the cases below

Usage: /work/venv/bin/python tools/make_amplification_goldens.py   (torch, transformers, peft, safetensors, pyyaml)
"""
import json
import os
import re
import sys

import torch
import yaml
from safetensors.torch import load_file, save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from make_model_goldens import load_fp32, make_adapter, write_tokens  # noqa: E402

FIX = os.path.join(ROOT, "tests/fixtures/engine")
OUT = os.path.join(FIX, "amplification")
PRESETS = os.path.join(ROOT, "configs/diffing/method/amplification_presets")

# The cases the C test runs: name -> config file (a preset of configs/ or one written below).
OWN_CONFIGS = {
    "zero": {"name": "zero", "adapters": [{"organism_name": "custom", "variant": None, "layer_amplifications": [
        {"layers": "all", "module_amplifications": [{"modules": "all", "weight": 0.0}]}]}]},
    "one": {"name": "one", "description": "the finetune itself", "adapters": [{"layer_amplifications": [
        {"layers": [0, 1, 2], "module_amplifications": [{"modules": "all", "weight": 1}]}]}]},
    # relative range 0.0-0.5 -> layers 0, 1 at 2.5; then absolute 1..2 attention 2, mlp 0.5 (overwrites layer 1,
    # both groups); then, in a second adapters entry, relative 0.25 -> round(0.5) = 0 (halves to even) mlp -1
    # with attention back to 1. Result: layer 0 (1, -1), layers 1 and 2 (2, 0.5).
    "mixed": {"name": "mixed", "description": "ranges, lists, modules, two adapters entries", "adapters": [
        {"organism_name": "custom", "variant": None, "layer_amplifications": [
            {"layers": {"type": "range", "start": 0.0, "end": 0.5}, "is_relative": True,
             "module_amplifications": [{"modules": "all", "weight": 2.5}]},
            {"layers": {"type": "range", "start": 1, "end": 2}, "is_relative": False,
             "module_amplifications": [{"modules": "attention", "weight": 2.0}, {"modules": "mlp", "weight": 0.5}]}]},
        {"organism_name": "custom", "variant": None, "layer_amplifications": [
            {"layers": [0.25], "is_relative": True, "module_amplifications": [{"modules": "mlp", "weight": -1.0}]}]}]},
}
CASES = {"zero": None, "one": None, "default_2.5x": "default_2.5x.yaml", "negative_1x": "negative_1x.yaml",
         "mixed": None}


def layer_value(v, n_layers, relative):
    if relative:
        assert 0 <= v <= 1
        return round(v * (n_layers - 1))  # Python's round: halves to even
    assert isinstance(v, int)
    return v


def resolve(config, n_layers):
    """The seed's resolution: per layer {attention: w, mlp: w}, layers no entry names absent (weight 1)."""
    per_layer = [{} for _ in range(n_layers)]
    for adapter in config.get("adapters", []):
        for la in adapter["layer_amplifications"]:
            modules = dict(attention=1.0, mlp=1.0)
            for m in la["module_amplifications"]:
                for g in (["attention", "mlp"] if m["modules"] == "all" else [m["modules"]]):
                    modules[g] = m["weight"]
            rel = la.get("is_relative", False)
            layers = la["layers"]
            if isinstance(layers, dict):
                start, end = layers["start"], layers["end"]
                if rel:
                    start, end = layer_value(start, n_layers, True), layer_value(end, n_layers, True)
                idx = list(range(int(start), int(end) + 1))
            elif isinstance(layers, list):
                idx = [layer_value(v, n_layers, rel) for v in layers]
            elif layers == "all":
                idx = list(range(n_layers))
            else:
                idx = [layer_value(layers, n_layers, rel)]
            for l in idx:
                per_layer[l].update(modules)
    return per_layer


def patch_lora_weights(tensors, per_layer):
    """lora_B.weight of layer l's self_attn (mlp) times its attention (mlp) weight, as the seed's regexes pick."""
    out = {k: v.clone() for k, v in tensors.items()}
    for l, groups in enumerate(per_layer):
        for group, w in groups.items():
            module = "self_attn" if group == "attention" else "mlp"
            rx = re.compile(rf"base_model\.model\.model\.layers\.{l}\.{module}.*\.lora_B\.weight")
            keys = [k for k in tensors if rx.match(k)]
            assert keys, (l, group)
            for k in keys:
                out[k] = out[k] * w
    return out


def main():
    import peft
    import transformers as tf

    model_dir = os.path.join(FIX, "models/llama_text")
    adapter_dir = os.path.join(FIX, "adapters/llama_text_all")
    modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    make_adapter(load_fp32(tf.LlamaForCausalLM, model_dir), os.path.join(FIX, "adapters"), "llama_text_all", 2100,
                 r=4, lora_alpha=8, target_modules=modules)
    cfg = json.load(open(os.path.join(adapter_dir, "adapter_config.json")))
    cfg["base_model_name_or_path"] = "llama_text"
    cfg["target_modules"] = sorted(cfg["target_modules"])  # peft saves a set: same file on every run
    json.dump(cfg, open(os.path.join(adapter_dir, "adapter_config.json"), "w"), indent=2)
    tensors = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))

    os.makedirs(os.path.join(OUT, "configs"), exist_ok=True)
    g = torch.Generator().manual_seed(2200)
    seqs = []
    for n in (1, 5, 11, 17):
        ids = torch.randint(3, 300, (n,), generator=g).tolist()
        ids[0] = 1
        seqs.append(ids)
    write_tokens(os.path.join(OUT, "tokens.jsonl"), seqs)

    golden = {}
    n_layers = 3
    for case, preset in CASES.items():
        if preset:
            config = yaml.safe_load(open(os.path.join(PRESETS, preset)))
        else:
            config = OWN_CONFIGS[case]
            with open(os.path.join(OUT, "configs", case + ".yaml"), "w") as f:
                f.write(f"# Amplification test case '{case}' (written by tools/make_amplification_goldens.py)\n")
                yaml.safe_dump(config, f, sort_keys=False)
        per_layer = resolve(config, n_layers)
        golden[f"{case}.weights"] = torch.tensor(
            [[d.get("attention", 1.0), d.get("mlp", 1.0)] for d in per_layer], dtype=torch.float32)
        patched = patch_lora_weights(tensors, per_layer)
        base = load_fp32(tf.LlamaForCausalLM, model_dir)
        pm = peft.PeftModel.from_pretrained(base, adapter_dir).eval()
        missing = peft.set_peft_model_state_dict(pm, patched)
        assert not [k for k in missing.unexpected_keys if "lora" in k], missing.unexpected_keys
        for i, ids in enumerate(seqs):
            with torch.no_grad():
                logits = pm(input_ids=torch.tensor([ids])).logits[0].float().contiguous()
            golden[f"{case}.seq{i}.logits"] = logits
        print(case, golden[f"{case}.weights"].tolist(), "seq3 logit[0,:3]", golden[f"{case}.seq3.logits"][0, :3].tolist())
    save_file(golden, os.path.join(OUT, "golden.safetensors"))


if __name__ == "__main__":
    main()
