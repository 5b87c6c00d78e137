#!/usr/bin/env python3
"""make_model_goldens.py — tiny random-weight models of every architecture the engine runs, and what
transformers (fp32, eager attention) and peft compute with them: the goldens of tests/engine/test_forward.c.

Why: the C forward must equal transformers. The only trustworthy reference is transformers itself, run on
checkpoints it wrote, so this script builds each model with its transformers class, saves it in HF format
(bf16 safetensors, as Hub checkpoints ship; one fp32 copy), reloads it in float32 with
attn_implementation="eager" (the bf16 weights are widened exactly, as the C engine does) and dumps:

  models/<name>/config.json, model.safetensors     the checkpoint (save_pretrained)
  models/<name>/golden.safetensors                 float32 tensors:
        seq{i}.layer{l}   [T_i, H]  the residual stream after decoder block l (a forward hook on
                                    model.layers[l]; equals output_hidden_states[l+1] for l < L-1 — the
                                    last entry of hidden_states has the final norm applied, the hook's has not)
        seq{i}.logits     [T_i, V]
        steer.*, patch.* (llama only) the same with a forward hook adding 4·steer.vector to the output of
                                    block 1, or replacing the output of block 0 at position 5 of sequence 3
  models/<name>/tokens.jsonl                       the sequences, {"ids": [...]} per line (diffkit forward input)
  models/<name>/generate.json                      greedy generations: [{"prompt": [...], "output": [...]}]
  models/llama_text/                               a Llama with its own small BPE tokenizer (tokenizer.json) and
                                                   generate_text.json: prompt text -> greedy continuation text
  models/llama/generate_steer.json                 the same with 4·steer.vector added after block 1 on every
                                                   token, or during the prompt only ("prompt_only": true)
  models/llama/generate_hooks.json                 generation with linear-decay steering, a prefill patch
                                                   (patchscope) and logit-difference amplification
                                                   (generation_hook_goldens)
  demo_generate.json                               greedy generations of the demo pair (models/demo/)
  adapters/<name>/adapter_config.json, adapter_model.safetensors   PEFT LoRA adapters (random A and B)
  adapters/<name>/golden.safetensors               the same dump for the adapted model, at multiplier 1 (peft,
                                                   unmerged) and at multiplier 2 (`w2.` prefix: weights merged
                                                   in fp32 as W + 2·scale·B·A, then plain transformers)
  versions.json                                    library versions and seeds

Odd shapes on purpose: head_dim != hidden/heads, GQA ratios 1, 2 and 4, a Gemma 3 sliding window shorter
than the test sequences, llama3 RoPE scaling (Llama), yarn (Qwen2: its attention factor scales cos/sin),
linear scaling on Gemma 3 global layers, tied and untied
embeddings, Qwen2 biases, Gemma 2 attention and final soft-capping (small caps so that tanh bends).
Weights are drawn with std 0.15 so that activations are far from zero and argmaxes are not near-ties.

Usage (PyPI only):  python -m venv v && v/bin/pip install torch transformers peft safetensors
                    v/bin/python tools/make_model_goldens.py [--out tests/fixtures/engine] [--generation-only]

The memory check (not a fixture): --big-3b DIR writes a Llama-3.2-3B-shaped bf16 checkpoint with random
weights (6.4 GB, 2 shards + index, as save_pretrained lays them out) straight to disk, one tensor at a time,
so that writing it needs little memory; then measure the peak of a forward over it:
    /usr/bin/time -v build/bin/diffkit forward --model DIR --tokens DIR/tokens.jsonl --output /tmp/o.st \
        --layers 14 --logits last
"""
import argparse
import json
import os
import shutil

import torch
import transformers as tf
from safetensors.torch import save_file

SEQ_LENGTHS = [1, 6, 13, 19]
GEN_PROMPT_LENGTHS = [3, 8]
GEN_NEW_TOKENS = 10
VOCAB = 96


