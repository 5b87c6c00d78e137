#!/usr/bin/env python3
"""make_dict_ce_goldens.py — the golden cross-entropies of the dictionary jobs' "CE loss recovered" metric
(host/methods/dict_ce.c), computed with transformers (fp32, eager attention) and peft, for the test
tests/methods/dict_ce.sh (tests never need Python; this script writes the small fixture they read).

    /work/venv/bin/python tools/make_dict_ce_goldens.py [--build build] [--out tests/fixtures/methods/dict]

What it does:
  1. makes the test's activation stores with the build's diff_preprocess (the tiny test pair: model tiny = the
     random Llama of tests/fixtures/engine/models/llama_text, organism tiny_org = its LoRA adapter; the
     configuration tree of tests/methods/methods_lib.sh; CPU stores are bit-reproducible), and runs the build's
     diff_sae and diff_crosscoder on them with the overrides of ce_sae.args and ce_crosscoder.args (1 rank), as
     the test does;
  2. for each layer L of the stores, takes the sequences dict_ce.c takes: the validation split of the datasets
     chat, pretrain, org (dict_data.c's order: dataset.chat, dataset.pretraining, organism.dataset), the first
     N = evaluation.ce_num_sequences of each, leaving out those with fewer than 2 tokens or at most
     skip = model.ignore_first_n_tokens_per_sample_during_training tokens;
  3. computes with the finetuned model (transformers + peft, fp32):
       ce_clean            no patch;
       ce_base_activation  the output of decoder layer L (the residual after block L: transformers'
                           hidden_states[L+1], and for the last block the raw residual before the final norm, as
                           forward.h's patch and diff_preprocess's capture define it) replaced at every position
                           >= skip by the base model's activation as the store holds it (bf16, read from the base
                           store: the same bits diffkit patches in);
       ce_spliced          the same with the finetuned activation as the dictionary the job wrote in step 1
                           reconstructs it (results.h5 layer_L/<run>/dictionary/* and normalizer/*; threshold
                           inference as dict_model.c's dk_dict_encode_threshold; numpy float64 from the float32
                           weights; normalise (x - mean) * scale, de-normalise x_hat / (scale + 1e-8) + mean, per
                           layer half for the crosscoder, as dict_norm.c):
                           SAE on x = bf16(ft - base): pre = (x_n - b_dec) W_enc^T + b_enc, keep relu(pre) >
                             threshold, x_hat = f W_dec^T + b_dec; the patch is h_base + x_hat;
                           crosscoder on x = [base, ft]: pre = x_n W_enc + b_enc, keep relu(pre) with relu(pre) ·
                             w_j > threshold (w_j = Σ_l ||W_dec[l, j]||), x_hat = Σ_j f_j W_dec[:, j] + b_dec; the
                             patch is the ft half of x_hat;
     CE = Σ over the sequences of Σ_{t < T-1} -log softmax(logits_t)[id_{t+1}] (float64), divided by the number of
     predicted positions.

Writes --out/ce_golden.json: {JOB: {"job_args": [...], "layers": {"L": {"run_name", "ce_clean", "ce_spliced",
"ce_base_activation", "ce_tokens", "dictionary_digest": {dataset: [Σ v, Σ |v|]}}}}} for JOB diff_sae and
diff_crosscoder. The spliced golden is valid only for the dictionary that exact run trained (the digest lets the
test tell "training changed" from "dict_ce is wrong"); rerun this script when the training, the jobs' settings or
the stores change.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import peft
import torch
import transformers as tf

DATASETS = ["chat", "pretrain", "org"]  # dataset.chat, dataset.pretraining, organism.dataset
# job: (arguments file, results folder, the dictionary's datasets)
JOBS = {
    "diff_sae": ("ce_sae.args", "sae_difference", ["dictionary/encoder.weight", "dictionary/encoder.bias",
                                                   "dictionary/decoder.weight", "dictionary/b_dec"]),
    "diff_crosscoder": ("ce_crosscoder.args", "crosscoder", ["dictionary/encoder.weight", "dictionary/encoder.bias",
                                                             "dictionary/decoder.weight", "dictionary/decoder.bias"]),
}
NORMALIZER = ["normalizer/mean", "normalizer/scale"]


def arg_value(args, key):
    for a in args:
        if a.startswith(key + "="):
            return a.split("=", 1)[1]
    sys.exit(f"{key} is missing from the job arguments")


def run(cmd, env, log):
    with open(log, "w") as f:
        r = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        sys.stdout.write(open(log).read())
        sys.exit(f"{' '.join(cmd[:4])} failed (exit {r.returncode})")


def config_tree(root, work):
    """tests/methods/methods_lib.sh + dict_lib.sh's configuration tree."""
    conf = os.path.join(work, "configs")
    shutil.copytree(os.path.join(root, "tests/fixtures/preprocess/configs"), conf)
    shutil.copytree(os.path.join(root, "configs/diffing"), os.path.join(conf, "diffing"))
    with open(os.path.join(conf, "config.yaml"), "a") as f:
        f.write("\ndiffing:\n  results_base_dir: ${infrastructure.storage.base_dir}/diffing_results\n"
                "  results_dir: ${diffing.results_base_dir}/${model.name}/${organism.name}\n")
    with open(os.path.join(conf, "infrastructure/test.yaml"), "a") as f:
        f.write("  checkpoint_dir: ${infrastructure.storage.base_dir}/checkpoints\n")
    return conf


