#!/usr/bin/env python3
"""make_engine_fixtures.py — writes the committed fixtures of the engine tests (tests/fixtures/engine/).

Why: the C tests must check diffkit against the reference Python stack (safetensors, torch, transformers),
not against itself, and must run without Python. So this script produces files with the official writers
and, next to them, the values those libraries compute, in formats a C test reads trivially:

  safetensors/single/model.safetensors   written by safetensors.torch.save_file: BF16, F16, F32 tensors
                                         (2-D, 3-D, scalar, empty), I64 and F8_E4M3 tensors, __metadata__
  safetensors/single/expected.txt        one line per tensor: name dtype ndim dims... f32_offset|-
                                         and one line per metadata entry: @meta key value
  safetensors/single/expected_f32.bin    the readable tensors' values as torch's .float() gives them,
                                         little-endian f32, at f32_offset (in floats)
  safetensors/sharded/                   model.safetensors.index.json + 3 shards, written by
                                         huggingface_hub.save_torch_state_dict (what save_pretrained uses),
                                         with the same expected.txt / expected_f32.bin pair
  fuzz_safetensors_seeds/*.safetensors   tiny valid files: the seed corpus of the header fuzzer
  configs/<name>.config.json             config.json texts written by transformers' config classes
  configs/<name>.expected.json           transformers' own reading of each (attribute values)
  rope/<case>.txt                        per config case and layer type: inv_freq and attention_scaling from the
                                         model's rotary embedding module (ROPE_INIT_FUNCTIONS), and its cos/sin
                                         rows at a few positions; rope/apply.bin: apply_rotary_pos_emb in/out
  kernels/{rmsnorm,act}.bin              LlamaRMSNorm / Gemma3RMSNorm (f32 and bf16), silu/gelu gated products
  fuzz_{safetensors,hf_config}.corpus    inputs libFuzzer found (merged), packed; replayed by the fuzz ctests:
      build-fuzz/tests/fuzz_safetensors_libfuzzer -max_total_time=600 /tmp/c tests/fixtures/engine/fuzz_safetensors_seeds
      build-fuzz/tests/fuzz_safetensors_libfuzzer -merge=1 /tmp/m /tmp/c
      python tools/make_engine_fixtures.py --pack-corpus /tmp/m fuzz_safetensors

Usage (PyPI only; no network at test time):
    python -m venv /tmp/venv && /tmp/venv/bin/pip install safetensors numpy torch "transformers>=5"
    /tmp/venv/bin/python tools/make_engine_fixtures.py [--only safetensors|configs|rope|kernels] [--out DIR]
Optionally, a second run with transformers 4.x adds the legacy config.json spelling (rope_theta +
rope_scaling, torch_dtype):
    /tmp/venv4/bin/pip install "transformers<5" torch && /tmp/venv4/bin/python tools/make_engine_fixtures.py --only configs
The committed fixtures were made with safetensors 0.8.0, huggingface_hub 2.4.0, torch 2.15.0, transformers
5.24.0 and (configs *_v4) transformers 4.57.6. Each run rewrites only its own files; values are deterministic (fixed seeds), so re-running with the same
library versions gives the same files, except that the safetensors writer may order __metadata__ keys
differently (the tests do not depend on that order). test_safetensors patches the single file's header
text (e.g. "data_offsets":[128,132]), which depends on the writer's layout: if a new safetensors version
lays tensors out differently, update those patches.
"""
import argparse
import json
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------------------------------
# safetensors

