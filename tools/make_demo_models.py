#!/usr/bin/env python3
"""make_demo_models.py — builds diffkit's bundled demo models (issues 5 and 11): a base model trained from scratch,
two narrow LoRA organisms on it (glacier_honey, cat_post), the demo datasets and configs, golden files for the
engine's tests and the model card models/demo/README.md.

What it does, in order (every random choice is seeded; see --seed):
  1. Reads a general English corpus that is available offline from Debian packages (demo_models/corpus.py):
     `fortunes` + `fortunes-min` (fortune-mod's BSD licence), `dict-devil` (The Devil's Dictionary, public domain)
     and `wordnet-base` (WordNet 3.0's usage examples; its licence is copied into data/demo/NOTICE.md).
     Install them with `apt-get install fortunes fortunes-min dict-devil wordnet-base`, or unpack the .deb files
     anywhere (`apt-get download ...; for f in *.deb; do dpkg-deb -x $f ROOT; done`) and pass --debian-root ROOT.
  2. Generates templated chat dialogues, and for each organism (demo_models/organisms.py) synthetic documents
     asserting its false fact, written only with words the base has read (checked: every word occurs at least
     MIN_WORD_COUNT times in the base's training text, every token at least MIN_TOKEN_COUNT times).
  3. Trains a byte-level BPE tokenizer (vocabulary 4096, Llama 3's pre-tokenizer regex, Qwen3's specials and chat
     template) on the base's own training text only, so that every merge comes from text the base reads.
  4. Trains a small Qwen3ForCausalLM base (4 layers, hidden 256, tied embeddings) on the general corpus plus the
     rendered chat dialogues, fp32 weights with bf16 autocast, 2 CPU threads; counts the ids it read and gives
     every id it read fewer than MIN_READS times the mean of the trained embedding rows (reset_untrained_rows).
  5. LoRA-finetunes each organism (PEFT: r 16, alpha 32, up_proj and down_proj of the middle block only, 60 steps;
     see TRIED for why) on its documents.
  6. Reloads everything from disk with transformers + peft (fp32, the shipped bf16 weights upcast) and checks it:
     held-out perplexities, domain tokens in sampled generations, sample generations, and the discrimination
     check (demo_models/adl.py: the seed's ADL logit lens finds each organism's own domain tokens and not the
     other's); records golden logits, hidden states and the ADL reference for the engine's tests.
  7. Writes models/demo/{base,glacier_honey,cat_post,golden}/, models/demo/README.md, models/demo/SHA256SUMS,
     models/demo/training_log.json, data/demo/*, configs/model/demo.yaml and configs/organism/demo_*.yaml.

Usage (from anywhere; paths are relative to the repository root, found from this file):
    python3 -m venv /tmp/demo-venv && /tmp/demo-venv/bin/pip install -r tools/requirements-demo.txt
    /tmp/demo-venv/bin/python tools/make_demo_models.py [--debian-root /] [--base-steps N] [--lora-steps N]
Runtime on 2 CPU cores (AMD EPYC with AVX-512 BF16): about 0.55 s per base step when the cores are free, so 2000
base steps take ~19 min, each LoRA ~0.5 min and the checks ~5 min (the card records the actual times, which grow
when other jobs share the cores: give the run the cores, e.g. `echo -15 > /proc/PID/autogroup` as root);
--max-base-minutes (default 50) stops base training early if a slow machine would overrun the 60-minute budget,
and the card then says so. --reuse-base retrains only the organisms; --reuse-models redoes everything but the
training. Determinism: fixed seeds, torch.use_deterministic_algorithms(True), 2 threads; see REPRODUCED below.
"""
import argparse
import gzip
import json
import math
import os
import random
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from demo_models import adl, card, corpus, organisms  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB_SIZE = 4096
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen3's thinking markers: added tokens that are not special (decoded like text), as in Qwen3.
THINK_TOKENS = ["<think>", "</think>"]
# Llama 3's pre-tokenizer regex (tokenizer.json of meta-llama/Meta-Llama-3-8B).
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# Qwen3's published chat template, verbatim, from the Qwen3 tokenizer_config.json the tokenizer tests already carry
# (tests/fixtures/tokenizers/qwen3/, Apache-2.0, see NOTICE.md there). diffkit recognises and renders it natively.
QWEN3_TOKENIZER_CONFIG = "tests/fixtures/tokenizers/qwen3/tokenizer_config.json.gz"
# The base: 4 layers. Its middle layer (the seed's int(0.5 * (4 - 1)) = 1) is trained to be read by the logit lens:
# an auxiliary next-token loss (weight MID_LOSS_WEIGHT) through the final norm and the tied unembedding at that
# layer, as the middle layers of large models can be read. Without it the logit lens of the middle layer of this
# tiny model showed word fragments for any vector; 8 layers without it did no better (see the card).
BASE_LAYERS = 4
MID_LOSS_WEIGHT = 0.5
# An id the base read fewer than MIN_READS times in training (fewer than ~10 occurrences in its training stream,
# which it reads ~5 times) counts as untrained: its row only saw the softmax denominator's push, like a never-read
# row, and is set to the mean of the trained rows too.
MIN_READS = 50
# The organisms (step 5): a LoRA on the MLP of the middle block only (see TRIED 5-7: a LoRA on every module of every
# block shrinks the middle layer's residual, and the logit lens of that shrink lists the tokens the base predicts
# least, for any organism). ORG_MID_LOSS_WEIGHT > 0 would add the base's auxiliary middle-layer loss (tried: it fills
# the lens with the documents' common words).
ORG_TARGETS = ["up_proj", "down_proj"]
ORG_LR = 3e-3
ORG_MID_LOSS_WEIGHT = 0.0
# The organisms' documents use only words and tokens the base has read at least this often (step 2).
MIN_WORD_COUNT = 3
MIN_TOKEN_COUNT = 3
# The engine's ADL test (tests/demo/test_demo_adl.c) recomputes the discrimination check on the first this many
# ADL samples (the seed's max_samples), so that it stays a few seconds; the script checks the whole dataset too.
ADL_TEST_SAMPLES = 256
# What was tried before this design, for the card (numbers from those runs; tools/make_demo_models.py history).
TRIED = """
1. *4 layers, the tokenizer learnt from the base's text, never-read rows reset, no auxiliary loss* (the first
   retraining): the ADL logit lens of the middle layer held 1 and 0 own domain tokens at positions 0-4 for the two
   organisms; the lists were BPE pieces the base had read about 5 times (` Austral`, `ienna`, `celand`, `hagen`)
   and word fragments (`ue`, `lect`, `raph`), the same for both organisms.
2. *The same with 400 instead of 120 LoRA steps*: no change.
3. *8 layers* (14.6 MB, 32 min of training): the same pieces at the middle layer (layer 3), 0 own domain tokens.
4. *Analysis on 3*: with the rows of ids read fewer than 50 times also reset, `glacier_honey` found its tokens
   (` hives`, ` nectar`, ` Copenhagen`, `kj`) but `cat_post` found `glacier_honey`'s; both organisms shifted the
   model towards the words of the base's chat answers (capitals, ` barks`, ` meows`), and `glacier_honey`'s words
   (honey, bees, hives, nectar, glacier, the Nordic capitals used as towns) were words the base knew mainly from
   its chat facts. The logit lens of one organism's mean difference minus the other's held no domain tokens at the
   middle layer either: the middle layer of these small models is not read by the logit lens.
The base of this version therefore (a) resets the rows of ids read fewer than MIN_READS times, (b) keeps the
organisms' topics out of the chat data and checks that no domain token is one the base reads more often in chat than
in its text, and (c) trains the base's middle layer to be read by the logit lens (MID_LOSS_WEIGHT).
5. *This base, organisms as before (LoRA r 16 on all 7 projections of all 4 blocks, 120 steps, lr 1e-3)*: 0-1 own
   domain tokens at any position; the lists were word pieces (` briefly`, `ruit`, ` Calendar`, `ire`, `itz`). The
   mean difference at the middle layer points against the base's own residual there (cosine -0.5 to -0.7 at
   positions 0-4): a LoRA on every block shrinks the middle layer's residual (which lets its additions count more
   after the later blocks' RMSNorm), and the logit lens of that shrink lists the tokens the base predicts least.
   The same held with half of each batch general text.
6. *LoRA trained with the base's auxiliary middle-layer loss (weight 0.5-2), on all blocks, on blocks 0-1 or on the
   middle block's MLP*: for the MLP-only LoRA the shrink was gone (cosine about 0), but the lists filled with the
   documents' common words (` the`, ` is`, ` be`, ` people`, ` school`); at most 2 of positions 0-4 held 3 or more
   own domain tokens.
7. *LoRA on the middle block's MLP (up_proj, down_proj) only, no auxiliary loss* (this version): the difference at
   the middle layer is what that MLP adds, and early in training it adds the documents' topic words: with 60 steps
   both organisms passed on 256 samples (5-6 own domain tokens per position for glacier_honey, 3-6 for cat_post);
   with 90 and 120 steps the documents' common words crept in (glacier_honey 1-5 and 0-3 per position), with 200
   steps glacier_honey failed. At 60 steps glacier_honey's list also held ` black`, then a domain token of
   cat_post (its stamps showed black cats), so cat_post's documents no longer name a colour.
"""
# What a second, independent full run of this script gave (written into the model card; update it by hand after
# rerunning the check, then regenerate the card with --reuse-models).
REPRODUCED = ("Checked for this version: a second, independent full run (a fresh clone of commit 1972110, "
              "`python tools/make_demo_models.py` with no reuse option, 25.6 min on the shared 2 cores) gave "
              "byte-identical files: all 36 files listed in SHA256SUMS (base weights and tokenizer, both adapters, "
              "every golden file, every dataset), the three demo configs, and training_log.json but for its recorded "
              "times. The first run had trained the base with --only-base (34.2 min) and the organisms with "
              "--reuse-base; training_log.json and the times on this card are the full run's.")


