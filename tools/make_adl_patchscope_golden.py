"""Golden of the ADL's Patchscope lens (seed_spec §5.4; the seed's utils/model.py:patchscope_lens through nnterp)
for tests/methods/test_adl_patchscope.c.

Reference, re-done with transformers + peft (fp32, eager attention) and a forward hook: the demo base model with the
glacier-honey LoRA adapter; for each of the seed's three identity prompts (tokenized with the tokenizer's special
tokens, as nnterp does), a batch of one row per scale where the output of decoder layer `LAYER` at the last token is
replaced by scale · latent; softmax of the last position's logits; per prompt the top-K tokens of each row; a token
survives when it is in the top-K of all three prompts, its value the sum of its three probabilities / 3 (the seed's
cum_probs / is_in_topk_count logic). Only the positive scales (the seed's negative rows are never used).

Writes tests/fixtures/methods/adl_patchscope/golden.json:
  {"layer", "top_k", "latent": [H], "scales": [30], "rows": [{"n_nonzero", "ids": [20], "probs": [20]}]}
(the 20 largest surviving values of each scale, ties to the lower id).

Usage: /work/venv/bin/python tools/make_adl_patchscope_golden.py   (torch, transformers, peft)
"""
import json
import os

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests/fixtures/methods/adl_patchscope")
PROMPTS = ["man -> man\n1135 -> 1135\nhello -> hello\n?", "bear -> bear\n42 -> 42\nblue -> blue\n?",
           "921 -> 921\ntarget -> target\nanna -> anna\n?"]
LAYER, TOP_K, SHOW = 1, 64, 20


def seed_scales():
    fine = [0.5 + i * 0.1 for i in range(16)]
    ints = [3.0, 4.0, 5.0, 10.0, 20.0]
    lin = [float(s) for s in torch.linspace(20.0, 200.0, steps=10).tolist()]
    return [round(s, 1) for s in sorted(set(float(x) for x in fine + ints + lin))]


def main():
    import peft
    from transformers import AutoModelForCausalLM, AutoTokenizer
    base = os.path.join(ROOT, "models/demo/base")
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, attn_implementation="eager").eval()
    model = peft.PeftModel.from_pretrained(model, os.path.join(ROOT, "models/demo/glacier_honey")).eval()
    tok = AutoTokenizer.from_pretrained(base)
    H, V = model.config.hidden_size, model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    latent = torch.randn(H, generator=g)
    latent = latent / latent.norm() * 12.0
    scales = seed_scales()
    S = len(scales)
    layer_module = model.base_model.model.model.layers[LAYER]
    count = torch.zeros(S, V, dtype=torch.int32)
    total = torch.zeros(S, V, dtype=torch.float64)
    for prompt in PROMPTS:
        ids = tok(prompt, return_tensors="pt")["input_ids"]
        batch = ids.repeat(S, 1)
        rows = torch.tensor(scales).unsqueeze(1) * latent.unsqueeze(0)  # (S, H)

        def hook(_m, _inp, out):
            hs = out[0] if isinstance(out, tuple) else out
            hs = hs.clone()
            hs[:, -1, :] = rows
            return (hs,) + tuple(out[1:]) if isinstance(out, tuple) else hs
        h = layer_module.register_forward_hook(hook)
        with torch.no_grad():
            logits = model(batch, attention_mask=torch.ones_like(batch)).logits[:, -1, :].float()
        h.remove()
        probs = torch.softmax(logits.double(), dim=-1).float()
        vals, idx = torch.topk(probs, k=TOP_K, dim=-1)
        r = torch.arange(S).unsqueeze(1)
        count[r, idx] += 1
        total[r, idx] += vals.double()
    avg = torch.where(count == len(PROMPTS), total / len(PROMPTS), torch.zeros_like(total))
    out_rows = []
    for s in range(S):
        row = avg[s]
        nz = int((row > 0).sum())
        k = min(SHOW, nz)
        # ties to the lower id: sort by (-value, id)
        order = sorted(range(V), key=lambda i: (-float(row[i]), i))[:k]
        out_rows.append({"n_nonzero": nz, "ids": order, "probs": [float(row[i]) for i in order]})
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "golden.json"), "w") as f:
        json.dump({"layer": LAYER, "top_k": TOP_K, "latent": [float(x) for x in latent], "scales": scales,
                   "rows": out_rows}, f)
    print("wrote", os.path.join(OUT, "golden.json"), "scales", S, "nonzero", [r["n_nonzero"] for r in out_rows][:5])


if __name__ == "__main__":
    main()
