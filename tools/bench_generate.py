#!/usr/bin/env python3
"""bench_generate.py — CPU decoding tokens/s, steered generation and patchscope of diffkit vs transformers on a
1B-shaped bf16 model, same prompts and threads, in one run (a benchmark, not a test; results go to docs/perf.md,
"Generation (CPU)").

It writes (once, into --dir) a random-weight checkpoint with Llama-3.2-1B's shapes (vocab 128256, hidden 2048,
intermediate 8192, 16 layers, 32 heads, 8 KV heads, tied embeddings; bf16, 2.47 GB), random prompts of
--prompt-len tokens (batches of 1 and 8), and a random steering vector; then measures, in --rounds rounds that
alternate diffkit, transformers bf16 and transformers fp32 (each best of --repeats), the best of all rounds:
  read bandwidth   of this machine (bench_generate bandwidth: a summing loop over 1 GiB, 1 and --threads threads)
  decode           greedy generate of --new-tokens tokens minus generate of 1 token (= the prefill), per
                   generated token: diffkit dk_generate; transformers model.generate(do_sample=False), weights
                   in bf16 and in fp32. Also reported as GB/s of weight reads (every projection and the LM head
                   once per step, in bf16) against the measured bandwidth.
  steered          generate of --new-tokens tokens with vector × strength added to the residual after the middle
                   block at every position and step (transformers: a forward hook on that decoder layer)
  patchscope       one forward with the residual after the middle block replaced at each prompt's last token,
                   then the softmax of the last position (transformers: a forward hook that replaces it;
                   logits_to_keep=1)
  crossover        (--crossover) every projection of the model on M = 1..256 rows through diffkit's fused
                   small-M linear and through the tiled sgemm (bench_generate linear), to place the threshold
                   (dk_model.fused_max_m).
Threads: torch.set_num_threads(T); diffkit DIFFKIT_THREADS=T and OPENBLAS_NUM_THREADS=T. Greedy tokens and the
patchscope distribution are compared between diffkit and transformers fp32 (random weights have near-ties,
so a few late tokens may differ; the agreement is printed, not asserted).

Usage: python tools/bench_generate.py --bench build/tests/bench_generate [--threads 2] [--repeats 1] [--rounds 2]
       [--dir /tmp/dk_gen_bench] [--new-tokens 16] [--prompt-len 16] [--crossover] [--skip-fp32]
"""
import argparse
import json
import os
import subprocess
import time

import numpy as np
import torch
import transformers as tf

SHAPE = dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
             num_attention_heads=32, num_key_value_heads=8, head_dim=64, max_position_embeddings=131072,
             rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=True,
             rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                           "original_max_position_embeddings": 8192},
             bos_token_id=None, eos_token_id=None, pad_token_id=None)
BATCHES = (1, 8)
STRENGTH = 4.0


def weight_bytes_per_step():
    """bf16 bytes of every projection and the LM head: what one decode step reads."""
    H, I, L, V = SHAPE["hidden_size"], SHAPE["intermediate_size"], SHAPE["num_hidden_layers"], SHAPE["vocab_size"]
    q = SHAPE["num_attention_heads"] * SHAPE["head_dim"]
    kv = SHAPE["num_key_value_heads"] * SHAPE["head_dim"]
    return 2 * (L * (H * q + 2 * H * kv + q * H + 3 * H * I) + V * H)


def make_inputs(work, prompt_len):
    model_dir = os.path.join(work, "model")
    if not os.path.exists(os.path.join(model_dir, "config.json")):
        cfg = tf.LlamaConfig(**SHAPE, architectures=["LlamaForCausalLM"])
        torch.manual_seed(0)
        tf.LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(model_dir)
    g = torch.Generator().manual_seed(1)
    prompts = {}
    for b in BATCHES:
        ids = torch.randint(0, SHAPE["vocab_size"], (b, prompt_len), generator=g)
        path = os.path.join(work, f"prompts_{b}.jsonl")
        with open(path, "w") as f:
            for row in ids.tolist():
                f.write(json.dumps({"ids": row}) + "\n")
        prompts[b] = (ids, path)
    vector = torch.randn(SHAPE["hidden_size"], generator=g)
    vec_path = os.path.join(work, "vector.bin")
    vector.numpy().astype(np.float32).tofile(vec_path)
    return model_dir, prompts, vector, vec_path


def run_diffkit(args, *bench_args):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads), DIFFKIT_THREADS=str(args.threads))
    cmd = [args.bench] + [str(a) for a in bench_args]
    return json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout)