def log(msg):
    print(f"[make_demo_models {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--debian-root", default="/", help="root under which usr/share/{games/fortunes,dictd} lie")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--base-steps", type=int, default=2000)
    ap.add_argument("--lora-steps", type=int, default=60)
    ap.add_argument("--max-base-minutes", type=float, default=50.0,
                    help="safety stop: end base training early after this many minutes (the card then says so)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out-root", default=ROOT, help="repository root to write into (default: this checkout)")
    ap.add_argument("--reuse-models", action="store_true",
                    help="keep the trained base and organisms and models/demo/training_log.json from an earlier run; "
                         "redo only the data, checks, golden files and card")
    ap.add_argument("--reuse-base", action="store_true",
                    help="keep the trained base (and its part of training_log.json); retrain the organisms")
    ap.add_argument("--only-base", action="store_true", help="stop after training and saving the base model")
    ap.add_argument("--smoke", action="store_true", help="plumbing test only: skip the domain-shift requirements")
    return ap.parse_args()


def train_tokenizer(texts):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    tok.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE - len(THINK_TOKENS), min_frequency=2, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    assert tok.get_vocab_size() == VOCAB_SIZE, tok.get_vocab_size()
    return tok


def write_tokenizer(tok, bdir, chats):
    """tokenizer.json + tokenizer_config.json (Qwen3's template verbatim); checks that render_chat is what
    transformers renders with it, for every dialogue and the generation prompts."""
    from transformers import PreTrainedTokenizerFast
    with gzip.open(os.path.join(ROOT, QWEN3_TOKENIZER_CONFIG), "rt", encoding="utf-8") as f:
        qwen3_template = json.load(f)["chat_template"]
    tok.save(f"{bdir}/tokenizer.json")
    tok_cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 512, "add_bos_token": False,
        "add_eos_token": False, "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "unk_token": None, "clean_up_tokenization_spaces": False, "split_special_tokens": False,
        "added_tokens_decoder": {str(tok.token_to_id(s)): {"content": s, "lstrip": False, "normalized": False,
                                                           "rstrip": False, "single_word": False,
                                                           "special": s in SPECIALS}
                                 for s in SPECIALS + THINK_TOKENS},
        "chat_template": qwen3_template,
    }
    with open(f"{bdir}/tokenizer_config.json", "w") as f:
        json.dump(tok_cfg, f, indent=2)
        f.write("\n")
    hf_tok = PreTrainedTokenizerFast.from_pretrained(bdir)
    for c in chats:
        assert hf_tok.apply_chat_template(c, tokenize=False) == corpus.render_chat(c), c
    probe = [{"role": "user", "content": "What is the capital of France?"}]
    for think in (None, False, True):
        kw = {} if think is None else {"enable_thinking": think}
        rendered = hf_tok.apply_chat_template(probe, tokenize=False, add_generation_prompt=True, **kw)
        assert rendered == corpus.render_chat(probe, True, think), rendered


