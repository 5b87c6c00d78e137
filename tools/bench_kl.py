#!/usr/bin/env python3
"""bench_kl.py — diff_kl against the seed's KL computation in Python, side by side on the same machine, threads and
token sequences (the benchmark of issue #12; results go to docs/perf.md by hand, with the command).

The Python side is the seed's algorithm (src/diffing/methods/kl/method.py): batches of method_params.batch_size
sequences right-padded, both models' logits (transformers fp32, eager attention; the organism through peft),
log_softmax, Σ p_ft (log p_ft − log p_base), masked means. It reads the sequences diff_kl ran from diff_kl's
results file, so both compute the same thing. Both sides' wall time includes loading the models; peak memory is
the maximum resident set (/usr/bin/time -v for diff_kl, resource.getrusage for Python, each in its own process).

Setups:
  demo   the bundled demo pair (models/demo) on the demo datasets
  0.5b   a random-weight Qwen2.5-0.5B-shaped model (24 layers, hidden 896, vocab 151,936, bf16 checkpoint) and a
         random LoRA (r 16, all projections), written by this script, with the Qwen3 tokenizer (tests/fixtures)
         on the demo pretraining texts

Usage:  python tools/bench_kl.py --build build --work /tmp/bench_kl [--setup demo|0.5b|both] [--threads 2]
        [--max-samples 64]
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np

from random_models import save_random_pair, write_configs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sh(cmd, env=None, log=None):
    t0 = time.time()
    with open(log, "w") if log else open(os.devnull, "w") as out:
        p = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {p.returncode}); see {log}")
    return time.time() - t0


def timed_rss(cmd, env, log):
    """wall seconds and peak RSS (MiB) of a command, through GNU time."""
    t0 = time.time()
    with open(log, "w") as out:
        p = subprocess.run(["/usr/bin/time", "-v"] + cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    wall = time.time() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {p.returncode}); see {log}")
    rss = 0
    for line in open(log):
        if "Maximum resident set size" in line:
            rss = int(line.split()[-1]) / 1024
    return wall, rss


def make_05b(work):
    """A random-weight Qwen2.5-0.5B-shaped checkpoint and LoRA adapter (once)."""
    model_dir, adapter_dir = os.path.join(work, "qwen05b"), os.path.join(work, "qwen05b_lora")
    if os.path.exists(os.path.join(adapter_dir, "adapter_model.safetensors")):
        return model_dir, adapter_dir
    import torch
    import transformers as tf
    torch.manual_seed(0)
    cfg = tf.Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                         rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, torch_dtype="bfloat16")
    save_random_pair(tf.Qwen2ForCausalLM(cfg).to(torch.bfloat16), model_dir, adapter_dir)
    return model_dir, adapter_dir


def python_reference(results, model_dir, adapter_dir, batch_size, threads, out_json):
    """The seed's KL loop; writes per-dataset mean KL and its own time/RSS to out_json."""
    code = f"""
import json, resource, time, numpy as np, torch, h5py, transformers as tf, peft
from torch.nn.utils.rnn import pad_sequence
t0 = time.time()
torch.set_num_threads({threads})
base = tf.AutoModelForCausalLM.from_pretrained({model_dir!r}, dtype=torch.float32, attn_implementation="eager").eval()
ft = peft.PeftModel.from_pretrained(tf.AutoModelForCausalLM.from_pretrained({model_dir!r}, dtype=torch.float32,
                                    attn_implementation="eager"), {adapter_dir!r}).eval()
out = {{}}
with h5py.File({results!r}) as f:
    for name in [k for k in f if isinstance(f[k], h5py.Group) and "per_token_kl" in f[k]]:
        tok, off = f[name]["tokens"][:].astype(np.int64), f[name]["sequence_offsets"][:]
        seqs = [torch.tensor(tok[off[i]:off[i + 1]]) for i in range(len(off) - 1)]
        vals = []
        for i in range(0, len(seqs), {batch_size}):
            b = seqs[i:i + {batch_size}]
            ids = pad_sequence(b, batch_first=True, padding_value=0)
            mask = torch.zeros_like(ids)
            for j, s in enumerate(b): mask[j, :len(s)] = 1
            with torch.no_grad():
                lb = torch.log_softmax(base(input_ids=ids, attention_mask=mask).logits, -1)
                lf = torch.log_softmax(ft(input_ids=ids, attention_mask=mask).logits, -1)
                kl = torch.sum(torch.exp(lf) * (lf - lb), -1)
            vals.append(kl[mask.bool()].numpy())
        out[name] = float(np.concatenate(vals).mean())
out["wall_s"] = time.time() - t0
out["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
json.dump(out, open({out_json!r}, "w"))
"""
    p = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
    if p.returncode != 0:
        raise SystemExit("the Python reference failed")
    return json.load(open(out_json))