def write_expected(folder, tensors, metadata):
    """expected.txt + expected_f32.bin for a dict name -> torch tensor (the values as written)."""
    import torch
    lines, blob, offset = [], bytearray(), 0
    names = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32", torch.int64: "I64",
             torch.float8_e4m3fn: "F8_E4M3", torch.int32: "I32", torch.uint8: "U8"}
    for name in sorted(tensors):
        t = tensors[name]
        dims = " ".join(str(d) for d in t.shape)
        if t.dtype in (torch.bfloat16, torch.float16, torch.float32):
            values = t.float().contiguous().reshape(-1).tolist()
            blob += struct.pack("<%df" % len(values), *values)
            lines.append(f"{name} {names[t.dtype]} {t.dim()} {dims} {offset}".replace("  ", " "))
            offset += len(values)
        else:
            lines.append(f"{name} {names[t.dtype]} {t.dim()} {dims} -".replace("  ", " "))
    for key in sorted(metadata or {}):
        lines.append(f"@meta {key} {metadata[key]}")
    with open(os.path.join(folder, "expected.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(folder, "expected_f32.bin"), "wb") as f:
        f.write(bytes(blob))


def make_safetensors(out):
    import torch
    from safetensors.torch import save_file
    from huggingface_hub import save_torch_state_dict

    g = torch.Generator().manual_seed(1234)
    special = torch.tensor([0.0, -0.0, 1.0, -2.5, 65504.0, 6.1e-5, 3.0e-7, 1e-30, float("inf"), float("-inf"),
                            3.3895e38, -1.17549435e-38])
    single = {
        "bf16.matrix": torch.randn(3, 5, generator=g).to(torch.bfloat16),
        "bf16.special": special.to(torch.bfloat16),
        "f16.vector": torch.randn(7, generator=g).to(torch.float16),
        "f16.special": special.to(torch.float16),         # overflow -> inf, subnormals, underflow -> 0
        "f32.cube": torch.randn(2, 3, 4, generator=g),
        "f32.scalar": torch.tensor(3.25),
        "f32.empty": torch.zeros(0, 4),
        "i64.ids": torch.tensor([1, -2, 3, 1 << 40]),
        "f8.weights": torch.tensor([0.5, -1.0, 2.0, 448.0]).to(torch.float8_e4m3fn),
        # a 1-element bf16 tensor: with 2-byte tensors next to it, some data lands at odd 2-byte boundaries
        "bf16.one": torch.tensor([1.5]).to(torch.bfloat16),
    }
    meta = {"format": "pt", "note": "diffkit-fixture"}
    d = os.path.join(out, "safetensors", "single")
    os.makedirs(d, exist_ok=True)
    save_file(single, os.path.join(d, "model.safetensors"), metadata=meta)
    write_expected(d, single, meta)

    # A tiny Llama-shaped state dict, split into shards by the writer transformers uses.
    H, I, V = 8, 12, 16
    sharded = {
        "model.embed_tokens.weight": torch.randn(V, H, generator=g).to(torch.bfloat16),
        "model.layers.0.input_layernorm.weight": torch.randn(H, generator=g).to(torch.bfloat16),
        "model.layers.0.self_attn.q_proj.weight": torch.randn(H, H, generator=g).to(torch.bfloat16),
        "model.layers.0.mlp.gate_proj.weight": torch.randn(I, H, generator=g).to(torch.bfloat16),
        "model.layers.0.mlp.down_proj.weight": torch.randn(H, I, generator=g).to(torch.bfloat16),
        "model.norm.weight": torch.randn(H, generator=g).to(torch.float32),
        "lm_head.weight": torch.randn(V, H, generator=g).to(torch.float16),
    }
    d = os.path.join(out, "safetensors", "sharded")
    os.makedirs(d, exist_ok=True)
    for name in os.listdir(d):
        if name.endswith(".safetensors") or name.endswith(".json"):
            os.remove(os.path.join(d, name))
    save_torch_state_dict(sharded, d, max_shard_size=400, metadata={"format": "pt"})
    n_shards = sum(1 for n in os.listdir(d) if n.endswith(".safetensors"))
    assert n_shards >= 2, f"expected several shards, got {n_shards}"
    write_expected(d, sharded, None)

    # Seeds for the header fuzzer: small and varied.
    d = os.path.join(out, "fuzz_safetensors_seeds")
    os.makedirs(d, exist_ok=True)
    seeds = {
        "one_bf16": ({"w": torch.tensor([1.0, 2.0]).to(torch.bfloat16)}, {"format": "pt"}),
        "mixed": ({"a": torch.zeros(2, 2), "b.bias": torch.ones(3).to(torch.float16),
                   "c": torch.tensor(7, dtype=torch.int64)}, None),
        "empty_and_scalar": ({"e": torch.zeros(0, 3).to(torch.bfloat16), "s": torch.tensor(1.0)}, None),
        "no_tensors": ({}, {"k": "v", "format": "pt"}),
        "f8_u8": ({"q": torch.tensor([1.0, 2.0]).to(torch.float8_e4m3fn), "m": torch.tensor([1, 2, 3], dtype=torch.uint8)},
                  None),
        "deep": ({"x": torch.zeros(1, 2, 1, 2, 1, 2, 1, 2)}, None),
    }
    for name, (tensors, metadata) in seeds.items():
        save_file(tensors, os.path.join(d, name + ".safetensors"), metadata=metadata)


# ------------------------------------------------------------------------------------------------------
# config.json

# config.json texts as published on the Hugging Face Hub for the models in scope (legacy spelling: rope_theta +
# rope_scaling, torch_dtype, keys left out where the class default applies — gemma-3-4b's text_config is
# almost empty). Transcribed from the published files; what matters for the tests is that transformers
# reads them, and the expectations are its reading.
HUB_CONFIGS = {
    "llama32_1b_instruct": {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "head_dim": 64, "hidden_act": "silu",
        "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 8192, "max_position_embeddings": 131072,
        "mlp_bias": False, "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 16,
        "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rope_theta": 500000.0, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
        "transformers_version": "4.45.0.dev0", "use_cache": True, "vocab_size": 128256},
    "mistral_7b": {
        "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
        "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 32768,
        "model_type": "mistral", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
        "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096, "tie_word_embeddings": False,
        "torch_dtype": "bfloat16", "transformers_version": "4.34.0.dev0", "use_cache": True, "vocab_size": 32000},
    "qwen25_05b_instruct": {
        "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
        "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02,
        "intermediate_size": 4864, "max_position_embeddings": 32768, "max_window_layers": 21, "model_type": "qwen2",
        "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
        "transformers_version": "4.43.1", "use_cache": True, "use_sliding_window": False, "vocab_size": 151936},
    "qwen25_7b_yarn": {  # Qwen2.5-7B-Instruct with the long-context rope_scaling its model card suggests
        "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
        "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 3584, "initializer_range": 0.02,
        "intermediate_size": 18944, "max_position_embeddings": 32768, "max_window_layers": 28, "model_type": "qwen2",
        "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4, "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0, "sliding_window": 131072, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "rope_scaling": {"factor": 4.0, "original_max_position_embeddings": 32768, "type": "yarn"},
        "transformers_version": "4.43.1", "use_cache": True, "use_sliding_window": False, "vocab_size": 152064},
    "qwen3_17b": {
        "architectures": ["Qwen3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu", "hidden_size": 2048,
        "initializer_range": 0.02, "intermediate_size": 6144, "max_position_embeddings": 40960,
        "max_window_layers": 28, "model_type": "qwen3", "num_attention_heads": 16, "num_hidden_layers": 28,
        "num_key_value_heads": 8, "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000000,
        "sliding_window": None, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
        "transformers_version": "4.51.0", "use_cache": True, "use_sliding_window": False, "vocab_size": 151936},
    "gemma2_2b_it": {
        "architectures": ["Gemma2ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "attn_logit_softcapping": 50.0, "bos_token_id": 2, "cache_implementation": "hybrid", "eos_token_id": [1, 107],
        "final_logit_softcapping": 30.0, "head_dim": 256, "hidden_act": "gelu_pytorch_tanh",
        "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 2304, "initializer_range": 0.02,
        "intermediate_size": 9216, "max_position_embeddings": 8192, "model_type": "gemma2",
        "num_attention_heads": 8, "num_hidden_layers": 26, "num_key_value_heads": 4, "pad_token_id": 0,
        "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "sliding_window": 4096,
        "torch_dtype": "float32", "transformers_version": "4.42.4", "use_cache": True, "vocab_size": 256000},
    "gemma3_1b_it": {
        "architectures": ["Gemma3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "attn_logit_softcapping": None, "bos_token_id": 2, "cache_implementation": "hybrid", "eos_token_id": [1, 106],
        "final_logit_softcapping": None, "head_dim": 256, "hidden_activation": "gelu_pytorch_tanh",
        "hidden_size": 1152, "initializer_range": 0.02, "intermediate_size": 6912, "max_position_embeddings": 32768,
        "model_type": "gemma3_text", "num_attention_heads": 4, "num_hidden_layers": 26, "num_key_value_heads": 1,
        "pad_token_id": 0, "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06, "rope_local_base_freq": 10000,
        "rope_scaling": None, "rope_theta": 1000000, "sliding_window": 512, "sliding_window_pattern": 6,
        "torch_dtype": "bfloat16", "transformers_version": "4.50.0.dev0", "use_cache": True, "vocab_size": 262144},
    "gpt2": {  # openai-community/gpt2 (the seed's `gpt2`): GPT-2's own key names
        "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
        "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768, "n_head": 12,
        "n_layer": 12, "n_positions": 1024, "resid_pdrop": 0.1, "summary_activation": None,
        "summary_first_dropout": 0.1, "summary_proj_to_labels": True, "summary_type": "cls_index",
        "summary_use_proj": True, "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}},
        "vocab_size": 50257},
    "qwen25_vl_3b_instruct": {  # Qwen/Qwen2.5-VL-3B-Instruct: the language model's keys at the top, M-RoPE
        "architectures": ["Qwen2_5_VLForConditionalGeneration"], "attention_dropout": 0.0, "bos_token_id": 151643,
        "eos_token_id": 151645, "vision_start_token_id": 151652, "vision_end_token_id": 151653,
        "vision_token_id": 151654, "image_token_id": 151655, "video_token_id": 151656, "hidden_act": "silu",
        "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 11008, "max_position_embeddings": 128000,
        "max_window_layers": 70, "model_type": "qwen2_5_vl", "num_attention_heads": 16, "num_hidden_layers": 36,
        "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768,
        "tie_word_embeddings": True, "torch_dtype": "bfloat16", "transformers_version": "4.49.0.dev0",
        "use_cache": True, "use_sliding_window": False,
        "vision_config": {"depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420,
                          "num_heads": 16, "in_chans": 3, "out_hidden_size": 2048, "patch_size": 14,
                          "spatial_merge_size": 2, "spatial_patch_size": 14, "window_size": 112,
                          "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2,
                          "temporal_patch_size": 2},
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}, "vocab_size": 151936},
    "gemma3_4b_it": {
        "architectures": ["Gemma3ForConditionalGeneration"], "boi_token_index": 255999, "eoi_token_index": 256000,
        "eos_token_id": [1, 106], "image_token_index": 262144, "initializer_range": 0.02, "mm_tokens_per_image": 256,
        "model_type": "gemma3",
        "text_config": {"hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text",
                        "num_hidden_layers": 34, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
                        "sliding_window": 1024},
        "torch_dtype": "bfloat16", "transformers_version": "4.50.0.dev0",
        "vision_config": {"hidden_size": 1152, "image_size": 896, "intermediate_size": 4304,
                          "model_type": "siglip_vision_model", "num_attention_heads": 16, "num_hidden_layers": 27,
                          "patch_size": 14, "vision_use_head": False}},
}


def config_cases():
    """(fixture name, config.json text) pairs: texts written by transformers' config classes (this
    version's spelling, suffix _v5 or _v4) and the Hub texts above (prefix hub_)."""
    import transformers as tf
    v5 = int(tf.__version__.split(".")[0]) >= 5
    tag = "v5" if v5 else "v4"
    cases = []

    def add(name, fn):
        cases.append((f"{name}_{tag}", fn))

    def tiny(vocab=320, layers=4, max_pos=512):
        return dict(vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=layers,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_pos)

    def rope(theta, scaling):
        """This version's spelling of a RoPE setting."""
        if v5:
            return {"rope_parameters": {**(scaling or {"rope_type": "default"}), "rope_theta": theta}}
        return {"rope_theta": theta, **({"rope_scaling": scaling} if scaling else {})}

    dtype_key = "dtype" if v5 else "torch_dtype"
    llama3 = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
              "original_max_position_embeddings": 8192}
    add("llama32", lambda: tf.LlamaConfig(**tiny(vocab=128256, max_pos=131072), rms_norm_eps=1e-5,
                                          tie_word_embeddings=True, **rope(500000.0, llama3),
                                          bos_token_id=128000, eos_token_id=[128001, 128008, 128009],
                                          **{dtype_key: "bfloat16"}, architectures=["LlamaForCausalLM"]))
    add("llama_default", lambda: tf.LlamaConfig(**tiny(), architectures=["LlamaForCausalLM"]))
    add("llama_linear_bias", lambda: tf.LlamaConfig(
        **tiny(), attention_bias=True, mlp_bias=True, head_dim=32,
        **rope(10000.0, {"rope_type": "linear", "factor": 4.0}), architectures=["LlamaForCausalLM"]))
    add("mistral", lambda: tf.MistralConfig(**tiny(), sliding_window=64, architectures=["MistralForCausalLM"]))
    add("qwen2", lambda: tf.Qwen2Config(**tiny(vocab=151936), tie_word_embeddings=True, rms_norm_eps=1e-6,
                                        architectures=["Qwen2ForCausalLM"], eos_token_id=151645,
                                        bos_token_id=151643, **{dtype_key: "float16"}))
    add("qwen2_sliding", lambda: tf.Qwen2Config(**tiny(), use_sliding_window=True, sliding_window=32,
                                                max_window_layers=2, architectures=["Qwen2ForCausalLM"]))
    yarn = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 128}
    add("qwen3", lambda: tf.Qwen3Config(**tiny(), head_dim=32, tie_word_embeddings=True,
                                        architectures=["Qwen3ForCausalLM"]))
    add("qwen3_yarn", lambda: tf.Qwen3Config(**tiny(), head_dim=32, **rope(1000000.0, yarn),
                                             architectures=["Qwen3ForCausalLM"]))
    add("gemma2", lambda: tf.Gemma2Config(**tiny(layers=5), head_dim=16, architectures=["Gemma2ForCausalLM"]))
    add("gemma3_text", lambda: tf.Gemma3TextConfig(**tiny(layers=8), head_dim=32, sliding_window=16,
                                                   architectures=["Gemma3ForCausalLM"]))
    types = ["full_attention", "sliding_attention", "sliding_attention", "full_attention"]
    if v5:
        add("gemma3_text_types", lambda: tf.Gemma3TextConfig(
            **tiny(), head_dim=32, sliding_window=16, layer_types=types, query_pre_attn_scalar=24,
            rope_parameters={"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
                             "sliding_attention": {"rope_type": "default", "rope_theta": 20000.0}},
            architectures=["Gemma3ForCausalLM"]))
    else:
        add("gemma3_text_types", lambda: tf.Gemma3TextConfig(
            **tiny(), head_dim=32, sliding_window=16, rope_scaling={"rope_type": "linear", "factor": 8.0},
            rope_local_base_freq=20000.0, layer_types=types, query_pre_attn_scalar=24,
            architectures=["Gemma3ForCausalLM"]))

    def gemma3_mm():
        text = tf.Gemma3TextConfig(**tiny(layers=7), head_dim=32, sliding_window=16)
        return tf.Gemma3Config(text_config=text.to_dict(), architectures=["Gemma3ForConditionalGeneration"])
    add("gemma3_mm", gemma3_mm)
    add("gpt2", lambda: tf.GPT2Config(vocab_size=320, n_positions=512, n_embd=64, n_layer=4, n_head=4,
                                      n_inner=96, activation_function="gelu", layer_norm_epsilon=1e-6,
                                      tie_word_embeddings=False, architectures=["GPT2LMHeadModel"]))
    if v5:
        add("qwen25_vl", lambda: tf.Qwen2_5_VLConfig(
            text_config=dict(**tiny(), rope_parameters={"rope_type": "default", "rope_theta": 50000.0,
                                                        "mrope_section": [2, 3, 3]}),
            vision_config=dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=64),
            architectures=["Qwen2_5_VLForConditionalGeneration"]))

    out = [(name, (lambda fn=fn: fn().to_json_string())) for name, fn in cases]
    for name, d in HUB_CONFIGS.items():
        out.append((f"hub_{name}_{tag}", (lambda d=d: json.dumps(d, indent=2) + "\n")))
    return out


def load_config(text):
    """transformers' reading of a config.json text, as from_pretrained does it."""
    from transformers import CONFIG_MAPPING
    d = json.loads(text)
    return CONFIG_MAPPING[d["model_type"]].from_dict(d), d


def rope_of(cfg, layer_type=None):
    """The RoPE parameters transformers uses for a layer type, as a flat dict (type, theta, params)."""
    rp = getattr(cfg, "rope_parameters", None)
    if rp is not None:  # transformers v5
        if layer_type is not None and isinstance(rp, dict) and layer_type in rp:
            rp = rp[layer_type]
        rp = dict(rp)
        rp.setdefault("rope_type", rp.get("type", "default"))
        return rp
    scaling = getattr(cfg, "rope_scaling", None) or {}
    out = {"rope_type": scaling.get("rope_type", scaling.get("type", "default")), "rope_theta": cfg.rope_theta}
    if layer_type == "sliding_attention" and hasattr(cfg, "rope_local_base_freq"):
        return {"rope_type": "default", "rope_theta": cfg.rope_local_base_freq}
    out.update({k: v for k, v in scaling.items() if k not in ("type", "rope_type")})
    return out


def effective_layer_types(text):
    """Which layers use sliding-window attention, the way each family's modeling code decides it."""
    n = text.num_hidden_layers
    lt = getattr(text, "layer_types", None)
    if lt is not None:
        return list(lt)
    mt = text.model_type
    if mt == "mistral":  # MistralModel: a sliding-window mask on every layer when sliding_window is set
        return ["sliding_attention" if getattr(text, "sliding_window", None) else "full_attention"] * n
    if mt == "gemma2":
        return ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(n)]
    if mt == "gemma3_text":
        p = getattr(text, "sliding_window_pattern", None) or getattr(text, "_sliding_window_pattern", 6)
        return ["full_attention" if (i + 1) % p == 0 else "sliding_attention" for i in range(n)]
    if mt in ("qwen2", "qwen3"):
        on = getattr(text, "use_sliding_window", False) and getattr(text, "sliding_window", None)
        return ["sliding_attention" if on and i >= text.max_window_layers else "full_attention" for i in range(n)]
    return ["full_attention"] * n


