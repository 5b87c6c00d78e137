#!/usr/bin/env python3
"""adl_reference.py — the seed's Activation Difference Lens (steps 1-2: mean differences, model norms, logit lens)
written with transformers + peft + numpy in fp32: the reference diff_adl is checked against (goldens under
tests/fixtures/methods/adl/) and benchmarked against (tools/bench_adl.sh).

It follows the seed's code (src/diffing/methods/activation_difference_lens/method.py, utils/model.py:logit_lens;
seed_spec §5.2-5.3) step by step:
  pretraining-style  records in file order with a non-blank text column (Python str.strip); text[:n*10];
                     tokenizer.encode(text, add_special_tokens=True); kept when >= n tokens, as its first n;
                     stop at max_samples kept; batches of batch_size fixed-length sequences, no padding.
  chat               messages[0] must be the user's (else skipped), messages[1] the assistant's (asserted);
                     assistant content[:n*10]; user_ids = apply_chat_template([user], add_generation_prompt=True)
                     (dropped when > 512 tokens); full_ids = apply_chat_template([user, assistant]); a = len(user_ids);
                     kept when len(full_ids) - a >= n, as full_ids[:a+n]; labels -k..-1, 0..n-1 at a + label;
                     batches right-padded with pad_token_id and an attention mask.
  activations        the output of decoder block l (a forward hook: nnterp's layers_output[l]; for the last block
                     this is before the final norm), base model then finetuned model (base + PEFT adapter).
  norms              mean over (sequence, position >= 5) of ||h||_2, per layer and model.
  means              mean over sequences of ft - base, of base, of ft: per (layer, position).
  logit lens         through the FINETUNED model's final norm and lm_head, no soft-capping: softmax of
                     lm_head(norm(v)) and of lm_head(-norm(v)); top-k probabilities and ids (k + --extra kept, so
                     a checker can tell ties at the k-th place).
Deviations (documented, both also in diff_adl): file order instead of the seed's shuffle with cfg.seed (the seed
streams a dataset the same way); fp32 weights and activations instead of the model dtype (bf16); sums and means
of the fp32 activations in float64 (numpy), so the reference's own rounding is far below the 1e-4 tolerance.

Output (--out, safetensors): ids (total,) i32 and offsets (N+1,) i64 (the sequences as run), positions (N, P) i64,
labels (P,) i64, counts (3,) i64 (records read until max_samples was reached, too short, skipped), layers (L,) i64,
base_norms / ft_norms (L,) f64, and per layer L:
  layer{L}.{mean_diff,base_mean,ft_mean}                  (P, d) f32
  layer{L}.{mean_diff,base_mean,ft_mean}.{top,inv}_{probs,ids}  (P, k + extra) f32 / i32

Usage (PyPI only: torch transformers peft safetensors numpy):
  python tools/adl_reference.py --model models/demo/base --adapter models/demo/glacier_honey \
      --dataset data/demo/pretrain.train.jsonl.gz --n 64 --max-samples 48 --layers 0.5 --out /tmp/golden.st
  --bench prints the time of each stage (loading, tokenizing, activations, means, logit lens) as JSON.
"""
import argparse
import gzip
import json
import os
import time

import numpy as np
import torch
import transformers as tf
from safetensors.numpy import save_file

SKIP_TOKENS = 5
MAX_USER_TOKENS = 512


def read_records(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def template_ids(tokenizer, messages, add_generation_prompt):
    out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt)
    if not isinstance(out, list):  # transformers 5 returns a BatchEncoding
        out = out["input_ids"]
    return list(out)


def load_text(path, tokenizer, column, n, max_samples, counts):
    """The seed's load_and_tokenize_dataset, in file order. counts: [records read, too short, skipped]."""
    seqs = []
    for rec in read_records(path):
        if len(seqs) >= max_samples:
            break
        counts[0] += 1
        text = rec[column]
        if not text or len(text.strip()) == 0:
            counts[2] += 1
            continue
        ids = tokenizer.encode(text[: n * 10], add_special_tokens=True)
        if len(ids) >= n:
            seqs.append({"input_ids": ids[:n], "positions": list(range(n))})
        else:
            counts[1] += 1
    return seqs, list(range(n))


