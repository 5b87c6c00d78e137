#!/usr/bin/env python3
"""bench_gpu.py — GPU tokens/s and MFU of diffkit's CUDA forward vs transformers, same weights and tokens, one run.

Called by tools/gpu_check.sh (`make gpu-check`) after the GPU tests. For each real model shape below it
  1. writes a random-weight bf16 checkpoint with transformers (save_pretrained: config.json + safetensors)
     into --work (NOT under $OUT: the files are GBs), and a packed batch of --seqs × --seq-len random ids;
  2. times diffkit (build-gpu/tests/bench_forward_cuda): capture of the residual after the middle block (the
     forward stops there; the capture lands in pinned host memory) and the full forward (all blocks, logits of
     the last position of each sequence), median of --reps after warm-up;
  3. times transformers on the same checkpoint and tokens (dtype bfloat16, attn_implementation="sdpa",
     CUDA): capture through a forward hook on the middle block that copies the output to the host and raises
     to stop the pass, and the full forward with logits_to_keep=1; median of --reps after warm-up;
  4. compares diffkit's middle-layer capture of the first sequence with transformers' hook output (both bf16
     computations, so this is a sanity check at real shapes, not a parity test: err = ‖a − b‖ / ‖b‖);
  5. repeats step 2 with the tensor-core attention variant (DIFFKIT_CUDA_ATTN=mma) when time allows;
  6. computes MFU = model FLOPs / time / peak, where the peak is a bf16 8192³ cuBLASLt GEMM measured in the
     same run (bench_forward_cuda --gemm-peak), and model FLOPs count every matmul: 2·params·tokens for the
     projections (and the LM head rows computed), plus 4·heads·head_dim·(visible query-key pairs) for attention.
A hard deadline (--budget seconds) skips what would not fit; each subprocess has its own timeout. Full
results go to --out/bench.json and bench.log; a short table is printed last.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time
import traceback

T_START = time.time()

# Real configs (hub config.json values that matter for shapes and semantics).
MODELS = {
    "llama-3.2-1b": dict(
        cls="LlamaForCausalLM", model_type="llama", vocab_size=128256, hidden_size=2048, intermediate_size=8192,
        num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8, head_dim=64,
        max_position_embeddings=131072, rms_norm_eps=1e-5, tie_word_embeddings=True, hidden_act="silu",
        rope={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
              "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
    "qwen3-1.7b": dict(
        cls="Qwen3ForCausalLM", model_type="qwen3", vocab_size=151936, hidden_size=2048, intermediate_size=6144,
        num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128,
        max_position_embeddings=40960, rms_norm_eps=1e-6, tie_word_embeddings=True, hidden_act="silu",
        rope={"rope_type": "default", "rope_theta": 1000000.0}),
    "gemma-3-1b": dict(
        cls="Gemma3ForCausalLM", model_type="gemma3_text", vocab_size=262144, hidden_size=1152,
        intermediate_size=6912, num_hidden_layers=26, num_attention_heads=4, num_key_value_heads=1, head_dim=256,
        max_position_embeddings=32768, rms_norm_eps=1e-6, tie_word_embeddings=True,
        hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=256, sliding_window=512,
        sliding_window_pattern=6, rope=None),  # Gemma3TextConfig's defaults are 1B's RoPE: 1e6 global, 1e4 local
}


def log(msg, fh):
    line = f"[{time.time() - T_START:6.1f}s] {msg}"
    print(line, file=sys.stderr, flush=True)
    fh.write(line + "\n")
    fh.flush()


NOT_CONFIG = ("cls", "model_type", "rope", "sliding_window_pattern")  # metadata for model_flops / ourselves


def make_config(tf, spec):
    kw = {k: v for k, v in spec.items() if k not in NOT_CONFIG}
    cfg_cls = tf.AutoConfig.for_model(spec["model_type"]).__class__
    cfg = None
    if spec["rope"]:
        rope = dict(spec["rope"])
        try:  # transformers 5: rope_parameters
            cfg = cfg_cls(**kw, rope_parameters=dict(rope))
        except Exception:  # transformers 4.x: rope_theta + rope_scaling
            theta = rope.pop("rope_theta")
            scaling = None if rope.get("rope_type") == "default" else rope
            cfg = cfg_cls(**kw, rope_theta=theta, rope_scaling=scaling)
    else:
        cfg = cfg_cls(**kw)
    cfg.architectures = [spec["cls"]]
    return cfg


def write_model(tf, torch, spec, folder):
    if os.path.exists(os.path.join(folder, "config.json")):
        return
    cfg = make_config(tf, spec)
    torch.manual_seed(0)
    cls = getattr(tf, spec["cls"])
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda"):
            model = cls(cfg)
    finally:
        torch.set_default_dtype(old)
    model.save_pretrained(folder)
    del model
    torch.cuda.empty_cache()


def model_flops(spec, seq_lens, n_layers, logit_rows):
    H, I, V = spec["hidden_size"], spec["intermediate_size"], spec["vocab_size"]
    nh, nkv, D = spec["num_attention_heads"], spec["num_key_value_heads"], spec["head_dim"]
    T = sum(seq_lens)
    per_layer_params = H * (nh * D + 2 * nkv * D) + nh * D * H + 3 * H * I
    flops = 2.0 * per_layer_params * T * n_layers + 2.0 * H * V * logit_rows
    window = spec.get("sliding_window")
    pattern = spec.get("sliding_window_pattern")
    for layer in range(n_layers):
        sliding = window is not None and pattern is not None and (layer + 1) % pattern != 0
        pairs = 0
        for n in seq_lens:
            if sliding and n > window:
                pairs += window * (window + 1) // 2 + (n - window) * window
            else:
                pairs += n * (n + 1) // 2
        flops += 4.0 * nh * D * pairs  # q·k and p·v, 2 flops per multiply-add
    return flops


def run_ours(binary, model_dir, tokens, layer, reps, dump, timeout, attn=None):
    """Capture after `layer`, then the full forward, in one process (one model load): {kind: result}.
    attn="mma": the tensor-core attention variant (DIFFKIT_CUDA_ATTN=mma)."""
    cmd = [binary, "--model", model_dir, "--tokens", tokens, "--layer", str(layer), "--full", "--reps", str(reps),
           "--warmup", "2", "--dump", dump]
    env = dict(os.environ)
    env.pop("DIFFKIT_CUDA_ATTN", None)
    if attn:
        env["DIFFKIT_CUDA_ATTN"] = attn
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr[-2000:]}")
    return {r["kind"]: r for r in map(json.loads, p.stdout.strip().splitlines())}


def median_time(torch, fn, reps, warmup=2):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


class Stop(Exception):
    pass


def run_transformers(tf, torch, model_dir, seqs, mid, reps):
    # dtype= is the transformers >= 4.56 spelling (older versions ignore it and load fp32): .to() makes sure
    model = tf.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16,
                                                    attn_implementation="sdpa").to("cuda", torch.bfloat16).eval()
    ids = torch.tensor(seqs, device="cuda")  # equal lengths: no padding, the same tokens as the packed batch
    got = {}

    def hook(mod, inp, out):
        h = out[0] if isinstance(out, tuple) else out
        got["h"] = h.float().to("cpu")
        raise Stop()

    def capture():
        handle = model.model.layers[mid].register_forward_hook(hook)
        try:
            with torch.no_grad():
                model(input_ids=ids)
        except Stop:
            pass
        finally:
            handle.remove()

    def full():
        with torch.no_grad():
            try:
                model(input_ids=ids, logits_to_keep=1).logits
            except TypeError:
                model(input_ids=ids, num_logits_to_keep=1).logits

    t_cap = median_time(torch, capture, reps)
    t_full = median_time(torch, full, reps)
    capture()
    first = got["h"][0].numpy()
    del model
    torch.cuda.empty_cache()
    return t_cap, t_full, first


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True, help="build-gpu/tests/bench_forward_cuda")
    ap.add_argument("--work", default="/tmp/dk_bench_gpu")
    ap.add_argument("--out", default=".")
    ap.add_argument("--seqs", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--budget", type=float, default=300, help="seconds for everything; later steps are skipped")
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    fh = open(os.path.join(args.out, "bench.log"), "a")
    deadline = T_START + args.budget

    def left():
        return deadline - time.time()

    import numpy as np
    import torch
    import transformers as tf
    log(f"torch {torch.__version__}, transformers {tf.__version__}, {torch.cuda.get_device_name(0)}", fh)
    results = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "transformers": tf.__version__,
               "seqs": args.seqs, "seq_len": args.seq_len, "models": {}}

    p = subprocess.run([args.bench, "--gemm-peak", "8192"], capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        log(f"gemm peak failed: {p.stderr[-1000:]}", fh)
        peak = float("nan")
    else:
        peak = json.loads(p.stdout.strip().splitlines()[-1])["tflops"] * 1e12
    results["gemm_peak_tflops"] = peak / 1e12
    log(f"bf16 GEMM peak (cuBLASLt, 8192^3): {peak / 1e12:.1f} TFLOP/s", fh)

    for name in args.models.split(","):
        spec = MODELS[name]
        if left() < 60:
            log(f"{name}: skipped, {left():.0f} s left of the budget", fh)
            results["models"][name] = {"skipped": "time budget"}
            continue
        r = results["models"][name] = {}
        try:
            folder = os.path.join(args.work, name)
            t0 = time.time()
            write_model(tf, torch, spec, folder)
            log(f"{name}: checkpoint written in {time.time() - t0:.1f} s", fh)
            g = torch.Generator().manual_seed(1)
            seqs = torch.randint(0, spec["vocab_size"], (args.seqs, args.seq_len), generator=g).tolist()
            tokens = os.path.join(args.work, f"{name}.tokens.jsonl")
            with open(tokens, "w") as f:
                for s in seqs:
                    f.write(json.dumps({"ids": s}) + "\n")
            L = spec["num_hidden_layers"]
            mid = L // 2
            T = args.seqs * args.seq_len
            lens = [args.seq_len] * args.seqs
            dump = os.path.join(args.work, f"{name}.capture.f32")
            ours = run_ours(args.bench, folder, tokens, mid, args.reps, dump, timeout=max(30, left()))
            ours_cap, ours_full = ours["capture"], ours["full"]
            log(f"{name}: diffkit capture layer {mid}: {ours_cap}", fh)
            log(f"{name}: diffkit full: {ours_full}", fh)
            r.update(tokens=T, mid=mid, diffkit_capture_s=ours_cap["median_s"], diffkit_full_s=ours_full["median_s"])
            r["flops_capture"] = model_flops(spec, lens, mid + 1, 0)
            r["flops_full"] = model_flops(spec, lens, L, args.seqs)
            r["mfu_capture"] = r["flops_capture"] / ours_cap["median_s"] / peak
            r["mfu_full"] = r["flops_full"] / ours_full["median_s"] / peak
            if left() < 30:
                log(f"{name}: transformers skipped, {left():.0f} s left", fh)
                continue
            t_cap, t_full, first = run_transformers(tf, torch, folder, seqs, mid, args.reps)
            r.update(transformers_capture_s=t_cap, transformers_full_s=t_full)
            ours_first = np.fromfile(dump, dtype=np.float32).reshape(first.shape)
            r["capture_rel_err_vs_transformers"] = float(np.linalg.norm(ours_first - first) / np.linalg.norm(first))
            log(f"{name}: transformers capture {t_cap:.4f} s, full {t_full:.4f} s; capture rel err "
                f"{r['capture_rel_err_vs_transformers']:.3g}", fh)
            if left() < 45:
                log(f"{name}: tensor-core attention variant skipped, {left():.0f} s left", fh)
                continue
            dump_mma = os.path.join(args.work, f"{name}.capture_mma.f32")
            mma = run_ours(args.bench, folder, tokens, mid, args.reps, dump_mma, timeout=max(30, left()), attn="mma")
            log(f"{name}: diffkit (DIFFKIT_CUDA_ATTN=mma): {mma}", fh)
            mma_first = np.fromfile(dump_mma, dtype=np.float32).reshape(first.shape)
            r["mma"] = dict(diffkit_capture_s=mma["capture"]["median_s"], diffkit_full_s=mma["full"]["median_s"],
                            mfu_capture=r["flops_capture"] / mma["capture"]["median_s"] / peak,
                            mfu_full=r["flops_full"] / mma["full"]["median_s"] / peak,
                            capture_rel_err_vs_transformers=float(np.linalg.norm(mma_first - first) /
                                                                  np.linalg.norm(first)))
        except Exception as e:  # one model's failure must not hide the others'
            r["error"] = f"{type(e).__name__}: {e}"
            log(f"{name}: FAILED {r['error']}\n{traceback.format_exc()}", fh)

    with open(os.path.join(args.out, "bench.json"), "w") as f:
        json.dump(results, f, indent=1)
    # short table, printed last
    print(f"\nbench ({results['device']}; {args.seqs}x{args.seq_len} tokens; bf16 GEMM peak {peak / 1e12:.0f} TFLOP/s)")
    print(f"{'model':14s} {'capture tok/s':>14s} {'x hf':>6s} {'MFU':>5s} {'full tok/s':>12s} {'x hf':>6s} {'MFU':>5s}"
          f" {'rel err':>8s}")
    for name, r in results["models"].items():
        if "diffkit_capture_s" not in r:
            print(f"{name:14s} {r.get('error', r.get('skipped', '?'))[:70]}")
            continue
        T = r["tokens"]
        xc = r["transformers_capture_s"] / r["diffkit_capture_s"] if "transformers_capture_s" in r else math.nan
        xf = r["transformers_full_s"] / r["diffkit_full_s"] if "transformers_full_s" in r else math.nan
        print(f"{name:14s} {T / r['diffkit_capture_s']:14.0f} {xc:6.2f} {100 * r['mfu_capture']:4.0f}% "
              f"{T / r['diffkit_full_s']:12.0f} {xf:6.2f} {100 * r['mfu_full']:4.0f}% "
              f"{r.get('capture_rel_err_vs_transformers', math.nan):8.2g}")
        if "error" in r:
            print(f"{'  error':14s} {r['error'][:90]}")
        if "mma" in r:
            q = r["mma"]
            print(f"{'  +attn mma':14s} {T / q['diffkit_capture_s']:14.0f} "
                  f"{r['transformers_capture_s'] / q['diffkit_capture_s']:6.2f} {100 * q['mfu_capture']:4.0f}% "
                  f"{T / q['diffkit_full_s']:12.0f} {r['transformers_full_s'] / q['diffkit_full_s']:6.2f} "
                  f"{100 * q['mfu_full']:4.0f}% {q['capture_rel_err_vs_transformers']:8.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