def expected_of_gpt2(cfg):
    """GPT2Config under the common names: n_inner None means 4·n_embd, the Conv1D projections carry biases, no
    RoPE, every layer full attention."""
    d = cfg.to_dict()
    return {
        "architecture": cfg.architectures[0], "model_type": "gpt2", "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.n_embd, "intermediate_size": cfg.n_inner or 4 * cfg.n_embd,
        "num_hidden_layers": cfg.n_layer, "num_attention_heads": cfg.n_head, "num_key_value_heads": cfg.n_head,
        "head_dim": cfg.n_embd // cfg.n_head, "rms_norm_eps": cfg.layer_norm_epsilon,
        "max_position_embeddings": cfg.n_positions, "tie_word_embeddings": bool(cfg.tie_word_embeddings),
        "attention_bias": True, "mlp_bias": True, "hidden_act": cfg.activation_function,
        "dtype": str(d["dtype"]).replace("torch.", "") if d.get("dtype") else None,
        "bos_token_id": cfg.bos_token_id, "eos_token_id": [cfg.eos_token_id], "pad_token_id": cfg.pad_token_id,
        "sliding_window": None, "layer_types": ["full_attention"] * cfg.n_layer, "query_pre_attn_scalar": None,
        "attn_logit_softcapping": None, "final_logit_softcapping": None, "rope_full": None, "rope_sliding": None,
    }