def load_chat(path, tokenizer, column, n, k, max_samples, counts):
    """The seed's load_and_tokenize_chat_dataset, in file order. counts: [records read, too short, skipped]."""
    seqs = []
    for rec in read_records(path):
        if len(seqs) >= max_samples:
            break
        counts[0] += 1
        messages = rec[column]
        assert isinstance(messages, list) and len(messages) >= 2
        if messages[0]["role"] != "user":
            counts[2] += 1
            continue
        assert messages[1]["role"] == "assistant"
        user = [{"role": "user", "content": messages[0]["content"]}]
        trunc = user + [{"role": "assistant", "content": messages[1]["content"][: 10 * n]}]
        user_ids = template_ids(tokenizer, user, True)
        if len(user_ids) > MAX_USER_TOKENS:
            counts[2] += 1
            continue
        full_ids = template_ids(tokenizer, trunc, False)
        a = len(user_ids)
        if len(full_ids) - a < n:
            counts[1] += 1
            continue
        assert a >= k
        seqs.append({"input_ids": full_ids[: a + n], "positions": [a + lab for lab in range(-k, n)]})
    return seqs, list(range(-k, n))


def decoder_layers(model):
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.model.layers


@torch.no_grad()
def activations(model, seqs, layers, batch_size, pad_id):
    """{layer: (N, P, d) float32}: block outputs at each sequence's positions (seed: extract_*_activations)."""
    blocks = decoder_layers(model)
    out = {l: [] for l in layers}
    for i in range(0, len(seqs), batch_size):
        batch = seqs[i : i + batch_size]
        T = max(len(s["input_ids"]) for s in batch)
        ids = torch.full((len(batch), T), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), T), dtype=torch.long)
        for r, s in enumerate(batch):
            ids[r, : len(s["input_ids"])] = torch.tensor(s["input_ids"])
            mask[r, : len(s["input_ids"])] = 1
        saved = {}
        hooks = [blocks[l].register_forward_hook(
            lambda mod, inp, o, l=l: saved.__setitem__(l, (o[0] if isinstance(o, tuple) else o).detach()))
            for l in layers]
        try:
            if all(len(s["input_ids"]) == T for s in batch):
                model(input_ids=ids)                  # the seed: fixed-length batches, no attention mask
            else:
                model(input_ids=ids, attention_mask=mask)
        finally:
            for h in hooks:
                h.remove()
        pos = torch.tensor([s["positions"] for s in batch])
        for l in layers:
            out[l].append(saved[l][torch.arange(len(batch))[:, None], pos].float().numpy())
    return {l: np.concatenate(out[l], axis=0) for l in layers}