def time_best(fn, repeats):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def transformers_runner(args, model_dir, prompts, vector, layer, dtype):
    """loads the model once; the returned function measures everything once (best of args.repeats)"""
    model = tf.LlamaForCausalLM.from_pretrained(model_dir, dtype=dtype).eval()
    block = model.model.layers[layer]
    steer = (STRENGTH * vector).to(dtype)
    patch = vector.to(dtype)

    def add_vector(mod, inp, out):
        if isinstance(out, tuple):
            return (out[0] + steer,) + tuple(out[1:])
        return out + steer

    def replace_last(mod, inp, out):
        h = out[0] if isinstance(out, tuple) else out
        h = h.clone()
        h[:, -1, :] = patch
        return (h,) + tuple(out[1:]) if isinstance(out, tuple) else h

    def generate(ids, n):
        with torch.no_grad():
            return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                                  do_sample=False, pad_token_id=0)[:, ids.shape[1]:]

    def measure():
        results = {}
        for b in BATCHES:
            results[b] = measure_batch(prompts[b][0])
        return results

    def measure_batch(ids):
        t_gen, out = time_best(lambda: generate(ids, args.new_tokens), args.repeats)
        t_gen1, _ = time_best(lambda: generate(ids, 1), args.repeats)
        h = block.register_forward_hook(add_vector)
        try:
            t_steer, steered = time_best(lambda: generate(ids, args.new_tokens), args.repeats)
        finally:
            h.remove()

        def patchscope():
            hook = block.register_forward_hook(replace_last)
            try:
                with torch.no_grad():
                    return torch.softmax(model(input_ids=ids, logits_to_keep=1).logits[:, -1, :].float(), dim=-1)
            finally:
                hook.remove()
        t_patch, probs = time_best(patchscope, args.repeats)
        return dict(generate_s=t_gen, generate1_s=t_gen1, steered_s=t_steer, patchscope_s=t_patch,
                    ids=out.tolist(), steered_ids=steered.tolist(), probs=probs[0])

    generate(prompts[BATCHES[0]][0], 2)  # warm-up
    return measure


def keep_best(best, new):
    """per (batch, timing) the smaller time of two rounds; the outputs of the latest"""
    if best is None:
        return new
    for b, r in new.items():
        for k, v in r.items():
            if k.endswith("_s"):
                r[k] = min(v, best[b][k])
    return new