def expected_of(cfg, raw):
    """transformers' own reading of a config: the values the C parser must reproduce. raw is the JSON dict
    (token ids: the top-level value when the file has one, else the text config's)."""
    if cfg.model_type == "gpt2":
        return expected_of_gpt2(cfg)
    text = cfg.get_text_config(decoder=True) if hasattr(cfg, "get_text_config") else cfg
    layer_types = effective_layer_types(text)
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    act = getattr(text, "hidden_activation", None) if text.model_type.startswith("gemma") else None
    act = act or getattr(text, "hidden_act", None)
    dtype = getattr(cfg, "dtype", None) or getattr(cfg, "torch_dtype", None)

    def token(key):
        v = raw[key] if key in raw else getattr(text, key, None)
        return v

    eos = token("eos_token_id")
    any_sliding = "sliding_attention" in layer_types
    e = {
        "architecture": cfg.architectures[0],
        "model_type": text.model_type,
        "vocab_size": text.vocab_size,
        "hidden_size": text.hidden_size,
        "intermediate_size": text.intermediate_size,
        "num_hidden_layers": text.num_hidden_layers,
        "num_attention_heads": text.num_attention_heads,
        "num_key_value_heads": text.num_key_value_heads,
        "head_dim": head_dim,
        "rms_norm_eps": text.rms_norm_eps,
        "max_position_embeddings": text.max_position_embeddings,
        "tie_word_embeddings": bool(getattr(text, "tie_word_embeddings", None) if hasattr(text, "tie_word_embeddings")
                                    else cfg.tie_word_embeddings),
        "attention_bias": bool(getattr(text, "attention_bias", False)),
        "mlp_bias": bool(getattr(text, "mlp_bias", False)),
        "hidden_act": act,
        "dtype": str(dtype).replace("torch.", "") if dtype is not None else None,
        "bos_token_id": token("bos_token_id"),
        "eos_token_id": eos if isinstance(eos, list) or eos is None else [eos],
        "pad_token_id": token("pad_token_id"),
        "sliding_window": text.sliding_window if any_sliding else None,
        "layer_types": layer_types,
        "query_pre_attn_scalar": getattr(text, "query_pre_attn_scalar", None),
        "attn_logit_softcapping": getattr(text, "attn_logit_softcapping", None),
        "final_logit_softcapping": getattr(text, "final_logit_softcapping", None),
        "rope_full": rope_of(text, "full_attention"),
        "rope_sliding": rope_of(text, "sliding_attention") if any_sliding else None,
    }
    return e


