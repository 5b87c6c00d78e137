#!/usr/bin/env python3
"""ref_kl.py — the goldens of the KL method's test (tests/methods/kl.sh): KL(finetuned ‖ base) per token computed
the way the seed computes it (src/diffing/methods/kl/method.py: log_softmax of both models' logits at a temperature,
Σ p_ft (log p_ft − log p_base)), with transformers (fp32, eager attention) and peft, on the token sequences a
diff_kl run recorded in its results file.

Why it reads the sequences from our results file: they are the input (which sequences of the store, cut where),
already checked elsewhere (tokenizer goldens, the stores' tests); what this script provides independently is the
forward passes of both models and the KL formula.

Usage (PyPI: torch transformers peft h5py numpy):
    python tools/ref_kl.py RESULTS.h5 MODEL_DIR ADAPTER_DIR OUT_DIR [--temperature 1.0]
writes OUT_DIR/<dataset>.tokens.txt (the sequences' tokens, one per line, for the test to check it runs the same
input) and OUT_DIR/<dataset>.per_token_kl.txt (one value per line, %.9g).
"""
import argparse
import os

import h5py
import numpy as np
import peft
import torch
import transformers as tf


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results")
    ap.add_argument("model")
    ap.add_argument("adapter")
    ap.add_argument("out")
    ap.add_argument("--temperature", type=float, default=1.0)
    args = ap.parse_args()
    torch.manual_seed(0)
    base = tf.AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation="eager").eval()
    ft_base = tf.AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation="eager")
    ft = peft.PeftModel.from_pretrained(ft_base, args.adapter).eval()
    os.makedirs(args.out, exist_ok=True)
    with h5py.File(args.results, "r") as f:
        datasets = [k for k in f.keys() if isinstance(f[k], h5py.Group) and "per_token_kl" in f[k]]
        for name in datasets:
            tokens = f[name]["tokens"][:].astype(np.int64)
            offsets = f[name]["sequence_offsets"][:]
            kl_all = []
            for s in range(len(offsets) - 1):
                ids = torch.tensor(tokens[offsets[s]:offsets[s + 1]])[None]
                with torch.no_grad():
                    zb = base(input_ids=ids).logits[0] / args.temperature
                    zf = ft(input_ids=ids).logits[0] / args.temperature
                lb = torch.log_softmax(zb, dim=-1)
                lf = torch.log_softmax(zf, dim=-1)
                kl = torch.sum(torch.exp(lf) * (lf - lb), dim=-1)
                kl_all.append(kl.numpy())
            kl_all = np.concatenate(kl_all)
            np.savetxt(os.path.join(args.out, f"{name}.tokens.txt"), tokens, fmt="%d")
            np.savetxt(os.path.join(args.out, f"{name}.per_token_kl.txt"), kl_all, fmt="%.9g")
            print(f"{name}: {len(offsets) - 1} sequences, {len(tokens)} tokens, mean KL {kl_all.mean():.6g}")


if __name__ == "__main__":
    main()
