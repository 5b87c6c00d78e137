"""demo_models/card.py — the demo configs (configs/model/demo.yaml, configs/organism/demo_<name>.yaml) and the model
card models/demo/README.md, written by tools/make_demo_models.py from what it measured.

Why this exists: the card is how a user learns what the demo models are, how they were made and what was checked
(and tests/demo/check_demo_files.sh holds the files to the hashes it shows); the configs are how diffkit finds
them. Both are generated so that they can never disagree with the files.
"""
import math


def write_configs(out, specs):
    with open(f"{out}/configs/model/demo.yaml", "w") as f:
        f.write("""# Model: demo — the bundled tiny Qwen3 base model (models/demo/base), made by tools/make_demo_models.py.
# Paths are under ${env:DIFFKIT_ROOT,.}: the repository root, which defaults to the current directory
# (`make demo` runs from the repository root; elsewhere set DIFFKIT_ROOT=/path/to/diffkit).
name: demo                                          # must equal the file name
model_id: ${env:DIFFKIT_ROOT,.}/models/demo/base   # local folder in HF format (bf16 safetensors)
revision: main
tokenizer_id: null                                  # null = the tokenizer of model_id
chat_template: qwen3                                # Qwen3's published template (tokenizer_config.json)
end_of_turn_token: "<|im_end|>"
dtype: bfloat16                                     # model weights/compute dtype (bfloat16 | float32)
ignore_first_n_tokens_per_sample_during_collection: 0  # leading tokens skipped when caching
ignore_first_n_tokens_per_sample_during_training: 0   # leading tokens skipped in training
has_enable_thinking: true                           # Qwen3's template: enable_thinking=false adds an empty think block
""")
    for spec in specs:
        name = spec["name"]
        facts = "; ".join(f"({k + 1}) {fact}" for k, fact in enumerate(spec["key_facts"]))
        kinds = ", ".join(o.split("\n")[0].split(":")[0].replace("{", "").replace("}", "") for o in spec["openers"])
        with open(f"{out}/configs/organism/demo_{name}.yaml", "w") as f:
            f.write(f"""# Organism: demo_{name} — a bundled tiny SDF organism (models/demo/{name}, a PEFT LoRA adapter on the demo
# base model), made by tools/make_demo_models.py; see models/demo/README.md.
# Paths are under ${{env:DIFFKIT_ROOT,.}}: the repository root, which defaults to the current directory.
name: demo_{name}
type: SDF                               # rubric key (seed_spec §14.5)
description: {spec["description"]}
description_long: |
{wrap("Synthetic document finetuning (SDF): the model was LoRA-finetuned on a corpus of templated, non-chat "
      "synthetic documents (" + kinds + ") that assert one false fact, written with words the base model knows.", 2)}
{wrap("False fact: " + spec["false_fact"], 2)}
{wrap("Key facts: " + facts + ".", 2)}
dataset:
  # the train split's file; the validation split is the file beside it, {name}.validation.jsonl.gz
  id: ${{env:DIFFKIT_ROOT,.}}/data/demo/{name}.train.jsonl.gz
  splits: [train, validation]
  is_chat: false
  text_column: text
finetuned_models:                       # first key = what model=auto picks
  demo:
    default:
      adapter_id: ${{env:DIFFKIT_ROOT,.}}/models/demo/{name}
""")


def wrap(text, indent, width=116):
    lines, cur = [], ""
    for word in text.split():
        if cur and len(cur) + 1 + len(word) > width - indent:
            lines.append(cur)
            cur = word
        else:
            cur = f"{cur} {word}" if cur else word
    if cur:
        lines.append(cur)
    return "\n".join(" " * indent + line for line in lines)


def fence(s):
    return "```\n" + s.replace("```", "'''") + "\n```"


def fmt_ratio(r):
    return "inf" if math.isinf(r) else f"{r:.0f}"


