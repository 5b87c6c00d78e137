#!/usr/bin/env python3
"""bench_engine.py — CPU tokens/s of diffkit's forward pass vs transformers fp32, same model, sequences and
threads, in one run (a benchmark, not a test; results go to docs/perf.md, "Engine (CPU)").

It writes a random-weight bf16 Llama-shaped checkpoint (shape below) with transformers, a packed batch of
sequences, then times, best of --repeats after one warm-up:
  capture_mid   residual after the middle block. transformers: a forward hook on that block that raises to
                stop the pass (how activation-caching libraries stop early); diffkit: the hook plan's stop.
  full_logits   all blocks and the logits of every position (transformers: model(input_ids).logits, one
                sequence per call, no padding; diffkit: one packed batch).
transformers runs with dtype=float32 and attn_implementation="eager" (the reference the goldens use) and
also "sdpa" (its default), and torch.set_num_threads(--threads); diffkit with OPENBLAS_NUM_THREADS and
attention threads = --threads.

Usage: python tools/bench_engine.py --bench build/tests/bench_engine [--threads 2] [--repeats 3]
"""
import argparse
import json
import os
import subprocess
import tempfile
import time

import torch
import transformers as tf

SHAPE = dict(vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=8, num_attention_heads=16,
             num_key_value_heads=4, max_position_embeddings=4096, tie_word_embeddings=True)
SEQ_LENGTHS = [256, 200, 160, 128, 96, 64, 64, 48]


class Stop(Exception):
    pass


def time_best(fn, repeats):
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True, help="path of the bench_engine binary")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = args.dir or tempfile.mkdtemp(prefix="dk_bench_")
    model_dir = os.path.join(work, "model")
    cfg = tf.LlamaConfig(**SHAPE, architectures=["LlamaForCausalLM"])
    torch.manual_seed(0)
    if not os.path.exists(os.path.join(model_dir, "config.json")):
        tf.LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(model_dir)
    g = torch.Generator().manual_seed(1)
    seqs = [torch.randint(0, SHAPE["vocab_size"], (n,), generator=g).tolist() for n in SEQ_LENGTHS]
    tokens = os.path.join(work, "tokens.jsonl")
    with open(tokens, "w") as f:
        for s in seqs:
            f.write(json.dumps({"ids": s}) + "\n")
    n_tokens = sum(SEQ_LENGTHS)

    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads), DIFFKIT_THREADS=str(args.threads))
    out = subprocess.run([args.bench, model_dir, tokens, str(args.repeats)], env=env, check=True,
                         capture_output=True, text=True).stdout
    ours = json.loads(out)

    results = {"diffkit": {"capture_mid_s": ours["capture_mid_s"], "full_logits_s": ours["full_logits_s"]}}
    mid = SHAPE["num_hidden_layers"] // 2
    for attn in ("eager", "sdpa"):
        model = tf.LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation=attn).eval()
        inputs = [torch.tensor([s]) for s in seqs]

        def full():
            with torch.no_grad():
                for x in inputs:
                    model(input_ids=x).logits

        def capture():
            def stop(mod, inp, out):
                raise Stop()
            h = model.model.layers[mid].register_forward_hook(stop)
            try:
                with torch.no_grad():
                    for x in inputs:
                        try:
                            model(input_ids=x)
                        except Stop:
                            pass
            finally:
                h.remove()

        results[f"transformers_{attn}"] = {"capture_mid_s": time_best(capture, args.repeats),
                                           "full_logits_s": time_best(full, args.repeats)}
        del model

    print(f"model: Llama-shaped {SHAPE}, bf16 checkpoint, fp32 compute; {len(seqs)} sequences, {n_tokens} tokens; "
          f"threads {args.threads}; torch {torch.__version__}, transformers {tf.__version__}")
    print(f"{'':24s} {'capture layer %d' % mid:>22s} {'full logits':>22s}")
    for name, r in results.items():
        print(f"{name:24s} {n_tokens / r['capture_mid_s']:12.0f} tok/s {r['capture_mid_s']:6.3f}s "
              f"{n_tokens / r['full_logits_s']:12.0f} tok/s {r['full_logits_s']:6.3f}s")
    for attn in ("eager", "sdpa"):
        t = results[f"transformers_{attn}"]
        print(f"speed-up vs transformers {attn}: capture x{t['capture_mid_s'] / ours['capture_mid_s']:.2f}, "
              f"full logits x{t['full_logits_s'] / ours['full_logits_s']:.2f}")


if __name__ == "__main__":
    main()