def bf16(x):
    """float32 values rounded to bf16 (nearest, ties to even) and widened back, as dk_f32_to_bf16."""
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(torch.bfloat16).to(torch.float32).numpy()


def seq_ce(logits, ids):
    """Σ_{t < T-1} -log softmax(logits[t])[ids[t+1]] in float64 (logits (T, V) float32)."""
    z = logits[:-1].astype(np.float64)
    mx = z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z - mx).sum(axis=1)) + mx[:, 0]
    return float(np.sum(lse - z[np.arange(len(ids) - 1), ids[1:]]))


def reconstruct(x, g, crosscoder):
    """The dictionary's threshold-inference reconstruction of the rows x (T, W), de-normalised (float64)."""
    f64 = lambda k: g[k][:].astype(np.float64)
    thr = float(g["dictionary"].attrs["threshold"])
    mean, scale = f64("normalizer/mean"), f64("normalizer/scale")  # (W), (layers)
    d = x.shape[1] // len(scale)
    per_col = np.repeat(scale, d)                                   # (W): each layer half's scale
    enabled = float(g["normalizer"].attrs["target_rms"]) != 0     # disabled: dict_norm.c leaves the rows alone
    xn = (x.astype(np.float64) - mean) * per_col if enabled else x.astype(np.float64)
    if crosscoder:
        W_enc, W_dec = f64("dictionary/encoder.weight"), f64("dictionary/decoder.weight")  # (L, d, F), (L, F, d)
        b_enc, b_dec = f64("dictionary/encoder.bias"), f64("dictionary/decoder.bias")      # (F), (L, d)
        L, F = W_enc.shape[0], W_enc.shape[2]
        pre = xn @ W_enc.reshape(L * d, F) + b_enc
        a = np.maximum(pre, 0.0)
        w = np.linalg.norm(W_dec, axis=2).sum(axis=0)                # (F)
        f = np.where((a > 0) & (a * w > thr), a, 0.0)
        xh = f @ W_dec.transpose(1, 0, 2).reshape(F, L * d) + b_dec.reshape(-1)
    else:
        W_enc, W_dec = f64("dictionary/encoder.weight"), f64("dictionary/decoder.weight")  # (F, d), (d, F)
        b_enc, b_dec = f64("dictionary/encoder.bias"), f64("dictionary/b_dec")              # (F), (d)
        pre = (xn - b_dec) @ W_enc.T + b_enc
        f = np.where(pre > max(thr, 0.0), pre, 0.0)
        xh = f @ W_dec.T + b_dec
    return xh / (per_col + 1e-8) + mean if enabled else xh


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--out", default="tests/fixtures/methods/dict")
    ap.add_argument("--work", default=None, help="keep the stores and results here (default: a temporary folder)")
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    job_args = {job: [l.strip() for l in open(os.path.join(a.out, spec[0])) if l.strip()] for job, spec in JOBS.items()}
    work = a.work or tempfile.mkdtemp(prefix="dk_dict_ce_")
    for old in ("configs", "out", "res", "ck"):  # a kept --work folder from an earlier run: start afresh
        shutil.rmtree(os.path.join(work, old), ignore_errors=True)
    os.makedirs(work, exist_ok=True)
    conf = config_tree(root, work)
    out = os.path.join(work, "out")
    env = dict(os.environ, DIFFKIT_FIXTURES=os.path.join(root, "tests/fixtures"), DK_PP_OUT=out,
               OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    bindir = os.path.join(os.path.abspath(a.build), "bin")
    run(["mpiexec", "-n", "1", os.path.join(bindir, "diff_preprocess"), "--config-dir", conf], env,
        os.path.join(work, "stores.log"))
    res_dir = os.path.join(work, "res")
    for job in JOBS:
        run(["mpiexec", "-n", "1", os.path.join(bindir, job), "--config-dir", conf] + job_args[job] +
            [f"diffing.results_base_dir={res_dir}", f"infrastructure.storage.checkpoint_dir={work}/ck"], env,
            os.path.join(work, f"{job}.log"))

    torch.manual_seed(0)
    model_dir = os.path.join(root, "tests/fixtures/engine/models/llama_text")
    ft_base = tf.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    ft = peft.PeftModel.from_pretrained(ft_base, os.path.join(root, "tests/fixtures/engine/adapters/llama_lora")).eval()
    blocks = ft.get_base_model().model.layers
    stores = os.path.join(out, "activations")
    with h5py.File(os.path.join(stores, "llama_text", DATASETS[0], "validation.h5"), "r") as probe:
        layer_ids = sorted(int(k[6:]) for k in probe.keys() if k.startswith("layer_"))

    def forward(ids, layer=None, repl=None, base_model=False, skip=0):
        """logits (T, V) of the finetuned model (base_model: with the adapter off) and decoder layer `layer`'s
        output (T, d); repl (T, d): that output replaced at positions >= skip."""
        seen = {}

        def hook(_mod, _inp, output):
            h = output[0] if isinstance(output, tuple) else output
            seen["h"] = h[0].detach().clone().numpy()
            if repl is None:
                return None
            h = h.clone()
            h[0, skip:] = torch.from_numpy(repl[skip:].astype(np.float32))
            return (h,) + tuple(output[1:]) if isinstance(output, tuple) else h
        handle = blocks[layer if layer is not None else 0].register_forward_hook(hook)
        with torch.no_grad():
            if base_model:
                with ft.disable_adapter():
                    z = ft(input_ids=torch.from_numpy(ids)[None]).logits[0].float().numpy()
            else:
                z = ft(input_ids=torch.from_numpy(ids)[None]).logits[0].float().numpy()
        handle.remove()
        return z, seen["h"]

    def check_capture(stored, ids, L, base_model):
        """The store's layer_L rows are decoder layer L's output (what the hook replaces), up to bf16 rounding."""
        _, h = forward(ids, L, base_model=base_model)
        err = np.abs(stored - h).max() / max(np.abs(h).max(), 1e-30)
        if err > 2 ** -8:
            sys.exit(f"layer {L}: the store's activations differ from decoder layer {L}'s output by {err:.3g} "
                     "(relative to the largest value): the hook point is not the store's capture point")
        return err

    golden = {"about": "tools/make_dict_ce_goldens.py: transformers fp32 eager + peft on the tiny test pair"}
    for job, (_, method_dir, dict_keys) in JOBS.items():
        skip = int(arg_value(job_args[job], "model.ignore_first_n_tokens_per_sample_during_training"))
        n_seqs = int(arg_value(job_args[job], "diffing.method.evaluation.ce_num_sequences"))
        crosscoder = job == "diff_crosscoder"
        results = os.path.join(res_dir, "tiny/tiny_org", method_dir, "results.h5")
        layers = {}
        with h5py.File(results, "r") as rf:
            for L in layer_ids:
                runs = list(rf[f"layer_{L}"].keys())
                assert len(runs) == 1, runs
                g = rf[f"layer_{L}/{runs[0]}"]
                sums, count, worst = [0.0, 0.0, 0.0], 0, 0.0
                for ds in DATASETS:
                    with h5py.File(os.path.join(stores, "llama_text", ds, "validation.h5"), "r") as fb, \
                         h5py.File(os.path.join(stores, "llama_lora", ds, "validation.h5"), "r") as ff:
                        tokens, offs = fb["tokens"][:].astype(np.int64), fb["seq_offsets"][:]
                        assert np.array_equal(tokens, ff["tokens"][:]) and np.array_equal(offs, ff["seq_offsets"][:])
                        hb, hf = fb[f"layer_{L}"], ff[f"layer_{L}"]
                        for q in range(min(n_seqs, len(offs) - 1)):
                            r0, r1 = int(offs[q]), int(offs[q + 1])
                            T = r1 - r0
                            if T < 2 or T <= skip:
                                continue
                            ids = tokens[r0:r1]
                            base = hb[r0:r1].astype(np.float32)  # bf16 in the store
                            ftv = hf[r0:r1].astype(np.float32)
                            worst = max(worst, check_capture(base, ids, L, True), check_capture(ftv, ids, L, False))
                            if crosscoder:  # the stacked row [base, ft]; the patch is x_hat's ft half
                                spliced = reconstruct(np.concatenate([base, ftv], axis=1), g, True)[:, base.shape[1]:]
                            else:  # the SAE's row: bf16(ft - base) (dict_data.c); the patch is h_base + x_hat
                                spliced = base.astype(np.float64) + reconstruct(bf16(ftv - base), g, False)
                            sums[0] += seq_ce(forward(ids)[0], ids)
                            sums[1] += seq_ce(forward(ids, L, spliced.astype(np.float32), skip=skip)[0], ids)
                            sums[2] += seq_ce(forward(ids, L, base, skip=skip)[0], ids)
                            count += T - 1
                digest = {k: [float(np.sum(g[k][:].astype(np.float64))),
                              float(np.sum(np.abs(g[k][:].astype(np.float64))))] for k in dict_keys + NORMALIZER}
                layers[str(L)] = {"run_name": runs[0], "ce_clean": sums[0] / count, "ce_spliced": sums[1] / count,
                                  "ce_base_activation": sums[2] / count, "ce_tokens": count, "dictionary_digest": digest}
                print(f"{job} layer {L}: clean {sums[0] / count:.9g}, spliced {sums[1] / count:.9g}, "
                      f"base activation {sums[2] / count:.9g}; {count} tokens ({runs[0]}); the stores' rows match "
                      f"decoder layer {L}'s outputs within {worst:.2g} relative (bf16)")
        golden[job] = {"method_dir": method_dir, "job_args": job_args[job], "layers": layers}
    with open(os.path.join(a.out, "ce_golden.json"), "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    if not a.work:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