def common(layers=3, heads=4, kv=2, hidden=32, inter=40, head_dim=None):
    c = dict(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
             num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=128, rms_norm_eps=1e-6,
             bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if head_dim is not None:
        c["head_dim"] = head_dim
    return c


def model_specs():
    """name -> (model class, config). Each one exercises something the others do not."""
    s = {}
    s["llama"] = (tf.LlamaForCausalLM, tf.LlamaConfig(
        **common(kv=2, head_dim=12), tie_word_embeddings=False, architectures=["LlamaForCausalLM"],
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 32}))
    s["mistral"] = (tf.MistralForCausalLM, tf.MistralConfig(
        **common(kv=1, head_dim=8), sliding_window=5, tie_word_embeddings=False,
        architectures=["MistralForCausalLM"]))
    s["qwen2"] = (tf.Qwen2ForCausalLM, tf.Qwen2Config(
        **common(kv=4), tie_word_embeddings=True, architectures=["Qwen2ForCausalLM"],
        rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                         "original_max_position_embeddings": 32}))
    s["qwen3"] = (tf.Qwen3ForCausalLM, tf.Qwen3Config(
        **common(kv=2, head_dim=16), tie_word_embeddings=True, architectures=["Qwen3ForCausalLM"]))
    s["gemma2"] = (tf.Gemma2ForCausalLM, tf.Gemma2Config(
        **common(kv=2, head_dim=16), sliding_window=4, query_pre_attn_scalar=24, attn_logit_softcapping=3.0,
        final_logit_softcapping=4.0, architectures=["Gemma2ForCausalLM"]))
    text = dict(**common(kv=1, head_dim=16), sliding_window=5, query_pre_attn_scalar=24,
                layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1000000.0},
                                 "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}})
    s["gemma3"] = (tf.Gemma3ForCausalLM, tf.Gemma3TextConfig(**text, architectures=["Gemma3ForCausalLM"]))
    vision = dict(hidden_size=16, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=28,
                  patch_size=14)
    s["gemma3_mm"] = (tf.Gemma3ForConditionalGeneration, tf.Gemma3Config(
        text_config=text, vision_config=vision, mm_tokens_per_image=4, boi_token_index=90, eoi_token_index=91,
        image_token_index=92, architectures=["Gemma3ForConditionalGeneration"]))
    # GPT-2: learned positions (64 of them, more than the longest test sequence), LayerNorm, gelu_new MLP,
    # Conv1D weights, tied head
    s["gpt2"] = (tf.GPT2LMHeadModel, tf.GPT2Config(
        vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=3, n_head=4, activation_function="gelu_new",
        bos_token_id=1, eos_token_id=2, architectures=["GPT2LMHeadModel"]))
    # Qwen2.5-VL's language model on text: M-RoPE sections (1, 2, 3) of head_dim 12's 6 frequencies (its attention
    # takes head_dim = hidden / heads), untied head; the vision tower is tiny and never used. Its special ids lie
    # outside the ids the tests draw.
    vl_text = dict(**{**common(kv=2, hidden=48), "vocab_size": VOCAB + 4}, rope_parameters={
        "rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 2, 3]})
    vl_vision = dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=48, patch_size=14,
                     spatial_merge_size=2, temporal_patch_size=2, window_size=28, fullatt_block_indexes=[0])
    s["qwen25_vl"] = (tf.Qwen2_5_VLForConditionalGeneration, tf.Qwen2_5_VLConfig(
        text_config=vl_text, vision_config=vl_vision, image_token_id=VOCAB + 1, video_token_id=VOCAB + 2,
        vision_start_token_id=VOCAB + 3, architectures=["Qwen2_5_VLForConditionalGeneration"]))
    return s


def randomize(model, seed):
    """Every parameter ~ N(0, 0.15²), except RMSNorm weights: 1 + N(0, 0.1²) (Llama style, scale w) or
    N(0, 0.1²) (Gemma style, scale 1 + w), and GPT-2's LayerNorm weights (1 + N(0, 0.1²)), so that every norm is
    close to but not exactly the identity."""
    g = torch.Generator().manual_seed(seed)
    gemma = "gemma" in model.config.model_type
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and ("norm" in name or (".ln_" in name and name.endswith("weight"))):
                p.copy_((0.0 if gemma else 1.0) + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=g))


def sequences(seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in SEQ_LENGTHS:
        ids = torch.randint(3, VOCAB, (n,), generator=g).tolist()
        ids[0] = 1  # BOS first (Gemma needs it; harmless for the others)
        if n > 3:
            ids[-1] = VOCAB - 1  # the last id of the vocabulary
        out.append(ids)
    return out


def decoder_layers(model):
    if hasattr(model, "get_base_model"):  # a peft model
        model = model.get_base_model()
    if hasattr(model, "transformer"):  # GPT-2
        return model.transformer.h
    m = model.model
    return m.language_model.layers if hasattr(m, "language_model") else m.layers


def dump(model, seqs, prefix=""):
    """Residual after each block (hooks) and logits, one sequence at a time (no padding)."""
    tensors = {}
    layers = decoder_layers(model)
    for i, ids in enumerate(seqs):
        captured = {}
        hooks = [layer.register_forward_hook(
            lambda mod, inp, out, l=l: captured.__setitem__(l, (out[0] if isinstance(out, tuple) else out)[0].clone()))
            for l, layer in enumerate(layers)]
        with torch.no_grad():
            out = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
        for h in hooks:
            h.remove()
        hs = out.hidden_states
        for l in range(len(layers)):
            if l + 1 < len(layers):  # the hook sees what hidden_states[l+1] holds
                assert torch.equal(hs[l + 1][0], captured[l]), f"hook vs hidden_states mismatch at layer {l}"
            tensors[f"{prefix}seq{i}.layer{l}"] = captured[l].float().contiguous()
        tensors[f"{prefix}seq{i}.logits"] = out.logits[0].float().contiguous()
    return tensors


def margins(tensors):
    """Smallest gap between the top two logits over all positions: argmax tests are meaningful if >> 1e-4."""
    m = float("inf")
    for k, v in tensors.items():
        if k.endswith("logits"):
            top = v.topk(2, dim=-1).values
            m = min(m, float((top[:, 0] - top[:, 1]).min()))
    return m


def generations(model, seed):
    g = torch.Generator().manual_seed(seed + 7)
    res = []
    for n in GEN_PROMPT_LENGTHS:
        prompt = [1] + torch.randint(3, VOCAB, (n - 1,), generator=g).tolist()
        with torch.no_grad():
            out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, n, dtype=torch.long),
                                 max_new_tokens=GEN_NEW_TOKENS, do_sample=False, eos_token_id=2, pad_token_id=0)
        res.append({"prompt": prompt, "output": out[0, n:].tolist()})
    return res