def make_configs(out):
    import transformers as tf
    d = os.path.join(out, "configs")
    os.makedirs(d, exist_ok=True)
    for name, make_text in config_cases():
        text = make_text()  # for generated cases: what save_pretrained writes (to_json_string, use_diff=True)
        with open(os.path.join(d, name + ".config.json"), "w") as f:
            f.write(text)
        # Read it back the way from_pretrained does, so the expectations are transformers' reading of the
        # file (defaults for omitted keys included), not of the Python object we built.
        cfg, raw = load_config(text)
        exp = expected_of(cfg, raw)
        exp["transformers_version"] = tf.__version__
        with open(os.path.join(d, name + ".expected.json"), "w") as f:
            json.dump(exp, f, indent=1, sort_keys=True)
            f.write("\n")
        print("wrote", name)


# ------------------------------------------------------------------------------------------------------
# RoPE inverse frequencies (for the CPU kernels)

ROTARY_CLASSES = {"llama": ("llama", "LlamaRotaryEmbedding"), "mistral": ("mistral", "MistralRotaryEmbedding"),
                  "qwen2": ("qwen2", "Qwen2RotaryEmbedding"), "qwen3": ("qwen3", "Qwen3RotaryEmbedding"),
                  "gemma2": ("gemma2", "Gemma2RotaryEmbedding"), "gemma3_text": ("gemma3", "Gemma3RotaryEmbedding"),
                  "qwen2_5_vl_text": ("qwen2_5_vl", "Qwen2_5_VLRotaryEmbedding")}