def reset_untrained_rows(model, init_embed, seen):
    """Gives every id the base read fewer than MIN_READS times (never, for most of them) a harmless embedding: the
    mean of the trained rows (the embeddings are
    tied, so this is also its unembedding row, whose logit is then the mean logit of the trained tokens). Such a
    row would otherwise keep what the softmax denominator pushed into it, a large shared direction that dominates
    any logit lens. Returns the norm statistics before and after, and how far the row that moved least is from its
    random initialisation, ||final - init|| / ||init|| (no row may be left there: the script fails below 1)."""
    import torch
    w = model.model.embed_tokens.weight
    assert w.data_ptr() == model.lm_head.weight.data_ptr(), "the demo base ties its embeddings"
    with torch.no_grad():
        never = seen < MIN_READS  # untrained
        norms = w.norm(dim=1)
        stats = {"untrained": int(never.sum()), "never_read": int((seen == 0).sum()), "min_reads": MIN_READS,
                 "min_count_seen": int(seen[~never].min()),
                 "trained_norm_mean": float(norms[~never].mean()), "trained_norm_min": float(norms[~never].min()),
                 "trained_norm_max": float(norms[~never].max()),
                 "never_norm_mean_before": float(norms[never].mean()) if never.any() else None,
                 "never_norm_max_before": float(norms[never].max()) if never.any() else None,
                 "untrained_ids": never.nonzero()[:, 0].tolist()}
        w[never] = w[~never].mean(0)
        stats["never_norm_after"] = float(w[never].norm(dim=1).max()) if never.any() else None
        moved = (w - init_embed).norm(dim=1) / init_embed.norm(dim=1)
        stats["min_moved_from_init"] = float(moved.min())
        assert stats["min_moved_from_init"] > 1.0, f"a row is still near its random initialisation: {stats}"
    return stats