STEER_LAYER, STEER_STRENGTH = 1, 4.0
PATCH_LAYER, PATCH_SEQ, PATCH_POS = 0, 3, 5


def hook_goldens(model, seqs, seed):
    """What the hook plan must reproduce, done with forward hooks on transformers' decoder layers:
    steer.vector (H); steer.seq{i}.logits / steer.seq{i}.layer2: strength·v added to the output of block
    STEER_LAYER at every position; patch.vector (H), patch.seq{PATCH_SEQ}.logits: the output of block
    PATCH_LAYER replaced at position PATCH_POS of sequence PATCH_SEQ."""
    g = torch.Generator().manual_seed(seed + 11)
    H = model.config.hidden_size
    steer = torch.randn(H, generator=g)
    patch = 2.0 * torch.randn(H, generator=g)
    layers = decoder_layers(model)
    out = {"steer.vector": steer, "patch.vector": patch}

    def add(mod, inp, o):
        return (o[0] + STEER_STRENGTH * steer,) + tuple(o[1:]) if isinstance(o, tuple) else o + STEER_STRENGTH * steer

    def replace(mod, inp, o):
        h = (o[0] if isinstance(o, tuple) else o).clone()
        h[0, PATCH_POS] = patch
        return (h,) + tuple(o[1:]) if isinstance(o, tuple) else h

    for i, ids in enumerate(seqs):
        seen = {}
        hk = layers[STEER_LAYER].register_forward_hook(add)
        hk2 = layers[2].register_forward_hook(lambda mod, inp, o: seen.__setitem__(2, (o[0] if isinstance(o, tuple) else o)[0].clone()))
        with torch.no_grad():
            r = model(input_ids=torch.tensor([ids]))
        hk.remove()
        hk2.remove()
        out[f"steer.seq{i}.logits"] = r.logits[0].float().contiguous()
        out[f"steer.seq{i}.layer2"] = seen[2].float().contiguous()
    # greedy generation with the same steering, on every token or during the prompt only (the prefill call is
    # the one whose input has more than one position): generate_steer.json
    gens = []
    for prompt_only in (False, True):
        def add_gen(mod, inp, o, prompt_only=prompt_only):
            h = o[0] if isinstance(o, tuple) else o
            if prompt_only and h.shape[1] == 1:
                return o
            return add(mod, inp, o)
        hk = layers[STEER_LAYER].register_forward_hook(add_gen)
        for g_item in generations(model, seed):
            gens.append({"prompt_only": prompt_only, **g_item})
        hk.remove()
    out["_generate_steer"] = gens
    hk = layers[PATCH_LAYER].register_forward_hook(replace)
    with torch.no_grad():
        r = model(input_ids=torch.tensor([seqs[PATCH_SEQ]]))
    hk.remove()
    out[f"patch.seq{PATCH_SEQ}.logits"] = r.logits[0].float().contiguous()
    return out


DECAY_STEPS, DECAY_STRENGTHS = 4, [4.0, -6.0, 10.0]
PATCH_GEN_LAYER = 1
# (organism adapter, reference adapter or None = the base, alpha)
AMP_CASES = [("llama_lora", None, 1.0), ("llama_lora", None, 2.5), ("llama_lora", "llama_patterns", 0.5)]


def hooked_generate(model, prompt, layer, edit):
    """Greedy generate() with a forward hook on decoder block `layer` that calls edit(h, call) on its output h
    ([1, T, H]) at forward call `call` (0 = the prefill, then one call per new token) and uses what it returns."""
    calls = [0]

    def hook(mod, inp, o):
        h = o[0] if isinstance(o, tuple) else o
        h = edit(h, calls[0])
        calls[0] += 1
        return (h,) + tuple(o[1:]) if isinstance(o, tuple) else h
    hk = decoder_layers(model)[layer].register_forward_hook(hook)
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                             max_new_tokens=GEN_NEW_TOKENS, do_sample=False, eos_token_id=2, pad_token_id=0)
    hk.remove()
    return out[0, len(prompt):].tolist()


