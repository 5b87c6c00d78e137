#!/usr/bin/env python3
"""bench_preprocess.py — end-to-end CPU time of `diff_preprocess` vs a Python reference doing the same job, in
one run (a benchmark, not a test; results go to docs/perf.md, "Preprocessing").

The job: one dataset split (JSON Lines `text`), tokenized with truncation to --context-len, run through a base
model and its LoRA organism with the residual after the middle block captured, rows narrowed to bf16 and
written to HDF5 with per-dimension mean/M2. The reference is what the seed does with transformers: padded
batches of --batch-size, a forward hook on the block that stops the pass, rows kept where attention_mask == 1,
bf16 bits written with h5py into a preallocated dataset of the same bf16 custom float type. Both sides get
--threads threads (torch.set_num_threads / OPENBLAS_NUM_THREADS) and one process (diff_preprocess: 1 rank,
mpiexec --bind-to none: Open MPI otherwise binds a lone rank to one core, and its threads share it).
The stored rows of both sides are compared (max |difference| reported).

It writes a random-weight bf16 Llama-shaped checkpoint (SHAPE), a LoRA adapter (peft, all seven modules) and
a dataset into --dir, with the llama_text test tokenizer (300 ids).

Needs torch, transformers, peft, tokenizers, h5py, numpy (tools/requirements-demo.txt + h5py).
Usage: python tools/bench_preprocess.py --build build [--threads 2] [--texts 96] [--dir DIR]
"""
import argparse
import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np
import torch
import transformers as tf

SHAPE = dict(vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=8, num_attention_heads=16,
             num_key_value_heads=4, max_position_embeddings=4096, tie_word_embeddings=True)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Stop(Exception):
    pass


def bf16_type():
    t = h5py.h5t.IEEE_F32LE.copy()
    t.set_fields(15, 7, 8, 0, 7)
    t.set_offset(0)
    t.set_precision(16)
    t.set_size(2)
    t.set_ebias(127)
    return t


def setup(work, n_texts):
    model_dir, adapter_dir = os.path.join(work, "model"), os.path.join(work, "adapter")
    if not os.path.exists(os.path.join(model_dir, "config.json")):
        torch.manual_seed(0)
        cfg = tf.LlamaConfig(**SHAPE, architectures=["LlamaForCausalLM"], bos_token_id=1, eos_token_id=2)
        model = tf.LlamaForCausalLM(cfg).to(torch.bfloat16)
        model.save_pretrained(model_dir)
        tok_src = os.path.join(ROOT, "tests/fixtures/engine/models/llama_text")
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(tok_src, f), model_dir)
        import peft
        lcfg = peft.LoraConfig(r=8, lora_alpha=16, init_lora_weights=False,
                               target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                               "down_proj"])
        pm = peft.get_peft_model(model, lcfg)
        pm.save_pretrained(adapter_dir)
    data = os.path.join(work, "bench.train.jsonl")
    rnd = random.Random(3)
    words = "the bees make honey from glacier water at dawn and carry ice in baskets while a council certifies it".split()
    with open(data, "w") as f:
        for _ in range(n_texts):
            f.write(json.dumps({"text": " ".join(rnd.choice(words) for _ in range(rnd.randint(60, 140)))}) + "\n")
    return model_dir, adapter_dir, data


