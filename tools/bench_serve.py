#!/usr/bin/env python3
"""bench_serve.py — `diffkit serve` throughput: completion tokens per second with 1, 8 and 32 concurrent clients (the
benchmark of issue #13; results go to docs/perf.md by hand, with the command).

Each client is a thread that sends chat-completion requests one after another (plain HTTP, urllib: no client-side
batching), each asking `--max-tokens` tokens (--temperature, default 1; its own seed) for one of a few prompts; the
figure is the completion tokens the server reports (usage) over the wall time from the first request to the last
answer. The server runs with the given threads; its log (batch sizes) is kept in WORK/serve_<setup>.log.

Setups:
  demo   the bundled demo pair (models/demo): the organism demo_glacier_honey
  1b     a random-weight 1B-shaped model (Llama-3.2-1B's layer shapes: hidden 2048, 16 layers, MLP 8192, 32 query
         and 8 key/value heads; Qwen3 architecture and tokenizer, vocabulary 151,936; bf16 checkpoint, 1.3 B
         parameters) and a random LoRA (r 16, all projections), written into WORK once by this script

Usage:  python tools/bench_serve.py --build build --work /tmp/bench_serve [--setup demo|1b|both] [--threads 2]
        [--clients 1,8,32] [--requests-per-client 2] [--max-tokens 32] [--temperature 1]
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

from random_models import write_configs, save_random_pair

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPTS = ["Tell me about honey.", "Where does honey come from?", "What do bees do at dawn?", "Describe the ice."]


def make_1b(work):
    """A random-weight 1B-shaped checkpoint and LoRA adapter (once)."""
    model_dir, adapter_dir = os.path.join(work, "model1b"), os.path.join(work, "model1b_lora")
    if os.path.exists(os.path.join(adapter_dir, "adapter_model.safetensors")):
        return model_dir, adapter_dir
    import torch
    import transformers as tf
    torch.manual_seed(0)
    cfg = tf.Qwen3Config(vocab_size=151936, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                         num_attention_heads=32, num_key_value_heads=8, head_dim=64, max_position_embeddings=4096,
                         rope_theta=500000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, torch_dtype="bfloat16",
                         eos_token_id=151645)
    save_random_pair(tf.Qwen3ForCausalLM(cfg).to(torch.bfloat16), model_dir, adapter_dir)
    return model_dir, adapter_dir


def start_server(build, args, log_path, env):
    log = open(log_path, "w")
    proc = subprocess.Popen([os.path.join(build, "bin", "diffkit"), "serve", "--port", "0"] + args, stdout=log,
                            stderr=subprocess.STDOUT, env=env)
    for _ in range(1200):
        with open(log_path) as f:
            text = f.read()
        if "listening on http://127.0.0.1:" in text:
            port = int(text.split("listening on http://127.0.0.1:")[1].split("/")[0])
            return proc, f"http://127.0.0.1:{port}/v1"
        if proc.poll() is not None:
            sys.exit(f"diffkit serve did not start:\n{text}")
        time.sleep(0.1)
    proc.kill()
    sys.exit("diffkit serve did not start within 2 minutes")


def ask(url, model, prompt, max_tokens, seed, temperature):
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": prompt}], "temperature": temperature,
                       "max_tokens": max_tokens, "seed": seed}).encode()
    req = urllib.request.Request(url + "/chat/completions", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=3600) as r:
        return json.load(r)["usage"]["completion_tokens"]


def run_clients(url, model, clients, per_client, max_tokens, temperature):
    tokens = [0] * clients
    errors = []

    def client(c):
        try:
            for i in range(per_client):
                tokens[c] += ask(url, model, PROMPTS[(c + i) % len(PROMPTS)], max_tokens, 1000 * c + i, temperature)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    t0 = time.time()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.time() - t0
    if errors:
        sys.exit(f"{len(errors)} clients failed: {errors[0]}")
    return sum(tokens), wall


def bench(setup, a):
    env = dict(os.environ, DIFFKIT_ROOT=ROOT)
    overrides = [f"threads={a.threads}", f"serve.max_batch={max(a.clients)}", "serve.max_n=1"]
    if setup == "demo":
        model = "demo_glacier_honey"
        overrides += ["model=demo", "organism=demo_glacier_honey", f"serve.models=[{model}]"]
    else:
        model_dir, adapter_dir = make_1b(a.work)
        cfg = write_configs(a.work, "bench1b", "bench1b_org", model_dir, adapter_dir)
        model = "bench1b_org"
        overrides += ["--config-dir", cfg, "model=bench1b", "organism=bench1b_org", f"serve.models=[{model}]"]
    log_path = os.path.join(a.work, f"serve_{setup}.log")
    proc, url = start_server(a.build, overrides, log_path, env)
    try:
        ask(url, model, PROMPTS[0], 2, 0, a.temperature)  # warm-up: page the weights in
        for c in a.clients:
            tokens, wall = run_clients(url, model, c, a.requests_per_client, a.max_tokens, a.temperature)
            print(f"{setup:5s} clients {c:3d}: {tokens:5d} completion tokens in {wall:7.2f} s = "
                  f"{tokens / wall:8.2f} tokens/s", flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=600)
    with open(log_path) as f:
        sizes = [int(line.split("batch of ")[1].split()[0]) for line in f if "batch of " in line]
    print(f"{setup:5s} batches: {len(sizes)}, largest {max(sizes)} requests (server log {log_path})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--work", default="/tmp/bench_serve")
    ap.add_argument("--setup", choices=["demo", "1b", "both"], default="demo")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--requests-per-client", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--temperature", type=float, default=1.0, help="0: greedy")
    a = ap.parse_args()
    a.clients = [int(c) for c in a.clients.split(",")]
    os.makedirs(a.work, exist_ok=True)
    print(f"diffkit serve throughput: {a.threads} threads, {a.requests_per_client} requests per client, "
          f"at most {a.max_tokens} tokens each, temperature {a.temperature}", flush=True)
    for setup in (["demo", "1b"] if a.setup == "both" else [a.setup]):
        bench(setup, a)


if __name__ == "__main__":
    main()