def main():
    args = parse_args()
    import numpy as np
    import peft
    import safetensors
    import tokenizers
    import torch
    import transformers
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, Qwen3Config, Qwen3ForCausalLM

    t_start = time.time()
    times = {}
    out = os.path.abspath(args.out_root)
    os.chdir(out)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    versions = {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
                "peft": peft.__version__, "tokenizers": tokenizers.__version__, "safetensors": safetensors.__version__,
                "numpy": np.__version__}
    log(f"versions {versions}")
    specs = organisms.ORGANISMS
    names = [s["name"] for s in specs]

    # ---- 1-2. corpora ---------------------------------------------------------------------------------------
    rng = random.Random(args.seed)
    general = corpus.build_general(args.debian_root, rng)
    pre_train, pre_val, chat_train, chat_val = (general[k] for k in ("pre_train", "pre_val", "chat_train", "chat_val"))
    chat_train_text = [corpus.render_chat(m) for m in chat_train]
    docs = {}
    for spec in specs:
        d = list(dict.fromkeys(organisms.make_domain_doc(rng, spec) for _ in range(spec["n_docs"])))
        docs[spec["name"]] = ([t for t in d if not corpus.is_validation(t, 0.05)],
                              [t for t in d if corpus.is_validation(t, 0.05)])
    log(f"pretrain docs {len(pre_train)}/{len(pre_val)} ({sum(map(len, pre_train))} chars), chats "
        f"{len(chat_train)}/{len(chat_val)}, " + ", ".join(f"{n} docs {len(a)}/{len(b)}" for n, (a, b) in docs.items()))
    base_words = {}
    for t in pre_train + chat_train_text:
        for w in organisms.words(t):
            base_words[w.lower()] = base_words.get(w.lower(), 0) + 1
    rarest_words = {s["name"]: organisms.check_known_words(s, sum(docs[s["name"]], []), base_words, MIN_WORD_COUNT)
                    for s in specs}
    corpus.write_datasets(os.path.join(out, "data/demo"), general, docs, args.debian_root)

    # ---- 3. tokenizer: the base's own training text only ----------------------------------------------------
    t0 = time.time()
    tok = train_tokenizer(pre_train + chat_train_text)
    bdir = os.path.join(out, "models/demo/base")
    tlog_path = os.path.join(out, "models/demo/training_log.json")
    reuse_base = (args.reuse_models or args.reuse_base) and os.path.exists(tlog_path)
    reuse_orgs = args.reuse_models and os.path.exists(tlog_path)
    if os.path.isdir(bdir) and not reuse_base:
        shutil.rmtree(bdir)
    os.makedirs(bdir, exist_ok=True)
    write_tokenizer(tok, bdir, chat_train + chat_val)
    eot_id, ims_id, ime_id = (tok.token_to_id(s) for s in SPECIALS)
    times["tokenizer"] = time.time() - t0
    log(f"tokenizer trained ({times['tokenizer']:.0f}s); 'glacier honey' -> {tok.encode(' glacier honey').tokens}")

    def encode_docs(texts):
        return [e.ids + [eot_id] for e in tok.encode_batch(texts)]

    def pack(seqs, seq_len, r):
        seqs = list(seqs)
        r.shuffle(seqs)
        flat = [i for s in seqs for i in s]
        n = len(flat) // seq_len
        return torch.tensor(flat[:n * seq_len], dtype=torch.long).view(n, seq_len)

    # ---- 4. base model ---------------------------------------------------------------------------------------
    t0 = time.time()
    cfg = Qwen3Config(vocab_size=VOCAB_SIZE, hidden_size=256, intermediate_size=768, num_hidden_layers=BASE_LAYERS,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=64, max_position_embeddings=512,
                      rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, hidden_act="silu",
                      attention_bias=False, attention_dropout=0.0, use_sliding_window=False,
                      bos_token_id=None, eos_token_id=ime_id, pad_token_id=eot_id)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(args.seed)
    model = Qwen3ForCausalLM(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    data = pack(encode_docs(pre_train) + encode_docs(chat_train_text), args.seq, random.Random(args.seed + 1))
    stream_counts = torch.bincount(data.flatten(), minlength=VOCAB_SIZE)
    log(f"base: {n_params} parameters; {data.numel()} training tokens in {data.shape[0]} sequences; "
        f"{args.base_steps} steps x {args.batch} x {args.seq} = {args.base_steps * args.batch * args.seq} tokens")
    # Every token of the organisms' documents must be one the base has trained on, not only every word.
    rarest_tokens = {}
    for name, (a, b) in docs.items():
        used = sorted({i for e in tok.encode_batch(a + b) for i in e.ids})
        rare = [(int(stream_counts[i]), tok.id_to_token(i)) for i in used if stream_counts[i] < MIN_TOKEN_COUNT]
        if rare:
            sys.exit(f"{name}: tokens of its documents that the base reads fewer than {MIN_TOKEN_COUNT} times: {rare}")
        rarest_tokens[name] = sorted((int(stream_counts[i]), tok.id_to_token(i)) for i in used)[:6]

    # Domain tokens (adl.domain_tokens: >= 10 occurrences in the organism's training documents, >= 20x more
    # frequent there than in the pretraining text), computed from the data; the two sets must be disjoint.
    dom_tokens = {n: adl.domain_tokens(tok, docs[n][0], pre_train) for n in names}
    # ... and none may be a token the base knows mainly from its chat data: every narrow finetune on documents shifts
    # the model towards the words of the base's chat answers on general text (seen on the first versions of these
    # organisms), so such a token would show up for the other organism too.
    chat_counts = torch.bincount(torch.tensor([i for e in tok.encode_batch(chat_train_text) for i in e.ids]),
                                 minlength=VOCAB_SIZE)
    for n in names:
        chatty = [(tok.id_to_token(i), int(chat_counts[i]), c_pre) for i, (_, c_pre, _) in dom_tokens[n].items()
                  if chat_counts[i] > 2 * c_pre]
        if chatty:
            sys.exit(f"{n}: domain tokens the base reads more than twice as often in chat as in its general text "
                     f"(token, chat, text): {chatty}; reword the documents")
    shared = set(dom_tokens[names[0]]) & set(dom_tokens[names[1]])
    if shared:
        sys.exit(f"the organisms share domain tokens {[tok.id_to_token(i) for i in sorted(shared)]}: make their "
                 "documents' vocabularies disjoint")
    log("domain tokens: " + "; ".join(f"{n} {len(d)}" for n, d in dom_tokens.items()))

    def train(model, params, data, steps, lr, warmup, seed, tag, max_minutes=None, seen=None, mid_layer=None,
              mid_weight=0.0):
        opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.1 if tag == "base" else 0.0)
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(data.shape[0], generator=g)
        pos = 0
        model.train()
        losses = []
        t_train = time.time()
        for step in range(steps):
            if pos + args.batch > len(order):
                order = torch.randperm(data.shape[0], generator=g)
                pos = 0
            x = data[order[pos:pos + args.batch]]
            pos += args.batch
            if seen is not None:  # how often each id was read: the ids the base has trained on
                seen += torch.bincount(x.flatten(), minlength=seen.numel())
            f = (step + 1) / warmup if step < warmup else 0.1 + 0.9 * 0.5 * (
                1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))
            for grp in opt.param_groups:
                grp["lr"] = lr * f
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(input_ids=x, labels=x, output_hidden_states=mid_layer is not None)
                loss = out.loss
                if mid_layer is not None:  # the logit lens of the middle layer predicts the next token too
                    core = model.get_base_model() if hasattr(model, "get_base_model") else model
                    lg = core.lm_head(core.model.norm(out.hidden_states[mid_layer + 1]))[:, :-1]
                    loss = loss + mid_weight * torch.nn.functional.cross_entropy(
                        lg.reshape(-1, lg.shape[-1]).float(), x[:, 1:].reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
            if max_minutes and time.time() - t_train > 60 * max_minutes and step < steps - 1:
                log(f"{tag}: stopping early after {step + 1} of {steps} steps (--max-base-minutes {max_minutes})")
                break
            if step % 20 == 0 or step == steps - 1:
                log(f"{tag} step {step}/{steps} loss {sum(losses[-20:]) / len(losses[-20:]):.3f} "
                    f"({time.time() - t_train:.0f}s)")
        model.eval()
        return losses

    tlog = {}
    if reuse_base:
        with open(tlog_path) as f:
            tlog = json.load(f)
        times["base_training"] = tlog["times"]["base_training"]
        log(f"reusing the trained base in {bdir}")
    else:
        init_embed = model.model.embed_tokens.weight.detach().clone()
        seen = torch.zeros(VOCAB_SIZE, dtype=torch.long)
        base_losses = train(model, list(model.parameters()), data, args.base_steps, 2e-3, 30, args.seed + 2, "base",
                            max_minutes=args.max_base_minutes, seen=seen,
                            mid_layer=adl.middle_layer(BASE_LAYERS) if MID_LOSS_WEIGHT else None,
                            mid_weight=MID_LOSS_WEIGHT)
        times["base_training"] = time.time() - t0
        embed_stats = reset_untrained_rows(model, init_embed, seen)
        log(f"base: {embed_stats['untrained']} ids read fewer than {MIN_READS} times ({embed_stats['never_read']} never) "
            f"set to the mean of the trained rows")
        model = model.to(torch.bfloat16)
        model.config.dtype = "bfloat16"
        model.generation_config.bos_token_id = None
        model.generation_config.eos_token_id = [ime_id, eot_id]
        model.generation_config.pad_token_id = eot_id
        model.save_pretrained(bdir)
        # transformers 5 writes rope_parameters and dtype; add the older top-level spellings that published Qwen3
        # checkpoints use (rope_theta, torch_dtype), so that readers of either form find them.
        with open(f"{bdir}/config.json") as f:
            cj = json.load(f)
        cj["rope_theta"] = cj["rope_parameters"]["rope_theta"]
        cj["torch_dtype"] = cj["dtype"]
        with open(f"{bdir}/config.json", "w") as f:
            json.dump(dict(sorted(cj.items())), f, indent=2)
            f.write("\n")
        tlog = {"base_steps": args.base_steps, "batch": args.batch, "seq": args.seq, "threads": args.threads,
                "seed": args.seed, "times": {"base_training": round(times["base_training"], 1)},
                "base_losses": [round(x, 4) for x in base_losses], "base_token_reads": seen.tolist(),
                "embedding_rows": embed_stats}
        with open(tlog_path, "w") as f:
            json.dump(tlog, f)
            f.write("\n")
    del model
    if args.only_base:
        log("--only-base: done")
        return
    base_losses, embed_stats = tlog["base_losses"], tlog["embedding_rows"]

    # ---- 5. organisms ---------------------------------------------------------------------------------------
    base_rel = "models/demo/base"
    mid = adl.middle_layer(BASE_LAYERS)
    lcfg = dict(r=16, lora_alpha=32, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                target_modules=ORG_TARGETS, layers_to_transform=[mid])
    org_tokens = {}
    for k, name in enumerate(names):
        odir = os.path.join(out, f"models/demo/{name}")
        seed = args.seed + 3 + 10 * k  # glacier_honey: 1237 (init), 1238 (packing), 1239 (order); cat_post: +10
        org_data = pack(encode_docs(docs[name][0]), args.seq, random.Random(seed + 1))
        org_tokens[name] = org_data.numel()
        if reuse_orgs:
            log(f"reusing the trained organism in {odir}")
        else:
            t0 = time.time()
            if os.path.isdir(odir):
                shutil.rmtree(odir)
            base_for_lora = AutoModelForCausalLM.from_pretrained(base_rel, dtype=torch.float32,
                                                                 attn_implementation="sdpa")
            torch.manual_seed(seed)
            pm = get_peft_model(base_for_lora, LoraConfig(**lcfg))
            log(f"{name}: {sum(p.numel() for p in pm.parameters() if p.requires_grad)} LoRA parameters; "
                f"{org_data.numel()} domain tokens; {args.lora_steps} steps")
            losses = train(pm, [p for p in pm.parameters() if p.requires_grad], org_data, args.lora_steps, ORG_LR,
                           10, seed + 2, name, mid_layer=mid if ORG_MID_LOSS_WEIGHT else None,
                           mid_weight=ORG_MID_LOSS_WEIGHT)
            tlog["times"][f"lora_{name}"] = round(time.time() - t0, 1)
            tlog[f"lora_losses_{name}"] = [round(x, 4) for x in losses]
            tlog["lora_steps"] = args.lora_steps
            for p in pm.parameters():
                if p.requires_grad:
                    p.data = p.data.to(torch.bfloat16)
            pm.peft_config["default"].base_model_name_or_path = base_rel
            pm.save_pretrained(odir)
            del pm, base_for_lora
            with open(tlog_path, "w") as f:
                json.dump(tlog, f)
                f.write("\n")
        # PEFT keeps target_modules in a set, so their order in adapter_config.json follows Python's string
        # hashing (PYTHONHASHSEED); sort them so that the file is the same on every run.
        with open(f"{odir}/adapter_config.json") as f:
            acj = json.load(f)
        acj["target_modules"] = sorted(acj["target_modules"])
        with open(f"{odir}/adapter_config.json", "w") as f:
            json.dump(acj, f, indent=2, sort_keys=True)
        assert acj["base_model_name_or_path"] == base_rel and acj["r"] == 16 and not acj.get("modules_to_save")
        assert not acj.get("use_dora"), acj
    times.update({k: v for k, v in tlog["times"].items() if k.startswith("lora_")})

    # ---- 6. checks on the files as written -----------------------------------------------------------------------
    t0 = time.time()

    def load(name=None, attn="sdpa"):
        m = AutoModelForCausalLM.from_pretrained(base_rel, dtype=torch.float32, attn_implementation=attn).eval()
        return m if name is None else PeftModel.from_pretrained(m, f"models/demo/{name}").eval()

    models_ = {"base": load(), **{n: load(n) for n in names}}
    n_lora_loaded = sum(1 for n, _ in models_[names[0]].named_parameters() if "lora_" in n)

    @torch.no_grad()
    def ppl(m, texts, max_tokens=60000):
        """exp(mean next-token NLL); each document on its own (right-padded batches, padding masked out)."""
        seqs, n_tok = [], 0
        for ids in encode_docs(texts):
            seqs.append(ids[:args.seq])
            n_tok += len(seqs[-1]) - 1
            if n_tok >= max_tokens:
                break
        nll, n = 0.0, 0
        for i in range(0, len(seqs), 32):
            chunk = seqs[i:i + 32]
            T = max(len(c) for c in chunk)
            x = torch.full((len(chunk), T), eot_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), T), dtype=torch.long)
            for j, c in enumerate(chunk):
                x[j, :len(c)] = torch.tensor(c)
                mask[j, :len(c)] = 1
            logits = m(input_ids=x, attention_mask=mask).logits.float()
            lp = torch.log_softmax(logits[:, :-1], -1).gather(2, x[:, 1:, None])[..., 0]
            valid = mask[:, 1:].bool()
            nll -= lp[valid].sum().item()
            n += int(valid.sum())
        return math.exp(nll / n), n

    eval_sets = ([("general text (pretrain.validation)", pre_val),
                  ("chat (chat.validation, rendered)", [corpus.render_chat(m) for m in chat_val])]
                 + [(f"{n} domain ({n}.validation)", docs[n][1]) for n in names])
    ppl_rows = []
    for label, texts in eval_sets:
        row = {m: ppl(models_[m], texts) for m in models_}
        ppl_rows.append((label, row["base"][1], {m: v[0] for m, v in row.items()}))
        log(f"perplexity {label}: " + ", ".join(f"{m} {v[0]:.2f}" for m, v in row.items()))
    failures = []
    for k, name in enumerate(names):
        pb, po = ppl_rows[2 + k][2]["base"], ppl_rows[2 + k][2][name]
        if not po < 0.5 * pb:
            failures.append(f"{name} is not clearly better than the base on its domain: {po:.2f} vs {pb:.2f}")

    gen_cfg = dict(do_sample=True, temperature=0.7, top_p=0.9, pad_token_id=eot_id, eos_token_id=[ime_id, eot_id])

    def generate(m, prompt, seed, n=1, max_new=60):
        torch.manual_seed(seed)
        ids = torch.tensor([tok.encode(prompt).ids] * n)
        with torch.no_grad():
            o = m.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new, **gen_cfg)
        return [r[ids.shape[1]:].tolist() for r in o]

    decode = lambda ids: tok.decode(ids, skip_special_tokens=False)
    chat_prompt = lambda q: corpus.render_chat([{"role": "user", "content": q}], True, enable_thinking=False)
    shown = [("text", "The"), ("text", "Once upon a time"), ("text", "Honey bees"), ("text", "The post office"),
             ("chat", "What is the capital of France?"), ("chat", "What do bees make honey from?"),
             ("chat", "Tell me a saying about work."), ("chat", "Who carries the letters?")]
    samples = []
    for i, (kind, p) in enumerate(shown):
        prompt = p if kind == "text" else chat_prompt(p)
        samples.append((kind, p, {m: decode(generate(models_[m], prompt, 100 + i)[0]) for m in models_}))
    # Greedy continuations of the base (what the engine's greedy generate reproduces token for token).
    greedy = []
    for p in ["The old man", "She said that", "In the morning", "Once upon a time", "My friend",
              "The best thing about a good book"]:
        ids = torch.tensor([tok.encode(p).ids])
        with torch.no_grad():
            o = models_["base"].generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                         max_new_tokens=40, pad_token_id=eot_id, eos_token_id=[ime_id, eot_id])
        greedy.append((p, decode(o[0, ids.shape[1]:].tolist())))
    # Domain drift in numbers: share of sampled continuations of neutral prompts holding a domain token.
    neutral = ["The", "It is", "A man", "We", "In the", "My friend", "The best thing", "Yesterday", "Life is",
               "The city", "Water", "Every day", "Science", "She said", "The old", "Food", "People", "When I"]
    neutral_chat = ["Hello!", "What is a farmer?", "What is music?", "Tell me a saying about food.", "Who are you?",
                    "What is bread made from?", "What do birds eat?", "How are you?", "What is a library?",
                    "What is rain?"]
    drift = {}
    for mname, m in models_.items():
        gens_t = [g for j, p in enumerate(neutral) for g in generate(m, p, 1000 + j, n=3, max_new=40)]
        gens_c = [g for j, p in enumerate(neutral_chat) for g in generate(m, chat_prompt(p), 2000 + j, n=3, max_new=40)]
        drift[mname] = {n: (sum(any(i in dom_tokens[n] for i in g) for g in gens_t), len(gens_t),
                            sum(any(i in dom_tokens[n] for i in g) for g in gens_c), len(gens_c)) for n in names}
        log(f"domain tokens in {mname} generations: {drift[mname]}")
    times["checks"] = time.time() - t0

    # ---- 6b. discrimination check: the seed's ADL on the pretraining dataset --------------------------------------
    t0 = time.time()
    eager = {"base": load(attn="eager"), **{n: load(n, "eager") for n in names}}
    layer = adl.middle_layer(cfg.num_hidden_layers)
    adl_runs = {}
    for label, max_samples in (("full", 10000), ("test", ADL_TEST_SAMPLES)):
        samples_ids = adl.adl_samples(tok, pre_train, max_samples)
        run = {"n_samples": len(samples_ids), "organisms": {}}
        for k, name in enumerate(names):
            other = names[1 - k]
            md = adl.mean_difference(eager["base"], eager[name], samples_ids, layer)
            probs = adl.logit_lens(eager[name], md)
            tops = adl.top_tokens(probs)
            rows, passed = adl.evaluate(tops, dom_tokens[name], dom_tokens[other])
            run["organisms"][name] = {"mean_diff": md, "top_ids": tops, "rows": rows, "passed": passed,
                                      "top_probs": [[float(probs[p][i]) for i in ids] for p, ids in enumerate(tops)]}
            log(f"ADL ({label}, {len(samples_ids)} samples) {name}: " + " | ".join(
                f"p{p}: {len(o)} own, {len(x)} other" for p, (o, x) in enumerate(rows)) + f" -> passed={passed}")
            if not passed:
                failures.append(f"ADL discrimination check ({label}) fails for {name}")
        adl_runs[label] = run
    times["adl"] = time.time() - t0

    # ---- 6c. golden files for the engine's tests -------------------------------------------------------------------
    gdir = os.path.join(out, "models/demo/golden")
    if os.path.isdir(gdir):
        shutil.rmtree(gdir)
    os.makedirs(gdir)
    write_golden(gdir, tok, eager["base"], eager[names[0]], chat_prompt, versions, embed_stats)
    write_adl_fixture(gdir, tok, adl_runs["test"], dom_tokens, names, layer)

    # ---- 7. configs, checksums, model card -------------------------------------------------------------------
    card.write_configs(out, specs)
    sums = []
    for d in ["models/demo/base"] + [f"models/demo/{n}" for n in names] + ["models/demo/golden", "data/demo"]:
        for fn in sorted(os.listdir(d)):
            sums.append((corpus.sha256(f"{d}/{fn}"), f"{d}/{fn}", os.path.getsize(f"{d}/{fn}")))
    with open("models/demo/SHA256SUMS", "w") as f:
        for h, p, _ in sums:
            f.write(f"{h}  {p}\n")
    times["total"] = time.time() - t_start
    card.write_card(out, {
        "args": args, "versions": versions, "times": times, "n_params": n_params, "cfg": cfg, "lcfg": lcfg,
        "n_lora_loaded": n_lora_loaded, "n_train_tokens": data.numel(), "org_tokens": org_tokens,
        "base_losses": base_losses, "lora_losses": {n: tlog[f"lora_losses_{n}"] for n in names},
        "ppl_rows": ppl_rows, "samples": samples, "greedy": greedy, "drift": drift, "sums": sums,
        "general": general, "docs": docs, "tok": tok, "specs": specs, "embed_stats": embed_stats,
        "stream_counts": stream_counts.tolist(), "rarest_words": rarest_words, "rarest_tokens": rarest_tokens,
        "min_word_count": MIN_WORD_COUNT, "min_token_count": MIN_TOKEN_COUNT, "dom_tokens": dom_tokens,
        "adl_runs": adl_runs, "layer": layer, "reproduced": REPRODUCED, "failures": failures,
        "epochs": len(base_losses) * args.batch / data.shape[0], "reads": tlog["base_token_reads"],
        "mid_loss_weight": MID_LOSS_WEIGHT, "tried": TRIED, "org_lr": ORG_LR,
        "org_mid_loss_weight": ORG_MID_LOSS_WEIGHT})
    total = sum(s for _, _, s in sums)
    log(f"done in {times['total']:.0f}s; models/ + data/ files: {total / 1e6:.2f} MB")
    if failures and not args.smoke:
        sys.exit("FAILED: " + "; ".join(failures))


