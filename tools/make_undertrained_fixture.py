#!/usr/bin/env python3
"""make_undertrained_fixture.py — the test fixture of the under-trained token indicator (host/model/undertrained.h):
the first demo base model (commit 88ec501, kept in git history), whose tokenizer was trained on documents the
base never read, and the ids it never trained.

Why this exists: the indicator must flag exactly the rows a model never trained, and the first demo base is a
real case with a known answer (issue 11: its logit lens was dominated by such rows). This script writes
tests/fixtures/undertrained/demo_v1/:
  - tokenizer.json.gz             the first demo tokenizer (as shipped, gzip-compressed);
  - unembed.safetensors           its tied embedding / unembedding, model.embed_tokens.weight [4096, 256] bf16,
                                  byte for byte as shipped (the only tensor the indicator reads);
  - expected.json                 the ground truth, computed from that commit's training data: the ids that never
                                  occur in the base's packed training stream (pretrain.train + chat.train rendered
                                  with the Qwen3 template, each document ended by <|endoftext|>, shuffled with
                                  Random(1235) and cut to whole 256-token sequences, as tools/make_demo_models.py
                                  packed them then); and this script's own numpy implementation of the indicator
                                  (reference ids, distances, spread, median, threshold, flagged ids), written from
                                  the formulas in undertrained.h, for the C test to match.
                                  (276 ids. Issue 11 counted 282: the ids absent from the raw pretrain texts and chat
                                  message contents; the 6 more, <|endoftext|>, <|im_start|>, <|im_end|>, <think>,
                                  </think> and "assistant", enter the stream through document ends and the chat
                                  template, so the base did train them.)
Run from the repository root (needs git history with commit 88ec501 and the venv of tools/requirements-demo.txt):
    /work/venv/bin/python tools/make_undertrained_fixture.py
"""
import gzip
import io
import json
import os
import random
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from demo_models.corpus import render_chat  # noqa: E402  (the chat rendering is unchanged since 88ec501)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMIT = "88ec501"
OUT = os.path.join(ROOT, "tests/fixtures/undertrained/demo_v1")
CLUSTER_RATIO, THRESHOLD_FACTOR = 0.25, 2.0  # undertrained.h


def git_show(path):
    return subprocess.run(["git", "-C", ROOT, "show", f"{COMMIT}:{path}"], check=True, capture_output=True).stdout


def byte_level_map():
    """GPT-2's bytes_to_unicode, inverted: the character of a byte-level token -> the byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def can_occur(b):
    """Whether the bytes b occur in some valid UTF-8 text (Python's strict decoder, with one character mended at
    each end)."""
    leads = [b""] + ([bytes([x]) for x in range(0xC2, 0xF5)] if b and 0x80 <= b[0] <= 0xBF else [])
    tails = [b""] + [bytes([c]) + b"\x80" * k for c in (0x80, 0x90, 0xA0) for k in range(3)]
    for p in leads:
        for q in tails:
            try:
                (p + b + q).decode("utf-8")
                return True
            except UnicodeDecodeError:
                pass
    return False


def main():
    import torch
    from safetensors.torch import load
    from tokenizers import Tokenizer

    os.makedirs(OUT, exist_ok=True)
    tok_json = git_show("models/demo/base/tokenizer.json")
    with open(f"{OUT}/tokenizer.json.gz", "wb") as f:
        f.write(gzip.compress(tok_json, compresslevel=9, mtime=0))
    tok = Tokenizer.from_str(tok_json.decode("utf-8"))
    weights = load(git_show("models/demo/base/model.safetensors"))
    embed = weights["model.embed_tokens.weight"]  # bf16 [V, H]
    # safetensors.numpy has no bf16: write the header by hand around the shipped bytes.
    raw = embed.contiguous().view(torch.int16).numpy().tobytes()
    header = json.dumps({"model.embed_tokens.weight": {"dtype": "BF16", "shape": list(embed.shape),
                                                       "data_offsets": [0, len(raw)]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(f"{OUT}/unembed.safetensors", "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header + raw)
    E = embed.float().numpy().astype(np.float64)
    V = E.shape[0]

    # Ground truth: ids absent from the packed training stream of that commit.
    def jsonl(path):
        return [json.loads(line) for line in gzip.open(io.BytesIO(git_show(path)), "rt", encoding="utf-8")]
    pre = [r["text"] for r in jsonl("data/demo/pretrain.train.jsonl.gz")]
    chat = [render_chat(r["messages"]) for r in jsonl("data/demo/chat.train.jsonl.gz")]
    eot = tok.token_to_id("<|endoftext|>")
    seqs = [e.ids + [eot] for e in tok.encode_batch(pre)] + [e.ids + [eot] for e in tok.encode_batch(chat)]
    random.Random(1235).shuffle(seqs)
    flat = [i for s in seqs for i in s]
    flat = flat[:len(flat) // 256 * 256]
    never = sorted(set(range(V)) - set(flat))

    # The indicator, from the formulas of undertrained.h.
    bmap = byte_level_map()
    added = {t.content for t in tok.get_added_tokens_decoder().values()}
    ref = [i for i in range(V) if tok.id_to_token(i) not in added
           and not can_occur(bytes(bmap[c] for c in tok.id_to_token(i)))]
    r = E[ref].mean(0)
    d = np.linalg.norm(E - r, axis=1)
    spread = max(np.linalg.norm(E[j] - (r * len(ref) - E[j]) / (len(ref) - 1)) for j in ref)
    median = float(np.median(np.delete(d, ref)))
    assert spread <= CLUSTER_RATIO * median, (spread, median)
    threshold = max(THRESHOLD_FACTOR * spread, 1e-6 * median)
    flagged = sorted(set(np.nonzero(d <= threshold)[0].tolist()) | set(ref))
    expected = {
        "source": f"git show {COMMIT}:models/demo/base (the first demo base) and {COMMIT}:data/demo",
        "never_trained_ids": never,
        "never_trained_rule": "ids absent from the base's packed training stream (pretrain.train + rendered "
                              "chat.train, <|endoftext|> after each, Random(1235) shuffle, whole 256-token rows)",
        "reference_ids": ref, "spread": spread, "median_distance": median, "threshold": threshold,
        "flagged_ids": flagged, "distance": [round(float(x), 6) for x in d],
    }
    with open(f"{OUT}/expected.json", "w") as f:
        json.dump(expected, f)
        f.write("\n")
    print(f"{len(never)} never-trained ids, {len(flagged)} flagged by the reference indicator "
          f"(equal: {never == flagged}); reference {ref}; spread {spread:.4f}, median {median:.4f}, "
          f"threshold {threshold:.4f}")


if __name__ == "__main__":
    main()