def agreement(a, b):
    """fraction of sequences whose greedy tokens are equal, and of tokens equal up to the first difference"""
    same_seq = sum(x == y for x, y in zip(a, b)) / len(a)
    prefix = 0
    for x, y in zip(a, b):
        n = 0
        while n < min(len(x), len(y)) and x[n] == y[n]:
            n += 1
        prefix += n
    return same_seq, prefix / sum(len(x) for x in a)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True, help="path of the bench_generate binary")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1, help="timed repeats per round (after a warm-up)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of diffkit, transformers bf16, fp32; best kept")
    ap.add_argument("--dir", default="/tmp/dk_gen_bench")
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--crossover", action="store_true", help="also time diffkit's fused vs tiled linear per batch")
    ap.add_argument("--skip-fp32", action="store_true", help="transformers in bf16 only")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tf.utils.logging.disable_progress_bar()
    tf.utils.logging.set_verbosity_error()
    os.makedirs(args.dir, exist_ok=True)
    model_dir, prompts, vector, vec_path = make_inputs(args.dir, args.prompt_len)
    layer = SHAPE["num_hidden_layers"] // 2
    steps = args.new_tokens - 1
    wbytes = weight_bytes_per_step()
    env = dict(os.environ)

    bw = {t: json.loads(subprocess.run([args.bench, "bandwidth", "1024", str(t)], env=env, check=True,
                                       capture_output=True, text=True).stdout)["gb_per_s"]
          for t in sorted({1, args.threads})}
    print(f"model: Llama-3.2-1B-shaped, random bf16 weights ({wbytes / 1e9:.2f} GB of projections + LM head read "
          f"per decode step); prompts of {args.prompt_len} tokens, {args.new_tokens} new tokens; threads "
          f"{args.threads}; best of {args.rounds} rounds x {args.repeats}; torch {torch.__version__}, transformers {tf.__version__}")
    print(f"started {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, load average "
          + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    print("read bandwidth: " + ", ".join(f"{t} thread(s) {v:.1f} GB/s" for t, v in bw.items()))

    runners = {"bf16": transformers_runner(args, model_dir, prompts, vector, layer, torch.bfloat16)}
    if not args.skip_fp32:
        runners["fp32"] = transformers_runner(args, model_dir, prompts, vector, layer, torch.float32)
    ours, theirs = None, {name: None for name in runners}
    for _ in range(args.rounds):  # the sides alternate, so that a change of the machine's load hits both
        ours = keep_best(ours, {b: run_diffkit(args, "run", model_dir, prompts[b][1], args.new_tokens, args.repeats,
                                               layer, vec_path, STRENGTH) for b in BATCHES})
        for name, measure in runners.items():
            theirs[name] = keep_best(theirs[name], measure())

    def decode_rate(r, b):
        return b * steps / (r["generate_s"] - r["generate1_s"])

    print(f"\n{'decode (tokens/s, all sequences)':40s} {'batch 1':>12s} {'batch 8':>12s}")
    print(f"{'diffkit':40s} " + " ".join(f"{decode_rate(ours[b], b):12.2f}" for b in BATCHES))
    for name, r in theirs.items():
        print(f"{'transformers ' + name:40s} " + " ".join(f"{decode_rate(r[b], b):12.2f}" for b in BATCHES))
    for b in BATCHES:
        step_s = (ours[b]["generate_s"] - ours[b]["generate1_s"]) / steps
        print(f"diffkit batch {b}: {step_s * 1e3:.1f} ms per step, weight reads {wbytes / step_s / 1e9:.1f} GB/s "
              f"= {wbytes / step_s / 1e9 / bw[args.threads]:.0%} of the measured {bw[args.threads]:.1f} GB/s")
        for name, r in theirs.items():
            print(f"  speed-up vs transformers {name}: x{decode_rate(ours[b], b) / decode_rate(r[b], b):.2f}")

    print(f"\n{'steered generate / patchscope (s)':40s} " + " ".join(f"{'steer b' + str(b):>12s}" for b in BATCHES)
          + " " + " ".join(f"{'patch b' + str(b):>12s}" for b in BATCHES))
    print(f"{'diffkit':40s} " + " ".join(f"{ours[b]['steered_s']:12.3f}" for b in BATCHES) + " "
          + " ".join(f"{ours[b]['patchscope_s']:12.3f}" for b in BATCHES))
    for name, r in theirs.items():
        print(f"{'transformers ' + name + ' + hooks':40s} " + " ".join(f"{r[b]['steered_s']:12.3f}" for b in BATCHES)
              + " " + " ".join(f"{r[b]['patchscope_s']:12.3f}" for b in BATCHES))
        print(f"{'  speed-up':40s} " + " ".join(f"{r[b]['steered_s'] / ours[b]['steered_s']:11.2f}x" for b in BATCHES)
              + " " + " ".join(f"{r[b]['patchscope_s'] / ours[b]['patchscope_s']:11.2f}x" for b in BATCHES))

    ref = theirs.get("fp32", theirs["bf16"])
    ref_name = "fp32" if "fp32" in theirs else "bf16"
    for b in BATCHES:
        seq, tok = agreement(ours[b]["ids"], ref[b]["ids"])
        sseq, stok = agreement(ours[b]["steered_ids"], ref[b]["steered_ids"])
        top = ref[b]["probs"]
        diff = max(abs(p - float(top[i])) for i, p in ours[b]["probs"])
        print(f"agreement with transformers {ref_name}, batch {b}: greedy {seq:.0%} of sequences equal "
              f"({tok:.0%} of tokens before the first difference), steered {sseq:.0%} ({stok:.0%}); patchscope "
              f"top-5 probabilities within {diff:.2g}")

    if args.crossover:
        print("\ncrossover: every projection of every layer on M rows (bench_generate linear), fused vs tiled sgemm")
        rows = run_diffkit(args, "linear", model_dir, max(2, args.repeats), 1, 8, 16, 32, 64, 128, 256)
        for r in rows:
            print(f"  M {r['M']:3d}: fused {r['fused_s'] * 1e3:8.1f} ms ({r['weight_gb'] / r['fused_s']:5.1f} GB/s, "
                  f"{r['gflop'] / r['fused_s']:6.1f} GFLOP/s), tiled {r['tiled_s'] * 1e3:8.1f} ms "
                  f"({r['gflop'] / r['tiled_s']:6.1f} GFLOP/s), tiled/fused {r['tiled_s'] / r['fused_s']:.2f}")

    print(f"\nended {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, load average "
          + ", ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