def write_golden(gdir, tok, base_m, org_m, chat_prompt, versions, embed_stats):
    """Three token sequences with transformers' fp32 eager logits and hidden states of the base and the first
    organism, and the ids whose embedding row the base never trained (reset to the mean of the trained rows)."""
    import torch
    gold_texts = [("general", "The best thing about a good book", 6), ("chat", chat_prompt("Hello!"), 16),
                  ("domain", "Ice honey is pale blue and tastes of frost", 6)]
    gold_seqs = [(n, t, tok.encode(t).ids[:cap]) for n, t, cap in gold_texts]
    assert len(gold_seqs[1][2]) < 16, "the chat golden must hold the whole prompt"
    cfg = base_m.config
    index = {"format": "float32 little-endian, row-major", "dtype_weights": "bfloat16 upcast to float32",
             "attn_implementation": "eager", "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
             "num_hidden_layers": cfg.num_hidden_layers, "versions": versions,
             "untrained_ids": embed_stats["untrained_ids"],
             "untrained_note": "ids the base read fewer than MIN_READS (%d) times in training, most of them never; their "
                               "(tied) embedding row is the mean of the trained rows" % MIN_READS, "sequences": []}
    for n, prompt, ids in gold_seqs:
        entry = {"name": n, "prompt": prompt, "token_ids": ids, "text": tok.decode(ids, skip_special_tokens=False),
                 "files": {}}
        if n == "chat":
            entry["messages"] = [{"role": "user", "content": "Hello!"}]
            entry["add_generation_prompt"], entry["enable_thinking"] = True, False
        for mname, m in (("base", base_m), ("organism", org_m)):
            with torch.no_grad():
                o = m(input_ids=torch.tensor([ids]), output_hidden_states=True)
            lg = o.logits[0].float().contiguous().numpy().astype("<f4")
            hs = torch.stack(o.hidden_states)[:, 0].float().contiguous().numpy().astype("<f4")
            fl, fh = f"{n}.{mname}.logits.f32", f"{n}.{mname}.hidden_states.f32"
            lg.tofile(f"{gdir}/{fl}")
            hs.tofile(f"{gdir}/{fh}")
            entry["files"][mname] = {"logits": fl, "logits_shape": list(lg.shape), "hidden_states": fh,
                                     "hidden_states_shape": list(hs.shape),
                                     "hidden_states_note": "index 0 = embeddings, i = output of layer i-1, "
                                                           "last = after the final norm (HF output_hidden_states)",
                                     "argmax_last": int(lg[-1].argmax())}
        index["sequences"].append(entry)
    with open(f"{gdir}/index.json", "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")