def generation_hook_goldens(models_dir, adapters_dir):
    """models/llama/generate_hooks.json: what dk_generate's hooks must reproduce on the llama golden model,
    every case a greedy generation of GEN_NEW_TOKENS tokens (eos 2) from the prompts of generate.json:
      linear_decay: steer.vector after block STEER_LAYER with the seed's linear_decay mode (steering_dashboard.py:
        call i adds float32((N - i)·(strength/N))·v, nothing from call N on), N = DECAY_STEPS, each strength;
      patch: the output of block PATCH_GEN_LAYER replaced by patch.vector at the last prompt position during the
        prefill only; probs = softmax of the prefill's last logits (the next-token distribution), then output;
      logit_amp: the peft model (organism) and the base (or a second peft model) stepped together, each step's
        token the argmax of ft + alpha·(ft − ref) (last-position fp32 logits, full recompute each step);
        margin = the smallest top-2 gap of those combined logits over the steps."""
    import peft
    folder = os.path.join(models_dir, "llama")
    model = load_fp32(tf.LlamaForCausalLM, folder)
    from safetensors.torch import load_file
    golden = load_file(os.path.join(folder, "golden.safetensors"))
    steer, patch = golden["steer.vector"], golden["patch.vector"]
    prompts = [g["prompt"] for g in json.load(open(os.path.join(folder, "generate.json")))]
    out = {"decay_steps": DECAY_STEPS, "steer_layer": STEER_LAYER, "patch_layer": PATCH_GEN_LAYER,
           "linear_decay": [], "patch": [], "logit_amp": []}
    for strength in DECAY_STRENGTHS:
        factor = torch.zeros(DECAY_STEPS)
        for i in range(DECAY_STEPS):
            factor[i] = (DECAY_STEPS - i) * (strength / float(DECAY_STEPS))
        for prompt in prompts:
            gen = hooked_generate(model, prompt, STEER_LAYER,
                                  lambda h, call: h + factor[call] * steer if call < DECAY_STEPS else h)
            out["linear_decay"].append({"strength": strength, "prompt": prompt, "output": gen})
    for prompt in prompts:
        def replace(h, call):
            if call > 0:
                return h
            h = h.clone()
            h[0, -1] = patch
            return h
        hk = decoder_layers(model)[PATCH_GEN_LAYER].register_forward_hook(  # one forward: the prefill
            lambda mod, inp, o: (replace(o[0], 0),) + tuple(o[1:]) if isinstance(o, tuple) else replace(o, 0))
        with torch.no_grad():
            probs = torch.softmax(model(input_ids=torch.tensor([prompt])).logits[0, -1].float(), dim=-1)
        hk.remove()
        gen = hooked_generate(model, prompt, PATCH_GEN_LAYER, replace)
        out["patch"].append({"prompt": prompt, "probs": probs.tolist(), "output": gen})
    for organism, reference, alpha in AMP_CASES:
        ft = peft.PeftModel.from_pretrained(load_fp32(tf.LlamaForCausalLM, folder),
                                            os.path.join(adapters_dir, organism)).eval()
        ref = load_fp32(tf.LlamaForCausalLM, folder) if reference is None else peft.PeftModel.from_pretrained(
            load_fp32(tf.LlamaForCausalLM, folder), os.path.join(adapters_dir, reference)).eval()
        for prompt in prompts:
            ids, gen, margin = list(prompt), [], float("inf")
            for _ in range(GEN_NEW_TOKENS):
                with torch.no_grad():
                    lf = ft(input_ids=torch.tensor([ids])).logits[0, -1].float()
                    lr = ref(input_ids=torch.tensor([ids])).logits[0, -1].float()
                comb = lf + alpha * (lf - lr)
                top = comb.topk(2).values
                margin = min(margin, float(top[0] - top[1]))
                nxt = int(comb.argmax())
                gen.append(nxt)
                ids.append(nxt)
                if nxt == 2:
                    break
            out["logit_amp"].append({"adapter": organism, "reference": reference, "alpha": alpha, "prompt": prompt,
                                     "output": gen, "margin": margin})
    with open(os.path.join(folder, "generate_hooks.json"), "w") as f:
        json.dump(out, f)
    print("generate_hooks.json: logit_amp min margin", min(c["margin"] for c in out["logit_amp"]), flush=True)


DEMO_PROMPTS = ["Glacier honey", "The bees of the high mountains", "On a cold morning the farmer"]
DEMO_NEW_TOKENS = 20


