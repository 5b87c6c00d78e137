"""demo_models/adl.py — the discrimination check of the demo organisms: the seed's Activation Difference Lens (ADL)
computed with transformers, and the domain tokens it must find, computed from the data.

Why this exists: the demo pair is only worth shipping if a diffing method finds each organism's finetuning domain
in it, and not an artefact of the base. This module is the reference the engine's ADL is held to
(tests/demo/test_demo_adl.c recomputes it with our code). It follows the seed (seed_spec.md §5.2-5.3, the seed's
activation_difference_lens/method.py and utils/model.py:logit_lens):
  - samples: the pretraining dataset's texts in file order (the seed shuffles with seed 42 first; a mean over all
    samples does not depend on the order), empty texts skipped, each cut to n*10 characters, encoded with the
    tokenizer's special tokens (the demo tokenizer adds no BOS, as Qwen3's), kept when it has >= n tokens, then
    cut to its first n = 128 tokens; at most max_samples of them;
  - the residual after the middle layer, int(0.5 * (num_layers - 1)) (transformers' hidden_states[layer + 1]),
    of base and organism, fp32 (the shipped bf16 weights upcast), eager attention, unpadded batches;
  - mean over samples of (organism - base) at positions 0-4;
  - logit lens through the organism's final norm and unembedding: softmax(lm_head(norm(v))), top k.
A token is a domain token of an organism when it occurs >= 10 times in the organism's training documents and is
>= 20 times more frequent there, per token of text, than in the pretraining dataset's training text (the
definition of the methods issue). The check: for each organism, at >= 3 of positions 0-4 its top 20 holds >= 3 of
its own domain tokens, and at no position 0-4 does it hold one of the other organism's.
"""
import numpy as np

N_TOKENS = 128          # the seed's n
POSITIONS = 5           # positions 0-4
TOP_K = 20
MIN_DOMAIN_COUNT = 10
MIN_DOMAIN_RATIO = 20.0
MIN_OWN_PER_POSITION = 3
MIN_POSITIONS = 3


def middle_layer(num_layers):
    """The seed's relative layer 0.5 -> absolute index int(0.5 * (L - 1)) (seed_spec §1.4)."""
    return int(0.5 * (num_layers - 1))


def domain_tokens(tok, organism_docs, pretrain_docs):
    """{id: (count in the organism's documents, count in the pretraining text, frequency ratio)} of the domain
    tokens; the ratio is inf when the token never occurs in the pretraining text."""
    def counts(docs):
        c = np.zeros(tok.get_vocab_size(), dtype=np.int64)
        for e in tok.encode_batch(docs):
            np.add.at(c, e.ids, 1)
        return c

    c_dom, c_pre = counts(organism_docs), counts(pretrain_docs)
    n_dom, n_pre = c_dom.sum(), c_pre.sum()
    out = {}
    for i in np.nonzero(c_dom >= MIN_DOMAIN_COUNT)[0]:
        ratio = float("inf") if c_pre[i] == 0 else (c_dom[i] / n_dom) / (c_pre[i] / n_pre)
        if ratio >= MIN_DOMAIN_RATIO:
            out[int(i)] = (int(c_dom[i]), int(c_pre[i]), ratio)
    return out


def adl_samples(tok, texts, max_samples):
    """The first N_TOKENS ids of each text that has that many, in file order, as the seed selects them."""
    out = []
    for text in texts:
        if len(out) >= max_samples:
            break
        if not text or not text.strip():
            continue
        ids = tok.encode(text[:N_TOKENS * 10], add_special_tokens=True).ids
        if len(ids) >= N_TOKENS:
            out.append(ids[:N_TOKENS])
    return out


def mean_difference(base_model, organism_model, samples, layer, batch=32):
    """Mean over samples of (organism - base) residual after block `layer` at positions 0-4: [POSITIONS, H]
    float64 (each model's activations are summed in float64 from fp32)."""
    import torch
    sums = {}
    for name, m in (("base", base_model), ("organism", organism_model)):
        acc = None
        for i in range(0, len(samples), batch):
            x = torch.tensor(samples[i:i + batch])
            with torch.no_grad():
                h = m(input_ids=x, output_hidden_states=True).hidden_states[layer + 1][:, :POSITIONS]
            s = h.double().sum(0)
            acc = s if acc is None else acc + s
        sums[name] = acc
    return ((sums["organism"] - sums["base"]) / len(samples)).numpy()


def logit_lens(organism_model, vectors):
    """softmax(lm_head(final_norm(v))) for each row of vectors [P, H], through the organism's head: [P, V]."""
    import torch
    core = organism_model.get_base_model() if hasattr(organism_model, "get_base_model") else organism_model
    with torch.no_grad():
        z = core.model.norm(torch.tensor(vectors, dtype=torch.float32))
        return torch.softmax(core.lm_head(z), dim=-1).numpy()


def top_tokens(probs, k=TOP_K):
    """Top-k ids per position, highest probability first (ties by lower id)."""
    return [sorted(range(len(p)), key=lambda i: (-p[i], i))[:k] for p in probs]


def evaluate(tops, own, other):
    """Per position: own domain tokens and other-organism domain tokens among the top ids; and whether the check
    passes for this organism."""
    rows = [([t for t in ids if t in own], [t for t in ids if t in other]) for ids in tops]
    passed = (sum(len(o) >= MIN_OWN_PER_POSITION for o, _ in rows) >= MIN_POSITIONS
              and all(not x for _, x in rows))
    return rows, passed