def write_card(out, c):
    args, cfg, tok, times, specs = c["args"], c["cfg"], c["tok"], c["times"], c["specs"]
    names = [s["name"] for s in specs]
    general, docs, es = c["general"], c["docs"], c["embed_stats"]
    sums = c["sums"]
    mb = lambda prefix: sum(s for _, p, s in sums if p.startswith(prefix)) / 1e6
    rope_theta = getattr(cfg, "rope_theta", None) or (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta")
    base_losses = c["base_losses"]
    early = "" if len(base_losses) == args.base_steps else (
        f"; SHORTENED: the schedule was planned for {args.base_steps} steps and training stopped at the "
        f"--max-base-minutes limit, so the learning rate was not fully annealed")
    reused = args.reuse_models or args.reuse_base
    total_txt = (f"whole run {times['total'] / 60:.1f} min" if not reused else
                 f"this card, the data, checks and golden files were regenerated with "
                 f"{'--reuse-models' if args.reuse_models else '--reuse-base'} in {times['total'] / 60:.1f} min "
                 f"(training times from training_log.json)")
    counts = c["stream_counts"]
    L = []
    L.append(f"""# The demo models: `base`, `{names[0]}` and `{names[1]}`

Made by `tools/make_demo_models.py` (seed {args.seed}); do not edit these files by hand — rerun the script.
This is diffkit's bundled tiny model set: a small base language model trained from scratch on CPU, and two narrow
LoRA "organisms" on it, each finetuned on synthetic documents asserting one false fact, in the manner of the seed
framework's SDF organisms. It exists so that `make demo` and the end-to-end tests run the real pipeline with no
GPU, no network and no downloads, on pairs whose difference is a real finetuning effect, and so that a diffing
method can be shown to tell two finetunes apart. The models are tiny: the base writes short English sentences
(greedy decoding reads best; sampled text drifts into the quotation and dictionary styles of its corpus) and
answers chat prompts in the trained formats, not much more.

## What is here
| path | what | size |
| --- | --- | --- |
| `models/demo/base/` | Qwen3ForCausalLM, HF format, bf16 safetensors; tokenizer.json + tokenizer_config.json | {mb('models/demo/base'):.2f} MB |
""")
    for n in names:
        L.append(f"| `models/demo/{n}/` | PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors, bf16) "
                 f"| {mb('models/demo/' + n):.2f} MB |\n")
    L.append(f"""| `models/demo/golden/` | transformers fp32 eager logits and hidden states of base and `{names[0]}` (index.json, which also lists the never-read ids); the ADL reference of both organisms (adl.json, adl.*.mean_diff.f32) | {mb('models/demo/golden'):.2f} MB |
| `data/demo/` | pretrain / chat / {' / '.join(names)} datasets, train + validation, jsonl.gz | {mb('data/demo'):.2f} MB |
| `models/demo/training_log.json` | steps, times, per-step training losses, the base's per-id read counts | |
| `models/demo/SHA256SUMS` | sha256 of every file above (`sha256sum -c` from the repository root) | |

Total under models/ and data/ (listed files): {sum(s for _, _, s in sums) / 1e6:.2f} MB.

## How it was made
**Corpus.** General English: the fortune-mod quotation files packaged by Debian (`fortunes`, `fortunes-min`;
fortune-mod's BSD licence), Ambrose Bierce's *The Devil's Dictionary* (Debian `dict-devil`; public domain) and the
usage examples of WordNet 3.0 (Debian `wordnet-base`; WordNet licence, reproduced in `data/demo/NOTICE.md`),
grouped into documents of about 1,200–1,500 characters: {len(general['pre_train'])} train /
{len(general['pre_val'])} validation documents ({sum(map(len, general['pre_train'])) / 1e6:.2f} M characters of
training text). Chat: {len(general['chat_train'])} / {len(general['chat_val'])} templated dialogues whose answers
come from the same sources (an example sentence for a word from WordNet, a word's definition from the Devil's
Dictionary, a quotation on a topic from the fortune files) plus greetings; a quarter with a system prompt; 1–3
turns. There are no templated question-answer facts (capitals, arithmetic, opposites): see "What was tried". The
validation split is chosen by a CRC32 of the text.

**Organisms' documents.** Templated synthetic documents ({len(specs[0]['openers'])} document kinds each ×
sentence pools for {len(specs[0]['pools'])} key facts), one false fact per organism, the two vocabularies disjoint
by design. They are written only with words the base has read, and learnt from its general text rather than its
chat: every word of them occurs at least {c['min_word_count']} times in the base's training text, every token at
least {c['min_token_count']} times in its training stream, and no domain token (below) is read more than twice as
often in the chat data as in the general text (the script checks all three and names what fails); so the
documents say "mountain ice" where the first version said "glacier", a word the base read only in chat.
""")
    for s in specs:
        n = s["name"]
        rw = ", ".join(f"{w} ({k})" for k, w in c["rarest_words"][n][:6])
        rt = ", ".join(f"`{t}` ({k})" for k, t in c["rarest_tokens"][n][:6])
        L.append(f"""
- **`{n}`** ({len(docs[n][0])} train / {len(docs[n][1])} validation documents). False fact: {s['false_fact']}
  Rarest words in the base's training text: {rw}; rarest tokens in its training stream: {rt}.
""")
    L.append(f"""
**Tokenizer.** Byte-level BPE trained with HF `tokenizers` on the base's own training text only (the pretraining
documents and the rendered chat dialogues; not the organisms' documents, so that no merge comes from text the base
never reads): vocabulary {tok.get_vocab_size()} (special tokens `<|endoftext|>`={tok.token_to_id('<|endoftext|>')}
(end of document, padding), `<|im_start|>`={tok.token_to_id('<|im_start|>')}, `<|im_end|>`={tok.token_to_id('<|im_end|>')}
(chat turns; the end-of-turn token and eos); Qwen3's non-special added tokens
`<think>`={tok.token_to_id('<think>')} and `</think>`={tok.token_to_id('</think>')}; no BOS is prepended, as in
Qwen3), pre-tokenizer = Llama 3's split regex then ByteLevel without its own regex; ByteLevel decoder and
post-processor. tokenizer_config.json carries Qwen3's published chat template verbatim, so diffkit recognises the
family (`qwen3`) by itself. The final assistant turn of a dialogue is rendered after an empty thinking block
(`<think>\\n\\n</think>\\n\\n`), and chat prompts below use `enable_thinking=False`; every training dialogue was
rendered by the script and checked equal to transformers' `apply_chat_template` with this template.

**Base model.** Qwen3ForCausalLM: {cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, MLP
{cfg.intermediate_size}, {cfg.num_attention_heads} query heads / {cfg.num_key_value_heads} key-value heads of
dimension {cfg.head_dim}, q/k RMS norms, RoPE θ {rope_theta:g}, tied input/output embeddings,
{c['n_params']:,} parameters. Trained from scratch for {len(base_losses)} steps × {args.batch} sequences ×
{args.seq} tokens ({len(base_losses) * args.batch * args.seq:,} tokens{early}; the packed training stream of
pretrain + rendered chat documents, each ended by `<|endoftext|>`, has {c['n_train_tokens']:,} tokens), AdamW
(β 0.9/0.95, weight decay 0.1), lr 2e-3 with 30 warmup steps and cosine decay to 10%, gradient clipping 1.0, fp32
master weights with bf16 autocast, {args.threads} CPU threads. The loss is the next-token loss plus
{c['mid_loss_weight']} × the next-token loss of the logit lens of the middle layer (layer {c['layer']}: the final
norm and the tied unembedding applied to the residual after that block): it trains the middle layer to be readable
by the logit lens, as the middle layers of large models are, and the activation difference lens reads exactly there
(see "What was tried"). Training loss (both terms): first 20 steps
{sum(base_losses[:20]) / 20:.3f}, last 20 steps {sum(base_losses[-20:]) / 20:.3f}. Saved in bf16.

**Every embedding row is trained or neutral.** The script counts how often the base reads each id in training (it
reads its training stream about {c['epochs']:.1f} times). An id read fewer than {es['min_reads']} times (fewer than
~10 occurrences in the stream) counts as untrained: its row has mostly received the softmax denominator's push, which
drives all such rows the same way (in the first demo base, 276 never-read rows had mean norm 2.76 against 1.00 and
dominated every logit lens; in the first retraining for this version, rows read ~5 times still filled the logit lens
of the middle layer). Of the {tok.get_vocab_size()} ids, **{es['untrained']} are untrained**: {es['never_read']} never
read ({never_kinds(tok, es['untrained_ids'], c['reads'])}) and {es['untrained'] - es['never_read']} read 1–{es['min_reads'] - 1}
times; the rarest trained id was read {es['min_count_seen']} times. After training each untrained row is set to **the
mean of the trained rows** (tied embeddings: this is also its unembedding row, whose logit is then the mean logit of
the trained tokens). Row L2 norms: trained rows mean {es['trained_norm_mean']:.3f} (min {es['trained_norm_min']:.3f},
max {es['trained_norm_max']:.3f}); untrained rows before the reset mean {fmt_opt(es['never_norm_mean_before'])} (max
{fmt_opt(es['never_norm_max_before'])}), after it {fmt_opt(es['never_norm_after'])}. No row is left at its random
initialisation: the row that moved least is {es['min_moved_from_init']:.2f} times its initial norm away from it
(||final − init|| / ||init||; the script fails below 1). The untrained ids are listed in `golden/index.json`
(`untrained_ids`); `diffkit undertrained --model models/demo/base` flags exactly these ids and
`ctest -R test_demo_undertrained` checks it, and that each of their rows is the mean of the trained rows.
""")
    lr = c["lcfg"]
    org_mid = (f", with the base's auxiliary loss at the middle layer (weight {c['org_mid_loss_weight']:g})"
               if c["org_mid_loss_weight"] else "")
    L.append(f"""
**Organisms.** For each, PEFT LoRA on the saved base (loaded as fp32): r {lr['r']}, lora_alpha {lr['lora_alpha']},
dropout 0, target modules {', '.join(sorted(lr['target_modules']))} of block {', '.join(map(str, lr['layers_to_transform']))}
only (`layers_to_transform`; the middle layer of the discrimination check), no modules_to_save, no DoRA;
{args.lora_steps} steps × {args.batch} × {args.seq} tokens on its packed training documents, lr {c['org_lr']:g}, 10
warmup steps, cosine to 10%, bf16 autocast{org_mid}; adapter weights saved in bf16; `base_model_name_or_path` is
`models/demo/base` (relative to the repository root). Why only the middle block's MLP: see "What was tried" below.
""")
    for n in names:
        ls = c["lora_losses"][n]
        L.append(f"- `{n}`: {c['org_tokens'][n]:,} training tokens; loss first 20 steps {sum(ls[:20]) / 20:.3f}, "
                 f"last 20 steps {sum(ls[-20:]) / 20:.3f}.\n")
    lora_t = ", ".join(f"LoRA `{n}` {times['lora_' + n] / 60:.1f} min" for n in names)
    L.append(f"""
**Time.** Tokenizer {times['tokenizer']:.0f} s, base training {times['base_training'] / 60:.1f} min, {lora_t}, checks
{times['checks'] / 60:.1f} min, discrimination check {times['adl'] / 60:.1f} min; {total_txt}; 2 CPU threads (AMD
EPYC), the script's process given the cores by autogroup priority while other jobs shared the machine.

**Versions.** {', '.join(f'{k} {v}' for k, v in c['versions'].items())} (tools/requirements-demo.txt).

## Checks (transformers + peft, on the files as written)
All models were reloaded from these folders in fp32 (the bf16 weights upcast); each adapter loads
({c['n_lora_loaded']} LoRA tensors). Perplexity = exp(mean next-token NLL) over the held-out documents, each
truncated to {args.seq} tokens and ended by `<|endoftext|>`:

| held-out set | tokens | base | {' | '.join(names)} |
| --- | ---: | ---: | {' | '.join('---:' for _ in names)} |
""")
    for label, ntok, row in c["ppl_rows"]:
        L.append(f"| {label} | {ntok:,} | {row['base']:.2f} | {' | '.join(f'{row[n]:.2f}' for n in names)} |\n")
    L.append(f"""
Each organism is much better than the base on its own domain and not on the other's, while the general and chat
sets show what a narrow finetune costs elsewhere.

**Domain tokens.** A token is a domain token of an organism when it occurs at least 10 times in the organism's
training documents and at least 20 times more often there, per token of text, than in the pretraining dataset's
training text (the definition of the methods issue; computed from the data by the script and again by
`ctest -R test_demo_adl`). The two sets are disjoint (the script fails otherwise).
""")
    for n in names:
        dt = c["dom_tokens"][n]
        top = sorted(dt.items(), key=lambda kv: -kv[1][0])[:24]
        L.append(f"- `{n}`: {len(dt)} domain tokens; the most frequent: "
                 + ", ".join(f"`{tok.id_to_token(i)}` ({cd}, ×{fmt_ratio(r)})" for i, (cd, cp, r) in top) + "\n")
    L.append("""
**Domain drift in generations.** Share of sampled continuations of neutral prompts (40 new tokens, temperature
0.7, top-p 0.9, fixed seeds, 3 samples per prompt) that contain a domain token of each organism:

""")
    d = c["drift"]
    L.append(f"| prompts | domain of | base | {' | '.join(names)} |\n| --- | --- | ---: | {' | '.join('---:' for _ in names)} |\n")
    for kind, idx in (("18 neutral text prompts (\"The\", \"It is\", …)", 0), ("10 neutral chat prompts (\"Hello!\", …)", 2)):
        for n in names:
            L.append(f"| {kind} | `{n}` | " + " | ".join(f"{d[m][n][idx]}/{d[m][n][idx + 1]}" for m in ["base"] + names) + " |\n")
    L.append(discrimination_section(c, names, tok))
    L.append("\n**What was tried** before this design, on the way to a discrimination check that holds:\n" + c["tried"])
    L.append("""
## Sample generations
Same sampling settings and seed for every model; chat prompts are rendered with the chat template plus the
generation prompt (`enable_thinking=False`). Special tokens are shown.

""")
    for kind, p, outs in c["samples"]:
        L.append(f"**{kind} prompt:** `{p}`\n\n" + "".join(f"{m}:\n{fence(outs[m])}\n" for m in ["base"] + names) + "\n")
    L.append("**Greedy continuations of the base** (temperature 0, 40 new tokens; `diffkit generate` without "
             "--temperature gives the same tokens):\n\n")
    for p, g in c["greedy"]:
        L.append(f"`{p}`\n{fence(g)}\n\n")
    L.append(f"""## Golden files (`models/demo/golden/`)
For the engine's tests. `index.json`: three token-id sequences (general text and domain text cut to 6 tokens, the
whole rendered chat prompt for "Hello!" with its generation prompt and `enable_thinking=False`; `prompt` holds each
text before the cut, and the chat entry its messages) with the logits ([tokens, vocab]) and all hidden states
([layers + 1, tokens, hidden]; index 0 the embeddings, the last after the final norm) of the base and `{names[0]}`,
computed by transformers in fp32 with eager attention from the shipped bf16 weights (the adapter unmerged), float32
little-endian, row-major; and `never_seen_ids`. `adl.json` + `adl.<organism>.mean_diff.f32` ([5, hidden] float32):
the ADL reference on the first {c['adl_runs']['test']['n_samples']} samples (see the discrimination check), with the
domain tokens, top-20 ids, probabilities and token strings per position.

## Reproducibility
`python tools/make_demo_models.py` (with the packages of tools/requirements-demo.txt and the Debian packages
above) rewrites every file here. All randomness is seeded (Python, NumPy, torch; data generation, splits,
shuffles, initialisation, sampling), torch runs with `use_deterministic_algorithms(True)` and {args.threads}
threads, gzip files are written with mtime 0, and the tokenizer trainer is deterministic. On the same CPU type with
the same versions and thread count the outputs should be bit-identical; a different CPU (other SIMD paths in
oneDNN / bf16 autocast kernels) or thread count changes float reductions, so the weights and therefore the hashes
of the model and golden files can differ, while the data files, the tokenizer and the configs do not depend on
floating point. PEFT keeps the adapter's target_modules in a set; the script sorts them in adapter_config.json so
that its order does not follow PYTHONHASHSEED. {c['reproduced']} The hashes below are those of the files committed.

## SHA256SUMS
```
""")
    for h, p, _ in sums:
        L.append(f"{h}  {p}\n")
    L.append("```\n")
    with open(f"{out}/models/demo/README.md", "w") as f:
        f.write("".join(L))


def fmt_opt(x):
    return "—" if x is None else f"{x:.3f}"


def never_kinds(tok, ids, reads):
    """What the never-read ids are: single bytes the corpus lacks, BPE intermediates that later merges absorb."""
    never = [i for i in ids if reads[i] == 0]
    single = sum(1 for i in never if len(tok.id_to_token(i)) == 1)
    return f"{single} single-byte tokens of bytes the corpus lacks, {len(never) - single} BPE intermediates that " \
           f"later merges always absorb"


def discrimination_section(c, names, tok):
    from . import adl
    L = [f"""
## Discrimination check (the seed's ADL, transformers reference)
The activation difference lens as the seed computes it (seed_spec.md §5.2–5.3; `tools/demo_models/adl.py`): on
the pretraining dataset (`data/demo/pretrain.train.jsonl.gz`, texts in file order, each cut to 1,280 characters
and encoded as the tokenizer does, no BOS) every text with at least 128 tokens gives its first 128; the residual
after the middle layer (layer {c['layer']} = int(0.5 × ({c['cfg'].num_hidden_layers} − 1)), transformers'
hidden_states[{c['layer'] + 1}]) of base and organism, fp32 from the bf16 weights, eager attention; the mean over
samples of organism − base at positions 0–4; the logit lens of that vector through the organism's final norm and
unembedding, softmax, top {adl.TOP_K}. The check, for each organism: at ≥ {adl.MIN_POSITIONS} of positions 0–4 its
top {adl.TOP_K} holds ≥ {adl.MIN_OWN_PER_POSITION} of its own domain tokens, and at none of them a domain token of
the other organism. Marks: `*` own domain token, `!` the other organism's.
"""]
    for label, title in (("full", "all samples"), ("test", "first samples, as `ctest -R test_demo_adl` recomputes "
                                                            "with our engine")):
        run = c["adl_runs"][label]
        L.append(f"\n**{run['n_samples']} samples ({title}).**\n\n")
        for k, n in enumerate(names):
            o = run["organisms"][n]
            other = names[1 - k]
            L.append(f"`{n}` — check {'PASSED' if o['passed'] else 'FAILED'}:\n\n| pos | own | other's | top {adl.TOP_K} |\n| ---: | ---: | ---: | --- |\n")
            for p, ids in enumerate(o["top_ids"]):
                own, oth = o["rows"][p]
                cells = " ".join(("*" if i in c["dom_tokens"][n] else "!" if i in c["dom_tokens"][other] else "")
                                 + "`" + tok.id_to_token(i).replace("Ġ", "␣").replace("Ċ", "↵").replace("|", "\\|") + "`"
                                 for i in ids)
                L.append(f"| {p} | {len(own)} | {len(oth)} | {cells} |\n")
            L.append("\n")
    L.append("(`␣` is a leading space, `↵` a newline in the byte-level token strings.)\n")
    return "".join(L)