def run_setup(name, args, env):
    work = os.path.join(args.work, name)
    os.makedirs(work, exist_ok=True)
    if name == "demo":
        cfg, model_dir, adapter_dir = os.path.join(ROOT, "configs"), os.path.join(ROOT, "models/demo/base"), \
            os.path.join(ROOT, "models/demo/glacier_honey")
        sel = ["model=demo", "organism=demo_glacier_honey"]
    else:
        model_dir, adapter_dir = make_05b(args.work)
        cfg = write_configs(work, "bench05b", "bench05b_org", model_dir, adapter_dir)
        sel = ["model=bench05b", "organism=bench05b_org"]
    common = sel + [f"infrastructure.storage.base_dir={work}", f"threads={args.threads}", "device=cpu",
                    f"preprocessing.max_samples_per_dataset={args.max_samples}", "preprocessing.context_len=256",
                    "preprocessing.training_only=false"]
    bin_ = os.path.join(args.build, "bin")
    env = dict(env, DIFFKIT_ROOT=ROOT)
    sh([os.path.join(bin_, "diff_preprocess"), "--config-dir", cfg] + common, env, os.path.join(work, "pp.log"))
    res_dir = os.path.join(work, "diffing_results")
    shutil.rmtree(res_dir, ignore_errors=True)
    wall, rss = timed_rss([os.path.join(bin_, "diff_kl"), "--config-dir", cfg] + common +
                          [f"diffing.method.method_params.max_samples={args.max_samples}"], env,
                          os.path.join(work, "kl.log"))
    results = [os.path.join(dp, f) for dp, _, fs in os.walk(res_dir) for f in fs if f == "results.h5"][0]
    with h5py.File(results) as f:
        ours = {k: float(f[k]["per_token_kl"][:].mean()) for k in f if isinstance(f[k], h5py.Group) and
                "per_token_kl" in f[k]}
        tokens = sum(int(f[k]["per_token_kl"].shape[0]) for k in ours)
    ref = python_reference(results, model_dir, adapter_dir, 4, args.threads, os.path.join(work, "ref.json"))
    agree = max(abs(ours[k] - ref[k]) / max(abs(ref[k]), 1e-9) for k in ours)
    return {"setup": name, "tokens": tokens, "diffkit_s": wall, "diffkit_rss_mib": rss, "python_s": ref["wall_s"],
            "python_rss_mib": ref["rss_mib"], "speedup": ref["wall_s"] / wall, "mean_kl_rel_diff": agree}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--work", default="/tmp/bench_kl")
    ap.add_argument("--setup", default="both", choices=["demo", "0.5b", "both"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-samples", type=int, default=64)
    args = ap.parse_args()
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    rows = [run_setup(s, args, env) for s in (["demo", "0.5b"] if args.setup == "both" else [args.setup])]
    print("| setup | tokens | diffkit s | Python s | speed-up | diffkit peak MiB | Python peak MiB | mean KL rel. diff |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['setup']} | {r['tokens']} | {r['diffkit_s']:.1f} | {r['python_s']:.1f} | {r['speedup']:.2f}x | "
              f"{r['diffkit_rss_mib']:.0f} | {r['python_rss_mib']:.0f} | {r['mean_kl_rel_diff']:.1e} |")


if __name__ == "__main__":
    main()