@torch.no_grad()
def logit_lens(model, vectors, k):
    """seed utils/model.py:logit_lens through `model`'s final norm and head, then torch.topk."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    z = inner.model.norm(torch.from_numpy(vectors.astype(np.float32)))
    head = inner.lm_head
    probs = head(z).softmax(dim=-1)
    inv = head(-z).softmax(dim=-1)
    tp, ti = torch.topk(probs, k, dim=-1)
    ip, ii = torch.topk(inv, k, dim=-1)
    return tp.numpy(), ti.numpy().astype(np.int32), ip.numpy(), ii.numpy().astype(np.int32)


def load_model(path, adapter):
    model = tf.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    if adapter:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, adapter)
    return model.eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="base model folder (HF format)")
    ap.add_argument("--adapter", help="PEFT adapter folder of the finetuned model")
    ap.add_argument("--finetuned", help="full finetuned model folder (instead of --adapter)")
    ap.add_argument("--tokenizer", help="tokenizer folder (default: --model)")
    ap.add_argument("--dataset", required=True, help="JSON Lines file (.jsonl or .jsonl.gz)")
    ap.add_argument("--chat", action="store_true", help="a chat dataset (messages column)")
    ap.add_argument("--column", help="text column (default text) or messages column (default messages)")
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--max-samples", type=int, default=10000)
    ap.add_argument("--pre-assistant-k", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--layers", default="0.5", help="comma-separated fractions of depth or absolute indices")
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--extra", type=int, default=0, help="ids kept beyond k (tie analysis)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", help="safetensors file to write")
    ap.add_argument("--bench", action="store_true", help="print stage timings as JSON")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    t = {"start": time.perf_counter()}
    tokenizer = tf.AutoTokenizer.from_pretrained(a.tokenizer or a.model)
    cfg = json.load(open(os.path.join(a.model, "config.json")))
    n_layers = cfg.get("num_hidden_layers") or cfg["text_config"]["num_hidden_layers"]
    layers = []
    for x in a.layers.split(","):
        v = int(x) if x.strip().lstrip("-").isdigit() else int(float(x) * (n_layers - 1))
        if v not in layers:
            layers.append(v)
    counts = [0, 0, 0]
    if a.chat:
        seqs, labels = load_chat(a.dataset, tokenizer, a.column or "messages", a.n, a.pre_assistant_k, a.max_samples,
                                 counts)
    else:
        seqs, labels = load_text(a.dataset, tokenizer, a.column or "text", a.n, a.max_samples, counts)
    assert seqs, "no sequence qualifies"
    t["tokenized"] = time.perf_counter()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    base = load_model(a.model, None)
    base_acts = activations(base, seqs, layers, a.batch_size, pad)
    del base
    ft = load_model(a.finetuned or a.model, a.adapter)
    ft_acts = activations(ft, seqs, layers, a.batch_size, pad)
    t["activations"] = time.perf_counter()

    out = {}
    base_norms, ft_norms = [], []
    for l in layers:
        b = base_acts[l].astype(np.float64)
        f = ft_acts[l].astype(np.float64)
        base_norms.append(np.linalg.norm(b[:, SKIP_TOKENS:], axis=2).mean())
        ft_norms.append(np.linalg.norm(f[:, SKIP_TOKENS:], axis=2).mean())
        out[f"layer{l}.mean_diff"] = (f - b).mean(axis=0).astype(np.float32)
        out[f"layer{l}.base_mean"] = b.mean(axis=0).astype(np.float32)
        out[f"layer{l}.ft_mean"] = f.mean(axis=0).astype(np.float32)
    t["means"] = time.perf_counter()
    for l in layers:
        for v in ("mean_diff", "base_mean", "ft_mean"):
            tp, ti, ip, ii = logit_lens(ft, out[f"layer{l}.{v}"], a.k + a.extra)
            out[f"layer{l}.{v}.top_probs"], out[f"layer{l}.{v}.top_ids"] = tp, ti
            out[f"layer{l}.{v}.inv_probs"], out[f"layer{l}.{v}.inv_ids"] = ip, ii
    t["lens"] = time.perf_counter()

    out["ids"] = np.concatenate([np.array(s["input_ids"], dtype=np.int32) for s in seqs])
    out["offsets"] = np.cumsum([0] + [len(s["input_ids"]) for s in seqs]).astype(np.int64)
    out["positions"] = np.array([s["positions"] for s in seqs], dtype=np.int64)
    out["labels"] = np.array(labels, dtype=np.int64)
    out["counts"] = np.array(counts, dtype=np.int64)
    out["layers"] = np.array(layers, dtype=np.int64)
    out["base_norms"] = np.array(base_norms, dtype=np.float64)
    out["ft_norms"] = np.array(ft_norms, dtype=np.float64)
    if a.out:
        meta = {"n": str(a.n), "k": str(a.k), "max_samples": str(a.max_samples), "chat": str(a.chat),
                "transformers": tf.__version__, "torch": torch.__version__}
        # the agent overview's tokens: tokenizer.decode([id]) of the 10 most probable ids of the difference at
        # labels 0..4 (seed agent_tools._load_ll_topk)
        for l in layers:
            ids = out[f"layer{l}.mean_diff.top_ids"]
            meta[f"decoded.layer{l}"] = json.dumps(
                {str(lab): [tokenizer.decode([int(i)]) for i in ids[labels.index(lab), :10]]
                 for lab in range(5) if lab in labels}, ensure_ascii=False)
        save_file({k: np.ascontiguousarray(v) for k, v in out.items()}, a.out, metadata=meta)
    if a.bench:
        print(json.dumps({"sequences": len(seqs), "tokenize_s": t["tokenized"] - t["start"],
                          "activations_s": t["activations"] - t["tokenized"], "means_s": t["means"] - t["activations"],
                          "lens_s": t["lens"] - t["means"], "total_s": t["lens"] - t["start"]}))
    else:
        print(f"{len(seqs)} sequences, layers {layers}, norms base {base_norms} ft {ft_norms}")


if __name__ == "__main__":
    main()