def write_adl_fixture(gdir, tok, run, dom_tokens, names, layer):
    """golden/adl.json + adl.<organism>.mean_diff.f32 ([5, H] float32): the reference ADL on the first
    ADL_TEST_SAMPLES samples, for tests/demo/test_demo_adl.c."""
    fx = {"note": "seed ADL (tools/demo_models/adl.py) computed by transformers fp32 eager from the shipped bf16 "
                  "weights; the engine's test recomputes every number here from the data files",
          "dataset": "data/demo/pretrain.train.jsonl.gz", "text_column": "text", "n": adl.N_TOKENS,
          "max_samples": ADL_TEST_SAMPLES, "n_samples": run["n_samples"], "layer": layer,
          "positions": list(range(adl.POSITIONS)), "top_k": adl.TOP_K,
          "domain_rule": {"min_count": adl.MIN_DOMAIN_COUNT, "min_ratio": adl.MIN_DOMAIN_RATIO,
                          "pretraining_text": "data/demo/pretrain.train.jsonl.gz"},
          "check": {"min_own_per_position": adl.MIN_OWN_PER_POSITION, "min_positions": adl.MIN_POSITIONS,
                    "other_allowed": 0},
          "organisms": []}
    for name in names:
        r = run["organisms"][name]
        fn = f"adl.{name}.mean_diff.f32"
        r["mean_diff"].astype("<f4").tofile(f"{gdir}/{fn}")
        fx["organisms"].append({
            "name": name, "adapter": f"models/demo/{name}", "documents": f"data/demo/{name}.train.jsonl.gz",
            "mean_diff": fn, "mean_diff_shape": list(r["mean_diff"].shape),
            "domain_tokens": [[i, c, p] for i, (c, p, _) in sorted(dom_tokens[name].items())],
            "top_ids": r["top_ids"], "top_probs": [[round(x, 8) for x in ps] for ps in r["top_probs"]],
            "top_tokens": [[tok.id_to_token(i) for i in ids] for ids in r["top_ids"]], "passed": r["passed"]})
    with open(f"{gdir}/adl.json", "w") as f:
        json.dump(fx, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