ROPE_POSITIONS = [0, 1, 4097, 30000]


def make_rope(out):
    """rope/<case>.txt: for each layer type of each config case, transformers' rotary embedding module's
    inv_freq, attention_scaling, and the cos/sin rows it returns (float32) at ROPE_POSITIONS; plus
    rope/apply.bin: q, k, cos, sin and apply_rotary_pos_emb(q, k, cos, sin) from the Llama module."""
    import importlib
    import torch
    import transformers as tf
    if int(tf.__version__.split(".")[0]) < 5:
        print("rope fixtures follow transformers 5 semantics; skipped with", tf.__version__)
        return
    d = os.path.join(out, "rope")
    os.makedirs(d, exist_ok=True)
    for name, make_text in config_cases():
        cfg, _ = load_config(make_text())
        text = cfg.get_text_config(decoder=True)
        if text.model_type not in ROTARY_CLASSES:  # GPT-2: learned positions, no RoPE
            continue
        module_name, class_name = ROTARY_CLASSES[text.model_type]
        module = importlib.import_module(f"transformers.models.{module_name}.modeling_{module_name}")
        rotary = getattr(module, class_name)(text)
        types = sorted(set(effective_layer_types(text))) if text.model_type == "gemma3_text" else [None]
        pos = torch.tensor([ROPE_POSITIONS])
        lines = [f"positions {len(ROPE_POSITIONS)} " + " ".join(str(p) for p in ROPE_POSITIONS)]
        for lt in types:
            x = torch.zeros(1, dtype=torch.float32)
            if lt is None:
                inv, scale = rotary.inv_freq, rotary.attention_scaling
                cos, sin = rotary(x, pos)
            else:
                inv, scale = getattr(rotary, f"{lt}_inv_freq"), getattr(rotary, f"{lt}_attention_scaling")
                cos, sin = rotary(x, pos, lt)
            label = lt or "all"
            # %.9g round-trips float32 exactly
            lines.append(f"inv_freq {label} {float(scale)!r} {len(inv)} " + " ".join("%.9g" % v for v in inv.tolist()))
            for row, p in enumerate(ROPE_POSITIONS):
                lines.append(f"cos {label} {p} " + " ".join("%.9g" % v for v in cos[0, row].tolist()))
                lines.append(f"sin {label} {p} " + " ".join("%.9g" % v for v in sin[0, row].tolist()))
        with open(os.path.join(d, name + ".txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
        print("wrote rope", name)

    # apply_rotary_pos_emb on random q (1, nh=3, S=5, D=8) and k (1, nkv=2, S, D) at positions 0..4 (+ 1000)
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb
    g = torch.Generator().manual_seed(99)
    S, D = 5, 8
    q, k = torch.randn(1, 3, S, D, generator=g), torch.randn(1, 2, S, D, generator=g)
    positions = torch.tensor([[0, 1, 2, 3, 1000]])
    inv = 1.0 / (10000.0 ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    freqs = positions[..., None].float() * inv
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    q_rot, k_rot = apply_rotary_pos_emb(q, k, cos, sin)
    with open(os.path.join(d, "apply.bin"), "wb") as f:
        for t in (q, k, cos[0], sin[0], q_rot, k_rot):  # (1,3,S,D) (1,2,S,D) (S,D) (S,D) (1,3,S,D) (1,2,S,D)
            f.write(t.contiguous().float().numpy().astype("<f4").tobytes())


def make_kernels(out):
    """kernels/*.bin: inputs and transformers/torch outputs for the CPU kernel tests (little-endian f32).
      rmsnorm.bin  : x (4, 40), w (40,), eps 1e-6, then LlamaRMSNorm(x) and Gemma3RMSNorm(x) in float32, then
                     the same two with x and w in bfloat16 (outputs widened to f32)
      act.bin      : gate (2, 33), up (2, 33), then silu(gate)*up, gelu_tanh(gate)*up, gelu(gate)*up (float32)
      layernorm.bin: x (4, 40) and w (40,) as above, b (40,), torch.nn.LayerNorm(x) (eps 1e-5); then x (3, 29) and
                     NewGELUActivation(x) (GPT-2's gelu_new, no gate)
    """
    import torch
    import torch.nn.functional as F
    from transformers.models.llama.modeling_llama import LlamaRMSNorm
    from transformers.models.gemma3.modeling_gemma3 import Gemma3RMSNorm
    d = os.path.join(out, "kernels")
    os.makedirs(d, exist_ok=True)
    g = torch.Generator().manual_seed(7)
    rows, dim, eps = 4, 40, 1e-6
    x = torch.randn(rows, dim, generator=g) * 3.0
    x[1] *= 100.0  # a large-magnitude row
    w = torch.randn(dim, generator=g) * 0.5
    llama, gemma = LlamaRMSNorm(dim, eps=eps), Gemma3RMSNorm(dim, eps=eps)
    with torch.no_grad():
        llama.weight.copy_(w)
        gemma.weight.copy_(w)
        outs = [llama(x), gemma(x)]
        llama_bf, gemma_bf = llama.to(torch.bfloat16), gemma.to(torch.bfloat16)
        xb = x.to(torch.bfloat16)
        outs += [llama_bf(xb).float(), gemma_bf(xb).float()]
    with open(os.path.join(d, "rmsnorm.bin"), "wb") as f:
        for t in [x, w] + outs:
            f.write(t.contiguous().float().numpy().astype("<f4").tobytes())

    gate = torch.randn(2, 33, generator=g) * 4.0
    gate[0, :5] = torch.tensor([0.0, -0.0, 30.0, -30.0, 1e-8])
    up = torch.randn(2, 33, generator=g)
    acts = [F.silu(gate) * up, F.gelu(gate, approximate="tanh") * up, F.gelu(gate) * up]
    with open(os.path.join(d, "act.bin"), "wb") as f:
        for t in [gate, up] + acts:
            f.write(t.contiguous().float().numpy().astype("<f4").tobytes())
    # LayerNorm (GPT-2's), and the activation without a gate it uses (NewGELUActivation, "gelu_new")
    from transformers.activations import NewGELUActivation
    ln = torch.nn.LayerNorm(dim, eps=1e-5)
    b = torch.randn(dim, generator=g) * 0.3
    with torch.no_grad():
        ln.weight.copy_(w)
        ln.bias.copy_(b)
        ln_out = ln(x)
    act_x = torch.randn(3, 29, generator=g) * 4.0
    act_x[0, :4] = torch.tensor([0.0, 25.0, -25.0, 1e-7])
    with open(os.path.join(d, "layernorm.bin"), "wb") as f:  # x (4, 40), w, b (40), LayerNorm(x); x (3, 29), gelu_new
        for t in [x, w, b, ln_out, act_x, NewGELUActivation()(act_x)]:
            f.write(t.contiguous().float().numpy().astype("<f4").tobytes())

    print("wrote kernels")


def pack_corpus(corpus_dir, out_path):
    """Packs a libFuzzer corpus folder (after -merge=1) into one file the fuzz ctests replay: records of
    a 4-byte little-endian length and the input's bytes, in file-name order."""
    names = sorted(os.listdir(corpus_dir))
    with open(out_path, "wb") as f:
        for name in names:
            with open(os.path.join(corpus_dir, name), "rb") as g:
                data = g.read()
            f.write(struct.pack("<I", len(data)) + data)
    print(f"packed {len(names)} inputs into {out_path}")


def make_readable(folder):
    """The safetensors writer creates files 0600; committed fixtures should be 0644."""
    for dirpath, _, files in os.walk(folder):
        for name in files:
            os.chmod(os.path.join(dirpath, name), 0o644)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "engine"))
    ap.add_argument("--pack-corpus", nargs=2, metavar=("CORPUS_DIR", "NAME"),
                    help="pack a merged libFuzzer corpus into <out>/NAME.corpus (fuzz_safetensors or fuzz_hf_config)")
    ap.add_argument("--only", choices=["safetensors", "configs", "rope", "kernels"], action="append")
    args = ap.parse_args()
    if args.pack_corpus:
        pack_corpus(args.pack_corpus[0], os.path.join(args.out, args.pack_corpus[1] + ".corpus"))
        make_readable(args.out)
        return
    todo = args.only or ["safetensors", "configs", "rope", "kernels"]
    if "safetensors" in todo:
        make_safetensors(args.out)
    if "configs" in todo:
        make_configs(args.out)
    if "rope" in todo:
        make_rope(args.out)
    if "kernels" in todo:
        make_kernels(args.out)
    make_readable(args.out)


if __name__ == "__main__":
    sys.exit(main())
