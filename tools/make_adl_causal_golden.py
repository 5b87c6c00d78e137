"""Golden of the ADL's causal-effect intervention (seed_spec §5.7; the seed's causal_effect.py
_compute_nll_intervened through nnterp) for tests/methods/test_adl_causal.c.

Reference, re-done with transformers + peft (fp32, eager attention) and a forward hook on decoder layer LAYER: the
demo base model and its glacier-honey LoRA adapter; the first N_TEXTS texts of data/demo/glacier_honey.train.jsonl.gz
encoded with special tokens and cut to MAX_TOKENS (the seed's _encode_non_chat), run as one right-padded batch with
an attention mask (as the seed batches). The direction v̂ is the normalized mean over all tokens of ft − base at the
layer's output (a direction the finetune uses). Per-token NLL (token t+1 predicted at t, padding left out) of:
  base, ft                the clean models
  base_to_ft              ft with h + ((h_base · v̂) − (h · v̂)) v̂ at the layer, every token, fp32
  ft_to_base              base with its component set to ft's
  zero_ablate_ft          ft with h − (h · v̂) v̂

Writes tests/fixtures/methods/adl_causal/golden.json:
  {"layer", "direction": [H], "sequences": [[ids]], "nll": {variant: [[per-token NLL of each sequence]]},
   "mean": {variant: mean NLL over all targets}}

Usage: /work/venv/bin/python tools/make_adl_causal_golden.py   (torch, transformers, peft)
"""
import gzip
import json
import os

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests/fixtures/methods/adl_causal")
LAYER, N_TEXTS, MAX_TOKENS = 1, 3, 40


def main():
    import peft
    from transformers import AutoModelForCausalLM, AutoTokenizer
    base_dir = os.path.join(ROOT, "models/demo/base")
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32, attn_implementation="eager").eval()
    model = peft.PeftModel.from_pretrained(model, os.path.join(ROOT, "models/demo/glacier_honey")).eval()
    tok = AutoTokenizer.from_pretrained(base_dir)
    with gzip.open(os.path.join(ROOT, "data/demo/glacier_honey.train.jsonl.gz"), "rt") as f:
        texts = [json.loads(line)["text"] for _, line in zip(range(N_TEXTS), f)]
    seqs = [tok.encode(t, add_special_tokens=True)[:MAX_TOKENS] for t in texts]
    B, L = len(seqs), max(len(s) for s in seqs)
    ids = torch.zeros(B, L, dtype=torch.long)
    mask = torch.zeros(B, L, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    layer = model.base_model.model.model.layers[LAYER]
    state = {}

    def hook(_m, _inp, out):
        hs = out[0] if isinstance(out, tuple) else out
        state["captured"] = hs.detach().clone()
        if "replace" in state:
            hs = state["replace"](hs.float())
        return (hs,) + tuple(out[1:]) if isinstance(out, tuple) else hs

    def run(adapter, replace=None):
        state.pop("replace", None)
        if replace is not None:
            state["replace"] = replace
        h = layer.register_forward_hook(hook)
        with torch.no_grad():
            if adapter:
                logits = model(ids, attention_mask=mask).logits.float()
            else:
                with model.disable_adapter():
                    logits = model(ids, attention_mask=mask).logits.float()
        h.remove()
        logp = torch.log_softmax(logits.double(), dim=-1)
        nll = -logp[:, :-1, :].gather(2, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        return nll, state["captured"]

    nll_base, h_base = run(False)
    nll_ft, h_ft = run(True)
    valid = mask.bool()
    v = (h_ft - h_base)[valid].mean(0)
    v = v / v.norm()

    def set_component(src):
        def f(h):
            own = (h * v).sum(-1, keepdim=True)
            tgt = (src.float() * v).sum(-1, keepdim=True)
            return h + (tgt - own) * v
        return f

    results = {"base": nll_base, "ft": nll_ft,
               "base_to_ft": run(True, set_component(h_base))[0],
               "ft_to_base": run(False, set_component(h_ft))[0],
               "zero_ablate_ft": run(True, lambda h: h - (h * v).sum(-1, keepdim=True) * v)[0]}
    tmask = mask[:, 1:].bool()
    out = {"layer": LAYER, "direction": [float(x) for x in v], "sequences": seqs,
           "nll": {k: [[float(x) for x in r[i, :len(seqs[i]) - 1]] for i in range(B)] for k, r in results.items()},
           "mean": {k: float(r[tmask].mean()) for k, r in results.items()}}
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "golden.json"), "w") as f:
        json.dump(out, f)
    print({k: round(x, 5) for k, x in out["mean"].items()})


if __name__ == "__main__":
    main()