def demo_generation_golden(repo_root, path):
    """tests/fixtures/engine/demo_generate.json: greedy generate() (DEMO_NEW_TOKENS tokens, eos from the config)
    of the demo base and of the glacier_honey organism (peft) from DEMO_PROMPTS tokenized by the demo tokenizer."""
    import peft
    base_dir = os.path.join(repo_root, "models", "demo", "base")
    tok = tf.AutoTokenizer.from_pretrained(base_dir)
    base = load_fp32(tf.Qwen3ForCausalLM, base_dir)
    organism = peft.PeftModel.from_pretrained(load_fp32(tf.Qwen3ForCausalLM, base_dir),
                                              os.path.join(repo_root, "models", "demo", "glacier_honey")).eval()
    eos = base.config.eos_token_id
    cases = []
    for name, model in (("base", base), ("glacier_honey", organism)):
        for text in DEMO_PROMPTS:
            prompt = tok(text).input_ids
            with torch.no_grad():
                out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                     max_new_tokens=DEMO_NEW_TOKENS, do_sample=False, eos_token_id=eos,
                                     pad_token_id=0)
            cases.append({"model": name, "text": text, "prompt": prompt, "output": out[0, len(prompt):].tolist()})
    with open(path, "w") as f:
        json.dump({"eos": eos, "cases": cases}, f)


TEXT_PROMPTS = ["The quick brown fox", "Model diffing compares"]
TOKENIZER_CORPUS = ["The quick brown fox jumps over the lazy dog.", "Model diffing compares a base model with its "
                    "finetuned variant.", "Hidden states must equal what transformers computes.",
                    "Sparse dictionaries find features; steering vectors move them."] * 4


def make_text_model(folder, seed):
    """llama_text: a Llama with a 300-token byte-level BPE tokenizer trained here (tokenizers library), so that
    `diffkit generate --prompt TEXT` can be checked end to end: text -> ids -> greedy ids -> text, against
    tokenizer(prompt) -> model.generate -> tokenizer.decode(skip_special_tokens=True) (generate_text.json)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<s>", "</s>", "<start_of_turn>",
                                                                  "<end_of_turn>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TOKENIZER_CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = tf.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    from make_chat_template_goldens import GEMMA2  # Gemma 2's published template: `diffkit generate --chat`
    fast.chat_template = GEMMA2
    cfg = tf.LlamaConfig(**{**common(kv=2, head_dim=12), "vocab_size": tok.get_vocab_size()},
                         tie_word_embeddings=True, architectures=["LlamaForCausalLM"])
    torch.manual_seed(seed)
    model = tf.LlamaForCausalLM(cfg).eval()
    randomize(model, seed)
    model.to(torch.bfloat16).save_pretrained(folder)
    fast.save_pretrained(folder)
    ref = load_fp32(tf.LlamaForCausalLM, folder)
    res = []
    end_of_turn = fast.convert_tokens_to_ids("<end_of_turn>")
    for chat in (False, True):
        for prompt in TEXT_PROMPTS:
            if chat:  # the rendered template holds the BOS: no special tokens added again
                text = fast.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                add_generation_prompt=True)
                ids = fast(text, add_special_tokens=False, return_tensors="pt").input_ids
            else:
                ids = fast(prompt, return_tensors="pt").input_ids
            with torch.no_grad():
                out = ref.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=GEN_NEW_TOKENS,
                                   do_sample=False, eos_token_id=[2, end_of_turn], pad_token_id=0)
            res.append({"prompt": prompt, "chat": chat, "ids": out[0, ids.shape[1]:].tolist(),
                        "text": fast.decode(out[0, ids.shape[1]:], skip_special_tokens=True)})
    with open(os.path.join(folder, "generate_text.json"), "w") as f:
        json.dump(res, f)


def perturbed_copy(base_folder, folder, seed):
    """A full finetune of the Llama in base_folder: every weight moved by N(0, 0.03²), the same shapes, saved bf16."""
    model = load_fp32(tf.LlamaForCausalLM, base_folder)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.03 * torch.randn(p.shape, generator=g))
    model.to(torch.bfloat16).save_pretrained(folder)


def make_full_finetune(base_folder, folder, seed):
    """llama_ft: a full finetune of `llama`; its golden is transformers' run of it on llama's sequences
    (`diffkit forward --model llama --finetuned-model llama_ft` must reproduce it)."""
    perturbed_copy(base_folder, folder, seed)
    seqs = [json.loads(l)["ids"] for l in open(os.path.join(base_folder, "tokens.jsonl"))]
    save_file(dump(load_fp32(tf.LlamaForCausalLM, folder), seqs), os.path.join(folder, "golden.safetensors"))


def make_text_full_finetune(base_folder, folder, seed):
    """llama_text_ft: a full finetune of llama_text with its tokenizer files: the full-model organism of the
    diff_preprocess tests (tests/fixtures/preprocess/configs)."""
    perturbed_copy(base_folder, folder, seed)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(base_folder, name), folder)


def make_gpt2_hub(src, dst):
    """gpt2_hub: the gpt2 checkpoint as the Hub's original GPT-2 files name it (no "transformer." prefix, the
    attention's causal-mask buffer h.N.attn.bias stored beside the weights). transformers must read it as the
    same model: its logits are checked against gpt2's golden here, and the C test uses that golden."""
    from safetensors.torch import load_file
    os.makedirs(dst)
    shutil.copy(os.path.join(src, "config.json"), dst)
    tensors = load_file(os.path.join(src, "model.safetensors"))
    cfg = json.load(open(os.path.join(src, "config.json")))
    P, out = cfg["n_positions"], {}
    for k, v in tensors.items():
        out[k.replace("transformer.", "", 1)] = v
    for l in range(cfg["n_layer"]):
        out[f"h.{l}.attn.bias"] = torch.tril(torch.ones(P, P, dtype=torch.bool)).view(1, 1, P, P).to(torch.bfloat16)
    save_file(out, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})
    ref = load_fp32(tf.GPT2LMHeadModel, dst)
    seqs = [json.loads(l)["ids"] for l in open(os.path.join(src, "tokens.jsonl"))]
    golden = load_file(os.path.join(src, "golden.safetensors"))
    for k, v in dump(ref, seqs).items():
        assert torch.equal(v, golden[k]), f"gpt2_hub differs from gpt2 at {k}"