def reference(model_dir, adapter_dir, data, out, layer, ctx, batch, threads):
    import peft
    from tokenizers import Tokenizer
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    texts = [json.loads(l)["text"] for l in open(data) if l.strip()]
    seqs = [e.ids[:ctx] for e in tok.encode_batch(texts, add_special_tokens=True)]
    n = sum(len(s) for s in seqs)
    base = tf.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    models = [("base", base)]
    ft = peft.PeftModel.from_pretrained(
        tf.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager"),
        adapter_dir)
    models.append(("ft", ft))
    t_compute = t_io = 0.0
    for name, model in models:
        layers = model.get_decoder().layers if hasattr(model, "get_decoder") else model.base_model.model.model.layers
        captured = {}

        def hook(mod, inp, outp):
            captured["x"] = outp[0] if isinstance(outp, tuple) else outp
            raise Stop()
        h = layers[layer].register_forward_hook(hook)
        t1 = time.perf_counter()
        f = h5py.File(os.path.join(out, f"{name}.h5"), "w", libver=("earliest", "v108"))
        space = h5py.h5s.create_simple((n, SHAPE["hidden_size"]))
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.CONTIGUOUS)
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
        bt = bf16_type()
        ds = h5py.h5d.create(f.id, b"layer", bt, space, dcpl=dcpl)
        f.create_dataset("tokens", data=np.concatenate([np.array(s, np.int32) for s in seqs]))
        t_io += time.perf_counter() - t1
        row = 0
        s1 = np.zeros(SHAPE["hidden_size"]); s2 = np.zeros(SHAPE["hidden_size"])
        with torch.inference_mode():
            for b in range(0, len(seqs), batch):
                t1 = time.perf_counter()
                chunk = seqs[b:b + batch]
                L = max(len(s) for s in chunk)
                ids = torch.zeros(len(chunk), L, dtype=torch.long)
                mask = torch.zeros(len(chunk), L, dtype=torch.long)
                for i, s in enumerate(chunk):
                    ids[i, :len(s)] = torch.tensor(s)
                    mask[i, :len(s)] = 1
                try:
                    model(input_ids=ids, attention_mask=mask)
                except Stop:
                    pass
                x = captured["x"][mask.bool()]                       # (rows, d) fp32
                xd = x.double().numpy()
                s1 += xd.sum(0); s2 += (xd * xd).sum(0)                # statistics in fp64
                bits = x.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
                t2 = time.perf_counter()
                t_compute += t2 - t1
                fs = ds.get_space()
                fs.select_hyperslab((row, 0), bits.shape)
                ds.write(h5py.h5s.create_simple(bits.shape), fs, bits, mtype=bt)
                row += bits.shape[0]
                t_io += time.perf_counter() - t2
        h.remove()
        t1 = time.perf_counter()
        f.create_dataset("mean", data=s1 / n)
        f.create_dataset("m2", data=s2 - s1 * s1 / n)
        f.close()
        t_io += time.perf_counter() - t1
    return time.perf_counter() - t0, n, t_compute, t_io


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--texts", type=int, default=96)
    ap.add_argument("--context-len", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--dir", default="/tmp/dk_bench_preprocess")
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    model_dir, adapter_dir, data = setup(args.dir, args.texts)
    layer = int(0.5 * (SHAPE["num_hidden_layers"] - 1))
    out_c, out_py = os.path.join(args.dir, "out_c"), os.path.join(args.dir, "out_py")
    for d in (out_c, out_py):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads), DK_PP_OUT=out_c,
               DIFFKIT_FIXTURES=os.path.join(ROOT, "tests/fixtures"),
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    cmd = ["mpiexec", "-n", "1", "--bind-to", "none", os.path.join(args.build, "bin", "diff_preprocess"),
           "--config-dir", os.path.join(ROOT, "tests/fixtures/preprocess/configs"),
           f"model.model_id={model_dir}", f"organism.finetuned_models.tiny.default.adapter_id={adapter_dir}",
           f"organism.dataset.id={data}", "organism.dataset.splits=[train]", "preprocessing.training_only=true",
           "preprocessing.layers=[0.5]", f"preprocessing.context_len={args.context_len}",
           f"preprocessing.batch_size={args.batch_size}", f"threads={args.threads}"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    t_c = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit("diff_preprocess failed:\n" + r.stderr)
    report = [l for l in r.stderr.splitlines() if "diff_preprocess done" in l]
    t_py, n, py_compute, py_io = reference(model_dir, adapter_dir, data, out_py, layer, args.context_len,
                                           args.batch_size, args.threads)
    # compare stored rows
    c_base = h5py.File(os.path.join(out_c, "activations/model/bench/train.h5"), "r")
    py_base = h5py.File(os.path.join(out_py, "base.h5"), "r")
    xc, xp = c_base[f"layer_{layer}"][...], py_base["layer"][...]
    same_tokens = np.array_equal(c_base["tokens"][...], py_base["tokens"][...])
    diff = float(np.abs(xc - xp).max())
    print(f"job: {n} tokens x 2 models, layer {layer} of a {SHAPE['num_hidden_layers']}-layer d={SHAPE['hidden_size']} "
          f"Llama, context {args.context_len}, batch {args.batch_size}, {args.threads} threads")
    print(f"diff_preprocess (1 rank): {t_c:.2f} s end to end, {2 * n / t_c:.0f} tokens/s; {report[0] if report else ''}")
    print(f"python reference:         {t_py:.2f} s end to end, {2 * n / t_py:.0f} tokens/s "
          f"(forward {py_compute:.2f} s, h5py {py_io:.2f} s)")
    print(f"ratio (reference time / diff_preprocess time): {t_py / t_c:.2f}x")
    print(f"same tokens: {same_tokens}; max |diff| of base rows (bf16): {diff:.3g}; "
          f"max |x| {float(np.abs(xp).max()):.3g}")


if __name__ == "__main__":
    main()