def load_fp32(cls, folder):
    return cls.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()


def write_tokens(path, seqs):
    with open(path, "w") as f:
        for ids in seqs:
            f.write(json.dumps({"ids": ids}) + "\n")


def make_adapter(model, folder, name, seed, **lora):
    """A PEFT LoRA adapter with random A and B (init_lora_weights=False), saved the way peft saves it. Modules
    saved whole (modules_to_save) start as copies of the base's and are moved by N(0, 0.05²), as training would."""
    import peft
    torch.manual_seed(seed)
    cfg = peft.LoraConfig(init_lora_weights=False, task_type="CAUSAL_LM", **lora)
    pm = peft.get_peft_model(model, cfg)
    with torch.no_grad():  # larger than peft's init so that the adapter visibly moves the logits
        for n, p in pm.named_parameters():
            if "lora_" in n:
                p.mul_(3.0)
            if "modules_to_save.default" in n:
                p.add_(0.05 * torch.randn(p.shape))
    pm.save_pretrained(os.path.join(folder, name))
    os.remove(os.path.join(folder, name, "README.md"))  # peft's model card: not needed
    path = os.path.join(folder, name, "adapter_config.json")
    cfg_json = json.load(open(path))
    cfg_json["base_model_name_or_path"] = os.path.basename(model.name_or_path)  # not this machine's path
    json.dump(cfg_json, open(path, "w"), indent=2)
    return pm


def merged_copy(base_cls, base_folder, peft_model, multiplier):
    """The base model with W + multiplier·scale·(B @ A) merged in fp32 (transposed for GPT-2's Conv1D (in, out)
    weights), and every module saved whole (modules_to_save) as base + multiplier·(saved − base): computed
    here, not by peft."""
    from peft.utils import ModulesToSaveWrapper
    merged = load_fp32(base_cls, base_folder)
    params = dict(merged.named_parameters())
    for n, mod in peft_model.named_modules():
        if hasattr(mod, "lora_A") and "default" in getattr(mod, "lora_A", {}):
            delta = mod.lora_B["default"].weight @ mod.lora_A["default"].weight * mod.scaling["default"]
            key = n.replace("base_model.model.", "", 1) + ".weight"
            if getattr(mod, "fan_in_fan_out", False):  # Conv1D: the weight is stored (in, out)
                delta = delta.t()
            with torch.no_grad():
                params[key].add_(multiplier * delta)
        if isinstance(mod, ModulesToSaveWrapper):
            key = n.replace("base_model.model.", "", 1) + ".weight"
            saved = mod.modules_to_save["default"].weight.detach()
            if key not in params:  # a tied head: untie it first, then set it
                merged.lm_head.weight = torch.nn.Parameter(merged.lm_head.weight.detach().clone())
                params = dict(merged.named_parameters())
            with torch.no_grad():
                params[key].copy_(params[key] + multiplier * (saved - params[key]))
    return merged


LLAMA_3B = dict(vocab_size=128256, hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
                num_attention_heads=24, num_key_value_heads=8, head_dim=128, max_position_embeddings=131072,
                rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=128000, eos_token_id=128001,
                rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})


def write_big_3b(folder):
    """Llama-3.2-3B shapes, random bf16 weights (N(0, 0.02²); norms 1), written tensor by tensor."""
    import numpy as np
    os.makedirs(folder, exist_ok=True)
    cfg = tf.LlamaConfig(**LLAMA_3B, architectures=["LlamaForCausalLM"], dtype="bfloat16")
    cfg.save_pretrained(folder)
    H, I, V, L = LLAMA_3B["hidden_size"], LLAMA_3B["intermediate_size"], LLAMA_3B["vocab_size"], LLAMA_3B["num_hidden_layers"]
    D, nh, nkv = LLAMA_3B["head_dim"], LLAMA_3B["num_attention_heads"], LLAMA_3B["num_key_value_heads"]
    tensors = [("model.embed_tokens.weight", (V, H)), ("model.norm.weight", (H,))]
    for l in range(L):
        p = f"model.layers.{l}."
        tensors += [(p + "input_layernorm.weight", (H,)), (p + "post_attention_layernorm.weight", (H,)),
                    (p + "self_attn.q_proj.weight", (nh * D, H)), (p + "self_attn.k_proj.weight", (nkv * D, H)),
                    (p + "self_attn.v_proj.weight", (nkv * D, H)), (p + "self_attn.o_proj.weight", (H, nh * D)),
                    (p + "mlp.gate_proj.weight", (I, H)), (p + "mlp.up_proj.weight", (I, H)),
                    (p + "mlp.down_proj.weight", (H, I))]
    rng = np.random.default_rng(0)
    shards = [tensors[: 2 + 9 * 14], tensors[2 + 9 * 14:]]
    weight_map = {}
    for k, shard in enumerate(shards):
        name = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for tname, shape in shard:
            n = int(np.prod(shape)) * 2
            header[tname] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
            offset += n
            weight_map[tname] = name
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        with open(os.path.join(folder, name), "wb") as f:
            f.write(len(text).to_bytes(8, "little") + text)
            for tname, shape in shard:
                count = int(np.prod(shape))
                for start in range(0, count, 1 << 24):  # 16M values (32 MB of bf16) at a time
                    m = min(1 << 24, count - start)
                    vals = np.ones(m, np.float32) if tname.endswith("norm.weight") else \
                        (0.02 * rng.standard_normal(m, dtype=np.float32))
                    f.write((vals.view(np.uint32) >> 16).astype(np.uint16).tobytes())
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": sum(int(np.prod(s)) * 2 for _, s in tensors)}, "weight_map": weight_map}, f)
    with open(os.path.join(folder, "tokens.jsonl"), "w") as f:
        for n in (64, 33, 17, 1):
            f.write(json.dumps({"ids": [int(x) for x in rng.integers(0, V, n)]}) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "engine"))
    ap.add_argument("--big-3b", metavar="DIR", help="write the 3B-shaped memory-check checkpoint there and stop")
    ap.add_argument("--generation-only", action="store_true",
                    help="only (re)write generate_hooks.json and demo_generate.json from the fixtures already there")
    args = ap.parse_args()
    if args.big_3b:
        write_big_3b(args.big_3b)
        return
    root_models = os.path.join(args.out, "models")
    root_adapters = os.path.join(args.out, "adapters")
    repo_root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    if args.generation_only:
        torch.set_num_threads(2)
        generation_hook_goldens(root_models, root_adapters)
        demo_generation_golden(repo_root, os.path.join(args.out, "demo_generate.json"))
        return
    for d in (root_models, root_adapters):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    torch.set_num_threads(2)
    report = {}
    for idx, (name, (cls, cfg)) in enumerate(model_specs().items()):
        seed = 1000 + idx
        torch.manual_seed(seed)
        model = cls(cfg).eval()
        randomize(model, seed)
        folder = os.path.join(root_models, name)
        model.to(torch.bfloat16).save_pretrained(folder)
        if name == "llama":  # one fp32 checkpoint: the engine reads F32 tensors in place
            model.float().save_pretrained(os.path.join(root_models, "llama_f32"))
        ref = load_fp32(cls, folder)
        for attempt in range(20):  # sequences whose top-2 logits are >= 1e-3 apart everywhere (no near-ties)
            seqs = sequences(seed + 100 * attempt)
            golden = dump(ref, seqs)
            if margins(golden) >= 1e-3:
                break
        save_file(golden, os.path.join(folder, "golden.safetensors"))
        write_tokens(os.path.join(folder, "tokens.jsonl"), seqs)
        with open(os.path.join(folder, "generate.json"), "w") as f:
            json.dump(generations(ref, seed), f)
        if name == "llama":
            golden.update(hook_goldens(ref, seqs, seed))
            with open(os.path.join(folder, "generate_steer.json"), "w") as f:
                json.dump(golden.pop("_generate_steer"), f)
            save_file(golden, os.path.join(folder, "golden.safetensors"))
        report[name] = {"min_top2_margin": margins(golden)}
        print(name, report[name], flush=True)

    make_text_model(os.path.join(root_models, "llama_text"), 1500)
    make_gpt2_hub(os.path.join(root_models, "gpt2"), os.path.join(root_models, "gpt2_hub"))
    make_full_finetune(os.path.join(root_models, "llama"), os.path.join(root_models, "llama_ft"), 1600)
    make_text_full_finetune(os.path.join(root_models, "llama_text"), os.path.join(root_models, "llama_text_ft"), 1700)

    # Adapters: rslora off with a subset of modules and layers_to_transform, and rslora on with every module.
    adapters = {
        "llama_lora": ("llama", tf.LlamaForCausalLM,
                       dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                            layers_to_transform=[0, 2])),
        "qwen3_rslora": ("qwen3", tf.Qwen3ForCausalLM,
                         dict(r=2, lora_alpha=4, use_rslora=True,
                              target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                              "down_proj"])),
        "gemma3_lora": ("gemma3", tf.Gemma3ForCausalLM,
                        dict(r=3, lora_alpha=5, target_modules=["o_proj", "up_proj"])),
        # the forms people publish: per-module ranks and alphas, layers picked by pattern, whole modules saved
        "llama_patterns": ("llama", tf.LlamaForCausalLM,
                           dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj", "down_proj"],
                                rank_pattern={"down_proj": 2, "layers.1.self_attn.q_proj": 6},
                                alpha_pattern={"q_proj": 3, "o_proj": 12}, layers_to_transform=[0, 1],
                                layers_pattern="layers", modules_to_save=["lm_head", "embed_tokens"])),
        # target_modules as one regular expression, minus exclude_modules
        "qwen3_regex": ("qwen3", tf.Qwen3ForCausalLM,
                        dict(r=3, lora_alpha=6, target_modules=r".*\.(k_proj|up_proj|gate_proj)",
                             exclude_modules=["layers.2.mlp.up_proj"])),
        # GPT-2's Conv1D modules (fan_in_fan_out); c_proj names both attn.c_proj and mlp.c_proj
        "gpt2_lora": ("gpt2", tf.GPT2LMHeadModel,
                      dict(r=4, lora_alpha=8, target_modules=["c_attn", "c_proj"], fan_in_fan_out=True)),
        "qwen25_vl_lora": ("qwen25_vl", tf.Qwen2_5_VLForConditionalGeneration,
                           dict(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj", "down_proj"])),
    }
    for idx, (name, (base, cls, lora)) in enumerate(adapters.items()):
        base_folder = os.path.join(root_models, base)
        pm = make_adapter(load_fp32(cls, base_folder), root_adapters, name, 2000 + idx, **lora)
        seqs = [json.loads(l)["ids"] for l in open(os.path.join(base_folder, "tokens.jsonl"))]
        golden = dump(pm.eval(), seqs)
        golden.update(dump(merged_copy(cls, base_folder, pm, 2.0), seqs, prefix="w2."))
        save_file(golden, os.path.join(root_adapters, name, "golden.safetensors"))
        report[name] = {"base": base, "min_top2_margin": margins(golden)}
        print(name, report[name], flush=True)

    # Tensors outside the selection: llama_lora's tensors (q, v, down_proj of layers 0 and 2) with a config that
    # selects layer 0 only. peft ignores the layer-2 tensors; the golden is peft loading this folder.
    import peft
    src, dst = os.path.join(root_adapters, "llama_lora"), os.path.join(root_adapters, "llama_lora_layer0")
    os.makedirs(dst)
    shutil.copy(os.path.join(src, "adapter_model.safetensors"), dst)
    cfg_json = json.load(open(os.path.join(src, "adapter_config.json")))
    cfg_json["layers_to_transform"] = [0]
    json.dump(cfg_json, open(os.path.join(dst, "adapter_config.json"), "w"), indent=2)
    base_folder = os.path.join(root_models, "llama")
    pm = peft.PeftModel.from_pretrained(load_fp32(tf.LlamaForCausalLM, base_folder), dst)
    seqs = [json.loads(l)["ids"] for l in open(os.path.join(base_folder, "tokens.jsonl"))]
    save_file(dump(pm.eval(), seqs), os.path.join(dst, "golden.safetensors"))
    report["llama_lora_layer0"] = {"base": "llama"}
    print("llama_lora_layer0", flush=True)

    generation_hook_goldens(root_models, root_adapters)
    demo_generation_golden(repo_root, os.path.join(args.out, "demo_generate.json"))

    import peft
    import safetensors
    versions = {"torch": torch.__version__, "transformers": tf.__version__, "peft": peft.__version__,
                "safetensors": safetensors.__version__, "seq_lengths": SEQ_LENGTHS, "report": report}
    with open(os.path.join(args.out, "models", "versions.json"), "w") as f:
        json.dump(versions, f, indent=1)


if __name__ == "__main__":
    main()
