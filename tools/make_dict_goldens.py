#!/usr/bin/env python3
"""make_dict_goldens.py — golden fixtures of the dictionary methods (tests/fixtures/methods/dict/), from
reference implementations we did not write:

  order       the seed's get_local_shuffled_indices (src/diffing/utils/activations.py), transcribed line by line
              with torch.randperm replaced by diffkit's permutation (splitmix64 Fisher-Yates from seed, epoch,
              shard): the shard structure is the seed's, the randomness diffkit's (torch's generator cannot be
              reproduced in C).
  ipca        scikit-learn's IncrementalPCA (the algorithm torchdr's IncrementalPCA, which the seed's PCA method
              uses, adapts) partial_fit on fixed batches, with n_components = d and with fewer components, and
              scikit-learn's exact PCA of the same rows.
  sae         the reference BatchTopKTrainer (crosscoder_learning, installed into the venv with
              `SETUPTOOLS_SCM_PRETEND_VERSION=0.0.0 pip install --no-deps ../shared/seed/crosscoder_learning`; einops is
              its only import the trainers use) for 50 steps on a synthetic pool of rows, from initial weights and
              batches the fixture records: the weights after step 1 and step 50, the losses of every step, the
              inference threshold and the dead-latent counters. Small settings make every path run within 50 steps:
              warm-up 5 steps, threshold EMA from step 10, latents dead after 128 tokens (AuxK), target_rms 100
              (clipping active), lr 1e-3.
  crosscoder  the same for BatchTopKCrossCoderTrainer on stacked [base, ft] rows, with k annealed from 16 to 2 over
              10 steps and the "crosscoder" code normalisation.
  pca-job     diff_pca end to end on the tiny test pair's stores (tests/fixtures/preprocess configs; make them
              with diff_preprocess, then pass --stores DIR/activations): the difference rows (ft - base rounded to
              bf16, as the seed's DifferenceCache subtracts in bf16), in the seed's local-shuffled order, fitted
              by scikit-learn's IncrementalPCA in batches of 256 (drop_last), and the top-5 max-activating
              sequences of the first components from torchdr's transform (fp32).

  betas       the seed's latent-scaling betas: closed_form_scalars (src/diffing/utils/dictionary/latent_scaling/
              closed_form.py, imported from the seed's source, see import_seed_closed_form) with the seed's target
              functions (latent_scaling/utils.py) on the reference package's BatchTopKSAE and BatchTopKCrossCoder
              holding random weights and a normaliser, over 300 synthetic paired [base, ft] rows in batches of 64:
              SAE (encoding the ft - base and the base - ft difference: the is_difference_sae=True path) with
              targets base/ft_activation; crosscoder with its six targets (activation, reconstruction, error; the
              error targets for every latent). Some latents never fire (beta NaN). Also the latent_df columns of
              analysis.py's build_push_*_latent_df (norms, dec_norm_diff, cosines, tags), computed with the
              function's own torch lines (the function itself loads models from the hub and writes files). And the
              latent activations of the same models over the rows cut into 7 sequences: the seed's
              get_positive_activations (latent_activations.py; the SAE through add_get_activations_sae): every
              positive activation (sequence, position, latent, value) and the per-latent maxima.

Run from the repository root with the project venv (numpy, torch, scikit-learn, safetensors):
    /work/venv/bin/python tools/make_dict_goldens.py ipca
Fixtures are float32 safetensors (what the C tests read with host/io/safetensors.h)."""
import argparse
import os
import sys

import numpy as np
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "methods", "dict")


def f32(d):
    return {k: np.ascontiguousarray(np.asarray(v, dtype=np.float32)) for k, v in d.items()}


M64 = (1 << 64) - 1


def splitmix_next(state):
    state = (state + 0x9E3779B97F4A7C15) & M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return state, z ^ (z >> 31)


def rng_below(state, n):
    limit = M64 - M64 % n
    while True:
        state, r = splitmix_next(state)
        if r < limit:
            return state, r % n


def diffkit_randperm(seed, epoch, shard, n):
    """The permutation diffkit uses in place of torch.randperm (host/methods/dict_data.c, shard_perm)."""
    st = (seed ^ 0x6A09E667F3BCC909) & M64
    st, z = splitmix_next(st)
    st = z ^ epoch
    st, z = splitmix_next(st)
    st = z ^ shard
    p = list(range(n))
    for i in range(n - 1, 0, -1):
        st, j = rng_below(st, i + 1)
        p[i], p[j] = p[j], p[i]
    return np.array(p, dtype=np.int64)


def local_shuffled_indices(num_samples_per_dataset, shard_size, epochs, seed):
    """get_local_shuffled_indices of the seed, line by line, randperm replaced."""
    num_datasets = len(num_samples_per_dataset)
    cumulative_offsets = [0]
    for i in range(num_datasets):
        cumulative_offsets.append(cumulative_offsets[-1] + num_samples_per_dataset[i])
    max_ds_size = max(num_samples_per_dataset)
    dataset_weights = [n / max_ds_size for n in num_samples_per_dataset]
    all_shuffled_indices = []
    for epoch in range(epochs):
        epoch_indices = []
        remaining_samples = list(num_samples_per_dataset)
        shard = 0
        while sum(remaining_samples) > 0:
            shard_indices = []
            for j in range(num_datasets):
                samples_for_dataset = min(max(1, int(shard_size * dataset_weights[j])), remaining_samples[j])
                dataset_start = cumulative_offsets[j] + (num_samples_per_dataset[j] - remaining_samples[j])
                shard_indices.append(np.arange(samples_for_dataset) + dataset_start)
                remaining_samples[j] -= samples_for_dataset
            all_dataset_indices = np.concatenate(shard_indices)
            epoch_indices.append(all_dataset_indices[diffkit_randperm(seed, epoch, shard, len(all_dataset_indices))])
            shard += 1
        all_shuffled_indices.append(np.concatenate(epoch_indices))
    return np.concatenate(all_shuffled_indices)


def make_order():
    sizes, shard, epochs, seed = [2500, 1000, 300], 1000, 2, 42
    idx = local_shuffled_indices(sizes, shard, epochs, seed)
    assert idx.max() < 1 << 24  # exact in float32
    save_file(f32({"sizes": np.array(sizes), "shard_size": np.array([shard]), "epochs": np.array([epochs]),
                   "seed": np.array([seed]), "indices": idx}), os.path.join(OUT, "order_golden.safetensors"))
    print("wrote", os.path.join(OUT, "order_golden.safetensors"), len(idx), "indices")


TINY_DATASETS = ["chat", "pretrain", "org"]  # the seed's order: chat, pretraining, organism dataset


def tiny_rows(stores, name, split, layer, target="difference_ftb", skip=0):
    """Rows of one dataset of the tiny pair as the seed's caches give them (torch, bf16 arithmetic)."""
    import h5py
    import torch
    with h5py.File(os.path.join(stores, "llama_text", name, f"{split}.h5")) as fb, \
         h5py.File(os.path.join(stores, "llama_lora", name, f"{split}.h5")) as ff:
        base = torch.tensor(fb[f"layer_{layer}"][...]).to(torch.bfloat16)
        ft = torch.tensor(ff[f"layer_{layer}"][...]).to(torch.bfloat16)
        offsets = fb["seq_offsets"][...]
        tokens = fb["tokens"][...]
    if target == "difference_ftb":
        x = (ft - base).float()
    elif target == "difference_bft":
        x = (base - ft).float()
    elif target == "stacked":
        x = torch.stack([base.float(), ft.float()], dim=1)
    else:
        raise ValueError(target)
    keep = np.ones(len(x), dtype=bool)
    for q in range(len(offsets) - 1):  # skip_first_n_tokens (a mask, as the seed builds it)
        for i in range(skip):
            if offsets[q] + i < len(x):
                keep[offsets[q] + i] = False
    return x.numpy(), keep, offsets, tokens


def make_pca_job(stores):
    import torch
    from sklearn.decomposition import IncrementalPCA
    layer, batch, n_top, seed, shard = 1, 256, 5, 42, 1_000_000
    per = [tiny_rows(stores, n, "train", layer) for n in TINY_DATASETS]
    rows = np.concatenate([p[0][p[1]] for p in per])
    sizes = [int(p[1].sum()) for p in per]
    order = local_shuffled_indices(sizes, shard, 1, seed)
    n_batches = len(order) // batch
    ipca = IncrementalPCA(n_components=rows.shape[1])
    for b in range(n_batches):
        ipca.partial_fit(rows[order[b * batch:(b + 1) * batch]].astype(np.float64))
    out = {"components": ipca.components_, "explained_variance": ipca.explained_variance_,
           "explained_variance_ratio": ipca.explained_variance_ratio_, "singular_values": ipca.singular_values_,
           "mean": ipca.mean_, "var": ipca.var_, "n_samples_seen": np.array([ipca.n_samples_seen_])}
    mean = torch.tensor(ipca.mean_).float()
    comps = torch.tensor(ipca.components_).float()
    for k, name in enumerate(TINY_DATASETS):
        x, _, offsets, _ = per[k]
        proj = [(torch.tensor(x[offsets[q]:offsets[q + 1]]) - mean) @ comps.T for q in range(len(offsets) - 1)]
        for c in range(3):
            for sign, key in ((1, "positive"), (-1, "negative")):
                scores = np.array([float((sign * p[:, c]).max()) for p in proj])
                top = sorted(range(len(scores)), key=lambda q: (-scores[q], q))[:n_top]
                out[f"{key}.{name}.{c}.sequence"] = np.array(top)
                out[f"{key}.{name}.{c}.score"] = scores[top]
    save_file(f32(out), os.path.join(OUT, "pca_job_golden.safetensors"))
    print("wrote", os.path.join(OUT, "pca_job_golden.safetensors"), f"({n_batches} batches of {batch})")


def import_reference():
    """The reference package's trainers. Its package __init__ also imports data-loading helpers (nnsight,
    datasets, zstandard) that the trainers never call; when they are not installed, empty placeholder modules
    stand in for them so the import succeeds. The code under comparison is the package's own."""
    import types
    for name in ("nnsight", "datasets", "zstandard"):
        try:
            __import__(name)
        except ImportError:
            m = types.ModuleType(name)
            m.LanguageModel = m.Dataset = object
            m.load_dataset = None
            sys.modules[name] = m
    import torch
    torch.set_num_threads(1)
    torch.set_float32_matmul_precision("highest")
    from dictionary_learning.trainers.batch_top_k import BatchTopKTrainer
    from dictionary_learning.trainers.crosscoder import BatchTopKCrossCoderTrainer
    return BatchTopKTrainer, BatchTopKCrossCoderTrainer


def synthetic_pool(rng, n, d, layers):
    """Rows made of a few of 48 ground-truth directions with positive coefficients, noise and an offset; for two
    layers the second (the "finetuned" model) adds directions of its own on a third of the rows."""
    g = rng.standard_normal((48, d))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    rows = np.zeros((n, layers, d))
    for r in range(n):
        idx = rng.choice(48, size=3, replace=False)
        rows[r, 0] = (rng.exponential(2.0, 3)[:, None] * g[idx]).sum(0)
        if layers == 2:
            rows[r, 1] = rows[r, 0] * 1.1
            if r % 3 == 0:
                rows[r, 1] += 3.0 * g[40 + r % 8]
    rows += 0.05 * rng.standard_normal(rows.shape) + rng.standard_normal((1, layers, d))
    return rows.astype(np.float32)


SMALL = dict(warmup_steps=5, threshold_start_step=10, lr=1e-3, target_rms=100.0)
N_POOL, BATCH, STEPS, DEAD_TOKENS = 1024, 64, 50, 128


def batch_rows(i):
    return (i * BATCH + np.arange(BATCH)) % N_POOL


def run_reference(trainer, pool, out, prefix, layers):
    import torch
    keys = list(trainer.ae.state_dict().keys())
    params = [k for k in keys if k.startswith(("encoder", "decoder", "b_dec"))]
    snap = lambda tag: out.update({f"{tag}.{k}": trainer.ae.state_dict()[k].detach().numpy().copy() for k in params})
    snap("init")
    losses, deads = [], []
    for step in range(STEPS):
        x = torch.tensor(pool[batch_rows(step)])
        if layers == 1:
            x = x[:, 0, :]
        losses.append(trainer.update(step, x.clone()))
        deads.append(trainer.dead_features if layers == 1 else trainer.running_deads)
        if step == 0:
            snap("step1")
    snap("step50")
    out["losses"] = np.array(losses)
    out["deads"] = np.array(deads)
    out["threshold"] = np.array([float(trainer.ae.threshold)])
    out["since_fired"] = trainer.num_tokens_since_fired.numpy().astype(np.float64)
    print(f"{prefix}: loss {losses[0]:.4g} -> {losses[-1]:.4g}, threshold {float(trainer.ae.threshold):.4g}, "
          f"dead latents per step up to {max(deads)} ({sum(1 for x in deads if x > 0)} steps with AuxK)")


def make_sae():
    import torch
    BatchTopKTrainer, _ = import_reference()
    rng = np.random.default_rng(7)
    d, F, k = 32, 128, 2
    pool = synthetic_pool(rng, N_POOL, d, 1)
    flat = pool[:, 0, :].astype(np.float64)
    mean = flat.mean(0).astype(np.float32).astype(np.float64)
    std = flat.std(0).astype(np.float32).astype(np.float64)  # population, as RunningStatWelford.std(unbiased=False)
    torch.manual_seed(0)
    tr = BatchTopKTrainer(steps=STEPS, activation_dim=d, dict_size=F, k=k, layer=0, lm_name="golden", device="cpu",
                          warmup_steps=SMALL["warmup_steps"], threshold_start_step=SMALL["threshold_start_step"],
                          lr=SMALL["lr"], activation_mean=torch.tensor(mean), activation_std=torch.tensor(std),
                          target_rms=SMALL["target_rms"], encoder_init_norm=1.0)
    tr.dead_feature_threshold = DEAD_TOKENS
    tr.ae.to(torch.float32)  # trainSAE: trainer.model.to(dtype)
    out = {"pool": pool[:, 0, :], "mean": mean, "std": std,
           "config": np.array([d, F, k, BATCH, STEPS, DEAD_TOKENS, SMALL["warmup_steps"],
                               SMALL["threshold_start_step"], SMALL["lr"], SMALL["target_rms"]])}
    run_reference(tr, pool, out, "sae", 1)
    save_file(f32(out), os.path.join(OUT, "sae_golden.safetensors"))
    print("wrote", os.path.join(OUT, "sae_golden.safetensors"))


def make_crosscoder():
    import torch
    _, BatchTopKCrossCoderTrainer = import_reference()
    rng = np.random.default_rng(11)
    d, F, k, k_max, anneal = 32, 128, 2, 16, 10
    pool = synthetic_pool(rng, N_POOL, d, 2)
    flat = pool.astype(np.float64)
    mean = flat.mean(0).astype(np.float32).astype(np.float64)  # (2, d)
    std = flat.std(0).astype(np.float32).astype(np.float64)
    torch.manual_seed(0)
    tr = BatchTopKCrossCoderTrainer(
        steps=STEPS, activation_dim=d, dict_size=F, k=k, layer=0, lm_name="golden", num_layers=2, k_max=k_max,
        k_annealing_steps=anneal, device="cpu", warmup_steps=SMALL["warmup_steps"],
        threshold_start_step=SMALL["threshold_start_step"], lr=SMALL["lr"], activation_mean=torch.tensor(mean),
        activation_std=torch.tensor(std), target_rms=SMALL["target_rms"],
        dict_class_kwargs={"same_init_for_all_layers": True, "norm_init_scale": 1.0, "init_with_transpose": True,
                           "encoder_layers": None, "code_normalization": "crosscoder",
                           "code_normalization_alpha_sae": 1.0, "code_normalization_alpha_cc": 0.1})
    tr.dead_feature_threshold = DEAD_TOKENS
    tr.ae.to(torch.float32)
    out = {"pool": pool, "mean": mean, "std": std,
           "config": np.array([d, F, k, BATCH, STEPS, DEAD_TOKENS, SMALL["warmup_steps"],
                               SMALL["threshold_start_step"], SMALL["lr"], SMALL["target_rms"], k_max, anneal])}
    run_reference(tr, pool, out, "crosscoder", 2)
    save_file(f32(out), os.path.join(OUT, "crosscoder_golden.safetensors"))
    print("wrote", os.path.join(OUT, "crosscoder_golden.safetensors"))


def import_seed_closed_form(src):
    """The seed's latent_scaling/closed_form.py, latent_scaling/utils.py and latent_activations.py from its source
    tree. The packages on the way (diffing, diffing.utils, ...) have __init__ files that import the whole toolkit
    (Hydra configs, pandas, plotting, the Hugging Face hub), so they are registered as bare packages pointing at the
    seed's folders and their __init__ is not run; the names the three modules import but the functions used here
    (closed_form_scalars, get_positive_activations, add_get_activations_sae) never call (loguru's logger,
    omegaconf, pandas, wandb, the cache/config/training/hub helpers) are placeholders. The code under test is the
    seed's."""
    import importlib
    import types
    import_reference()  # the reference package, with its own placeholders
    def package(name, path):
        m = types.ModuleType(name)
        m.__path__ = [path]
        sys.modules[name] = m
    def placeholder(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        sys.modules.setdefault(name, m)
    base = os.path.join(src, "diffing")
    package("diffing", base)
    package("diffing.utils", os.path.join(base, "utils"))
    package("diffing.utils.dictionary", os.path.join(base, "utils", "dictionary"))
    package("diffing.utils.dictionary.latent_scaling", os.path.join(base, "utils", "dictionary", "latent_scaling"))
    class Quiet:
        def __getattr__(self, name):
            return lambda *a, **k: None
    placeholder("loguru", logger=Quiet())
    placeholder("omegaconf", DictConfig=dict)
    placeholder("pandas")
    placeholder("wandb")
    placeholder("diffing.utils.dictionary.training", setup_training_datasets=None, skip_first_n_tokens=None,
                setup_sae_cache=None)
    placeholder("diffing.utils.dictionary.utils", load_dictionary_model=None, load_latent_df=None,
                push_latent_df=None)
    placeholder("diffing.utils.cache", LatentActivationCache=type("LatentActivationCache", (), {}),
                SampleCache=object, DifferenceCache=object)  # used in annotations only
    placeholder("diffing.utils.configs", get_model_configurations=None, get_dataset_configurations=None, HF_NAME="")
    placeholder("diffing.utils.activations", load_activation_datasets_from_config=None)
    placeholder("diffing.utils.model", load_tokenizer_from_config=None)
    sys.modules["diffing.utils.dictionary"].load_dictionary_model = None
    cf = importlib.import_module("diffing.utils.dictionary.latent_scaling.closed_form")
    ut = importlib.import_module("diffing.utils.dictionary.latent_scaling.utils")
    la = importlib.import_module("diffing.utils.dictionary.latent_activations")
    return cf.closed_form_scalars, ut, la


SEQ_LENGTHS = [40, 25, 60, 35, 50, 30, 60]  # the 300 paired rows cut into sequences (latent activations)


def seed_latent_activations(la, model, rows, out, prefix):
    """The seed's get_positive_activations over the rows cut into SEQ_LENGTHS sequences (a stand-in for its
    SampleCache: tokens 1000 + row, activations the rows), as collect_dictionary_activations runs it: the SAE with
    add_get_activations_sae (threshold inference), the crosscoder's own get_activations (the scaled code)."""
    import torch
    starts = np.concatenate([[0], np.cumsum(SEQ_LENGTHS)])
    class Samples(torch.utils.data.Dataset):
        sample_start_indices = starts.tolist()
        def __len__(self):
            return len(SEQ_LENGTHS)
        def __getitem__(self, i):
            a, b = starts[i], starts[i + 1]
            return torch.arange(1000 + a, 1000 + b), torch.tensor(rows[a:b])
    if isinstance(model, __import__("dictionary_learning").dictionary.BatchTopKSAE):
        model = la.add_get_activations_sae(model)
    F = model.dict_size
    acts, ids, _, max_act = la.get_positive_activations(Samples(), model, torch.arange(F), expected_sparsity=F)
    out[prefix + "acts.values"] = acts.numpy()
    out[prefix + "acts.ids"] = ids.numpy().astype(np.float64)  # (n, 3): sequence, position, latent
    out[prefix + "acts.max"] = max_act.numpy()
    out[prefix + "acts.count"] = np.bincount(ids[:, 2].numpy(), minlength=F).astype(np.float64)
    out["acts.lengths"] = np.array(SEQ_LENGTHS)


def betas_pairs(rng, n, d):
    """Paired [base, ft] rows: shared structure plus a finetuned-only direction on a third of the rows."""
    g = rng.standard_normal((12, d))
    base = rng.standard_normal((n, 12)) @ g + 0.3 * rng.standard_normal((n, d)) + 1.0
    ft = 1.05 * base + 0.1 * rng.standard_normal((n, d))
    ft[::3] += 2.5 * g[0]
    return np.stack([base, ft], axis=1).astype(np.float32)  # (n, 2, d)


def make_betas(src):
    import functools
    import torch
    closed_form_scalars, ut, la = import_seed_closed_form(src)
    from dictionary_learning.dictionary import BatchTopKCrossCoder, BatchTopKSAE
    torch.manual_seed(0)
    rng = np.random.default_rng(2024)
    d, F, N, batch, target_rms = 16, 48, 300, 64, 10.0
    pairs = betas_pairs(rng, N, d)
    out = {"pairs": pairs, "config": np.array([d, F, N, target_rms])}
    loader = torch.utils.data.DataLoader(torch.tensor(pairs), batch_size=batch, shuffle=False)
    tags = {"ft_only": 0, "base_only": 1, "shared": 2, "other": 3}

    # ---- SAE on the difference, both directions ----
    for direction, sae_model in (("ftb", "ft"), ("bft", "base")):
        diff = pairs[:, 1] - pairs[:, 0] if sae_model == "ft" else pairs[:, 0] - pairs[:, 1]
        mean = diff.astype(np.float64).mean(0).astype(np.float32).astype(np.float64)
        std = diff.astype(np.float64).std(0).astype(np.float32).astype(np.float64)
        sae = BatchTopKSAE(d, F, 4, activation_mean=torch.tensor(mean), activation_std=torch.tensor(std),
                           target_rms=target_rms)
        sae.to(torch.float32)
        with torch.no_grad():
            dec = torch.randn(d, F)
            sae.decoder.weight.copy_(dec / dec.norm(dim=0, keepdim=True))
            sae.encoder.weight.copy_(sae.decoder.weight.T + 0.2 * torch.randn(F, d))
            sae.encoder.bias.copy_(0.5 * torch.randn(F))
            sae.encoder.bias[:3] = -1e4  # latents 0..2 never fire: beta NaN
            sae.b_dec.copy_(0.3 * torch.randn(d))
            sae.threshold.fill_(0.8)
        latent_vectors = sae.decoder.weight.clone().T
        enc = functools.partial(ut.load_difference_activation, sae_model=sae_model, normalize=False)
        p = f"sae_{direction}."
        for t in ("base_activation", "ft_activation"):
            fn = functools.partial(getattr(ut, f"load_{t}"), normalize=True)
            betas, count, _, _, _ = closed_form_scalars(latent_vectors, torch.arange(F), loader, sae, fn,
                                                        encode_activation_fn=enc, device="cpu")
            out[p + "beta." + t] = betas.numpy()
            out[p + "count_active"] = count.numpy()
        sd = sae.state_dict()
        for k in ("encoder.weight", "encoder.bias", "decoder.weight", "b_dec"):
            out[p + k] = sd[k].numpy()
        out[p + "threshold"] = np.array([float(sae.threshold)])
        out[p + "mean"], out[p + "std"] = mean, std
        out[p + "df.dec_norm"] = sae.decoder.weight.norm(dim=0).detach().numpy()  # build_push_sae_difference_latent_df
        out[p + "df.enc_norm"] = sae.encoder.weight.norm(dim=1).detach().numpy()
        seed_latent_activations(la, sae, diff, out, p)
        print(f"betas sae {direction}: {int((count > 0).sum())} of {F} latents fired, "
              f"beta_ft in [{np.nanmin(out[p + 'beta.ft_activation']):.3g}, {np.nanmax(out[p + 'beta.ft_activation']):.3g}]")

    # ---- crosscoder ----
    flat = pairs.astype(np.float64)
    mean = flat.mean(0).astype(np.float32).astype(np.float64)  # (2, d)
    std = flat.std(0).astype(np.float32).astype(np.float64)
    cc = BatchTopKCrossCoder(d, F, 2, k=4, activation_mean=torch.tensor(mean), activation_std=torch.tensor(std),
                             target_rms=target_rms, code_normalization="crosscoder")
    cc.to(torch.float32)
    with torch.no_grad():
        w = torch.randn(2, d, F) / np.sqrt(d)
        cc.encoder.weight.copy_(w)
        dec = torch.randn(2, F, d) / np.sqrt(d)
        # decoder norms that span the tags: ft-only (base norm ~0), base-only, shared, other
        scale_b = torch.tensor([0.02 if j % 4 == 0 else 1.0 for j in range(F)])
        scale_f = torch.tensor([0.03 if j % 4 == 1 else (0.6 if j % 4 == 3 else 1.0) for j in range(F)])
        dec[0] *= scale_b[:, None]
        dec[1] *= scale_f[:, None]
        cc.decoder.weight.copy_(dec)
        cc.decoder.bias.copy_(0.2 * torch.randn(2, d))
        cc.encoder.bias.copy_(0.3 * torch.randn(F))
        cc.encoder.bias[5:7] = -1e4  # never fire
        cc.threshold.fill_(0.5)
    ft_decoder = cc.decoder.weight[1].clone()
    base_decoder = cc.decoder.weight[0].clone()
    idx = torch.arange(F)
    fns = {"base_activation": functools.partial(ut.load_base_activation, normalize=True),
           "ft_activation": functools.partial(ut.load_ft_activation, normalize=True),
           "base_reconstruction": functools.partial(ut.load_base_reconstruction, normalize=True),
           "ft_reconstruction": functools.partial(ut.load_ft_reconstruction, normalize=True),
           "base_error": functools.partial(ut.load_base_error, base_decoder=base_decoder, normalize=True),
           "ft_error": functools.partial(ut.load_ft_error, normalize=True)}
    for t, fn in fns.items():  # compute_scalers: encode_activation_fn = identity (encode normalises)
        betas, count, _, _, _ = closed_form_scalars(ft_decoder[idx], idx, loader, cc, fn, device="cpu")
        out["cc.beta." + t] = betas.numpy()
        out["cc.count_active"] = count.numpy()
    sd = cc.state_dict()
    for k in ("encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias"):
        out["cc." + k] = sd[k].numpy()
    out["cc.threshold"] = np.array([float(cc.threshold)])
    out["cc.mean"], out["cc.std"] = mean, std
    # build_push_crosscoder_latent_df's lines (base_layer 0, ft_layer 1)
    norms = cc.decoder.weight.norm(dim=-1)
    norm_diffs = ((norms[0] - norms[1]) / norms.max(dim=0).values + 1) / 2
    enc_norms = cc.encoder.weight.norm(dim=1)
    enc_norm_diffs = ((enc_norms[0] - enc_norms[1]) / enc_norms.max(dim=0).values + 1) / 2
    cos = torch.nn.functional.cosine_similarity
    df = {"dec_base_norm": norms[0], "dec_ft_norm": norms[1], "dec_norm_diff": norm_diffs,
          "enc_base_norm": enc_norms[0], "enc_ft_norm": enc_norms[1], "enc_norm_diff": enc_norm_diffs,
          "dec_cos_sim": cos(cc.decoder.weight[0], cc.decoder.weight[1], dim=1),
          "enc_cos_sim": cos(cc.encoder.weight[0], cc.encoder.weight[1], dim=0)}
    for k, v in df.items():
        out["cc.df." + k] = v.detach().numpy()
    tag = np.full(F, tags["other"])
    nd = norm_diffs.detach()
    tag[(nd < 0.1).numpy()] = tags["ft_only"]
    tag[(nd > 0.9).numpy()] = tags["base_only"]
    tag[((nd - 0.5).abs() < 0.1).numpy()] = tags["shared"]
    out["cc.df.tag"] = tag
    seed_latent_activations(la, cc, pairs, out, "cc.")
    print(f"betas crosscoder: {int((out['cc.count_active'] > 0).sum())} of {F} latents fired, tags "
          + ", ".join(f"{k} {int((tag == v).sum())}" for k, v in tags.items()))
    save_file(f32(out), os.path.join(OUT, "betas_golden.safetensors"))
    print("wrote", os.path.join(OUT, "betas_golden.safetensors"))


def make_ipca():
    from sklearn.decomposition import PCA, IncrementalPCA

    rng = np.random.default_rng(1234)
    d, n_batches, batch = 12, 6, 100
    # anisotropic data with well separated variances, a non-zero mean, and a drift of the mean between batches
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    scales = np.array([6.0, 4.5, 3.4, 2.6, 2.0, 1.5, 1.1, 0.8, 0.55, 0.35, 0.2, 0.1])
    x = (rng.standard_normal((n_batches * batch, d)) * scales) @ q.T + rng.standard_normal(d) * 3.0
    x += np.repeat(np.arange(n_batches), batch)[:, None] * 0.05
    x = x.astype(np.float32)  # the C side reads fp32 rows; the reference sees the same values
    xd = x.astype(np.float64)
    out = {"x": x, "batch": np.array([batch]), "n_components_small": np.array([4])}
    full = IncrementalPCA(n_components=d)
    small = IncrementalPCA(n_components=4)
    for b in range(n_batches):
        full.partial_fit(xd[b * batch:(b + 1) * batch])
        small.partial_fit(xd[b * batch:(b + 1) * batch])
    for name, m in (("full", full), ("trunc", small)):
        out[f"{name}.components"] = m.components_
        out[f"{name}.explained_variance"] = m.explained_variance_
        out[f"{name}.explained_variance_ratio"] = m.explained_variance_ratio_
        out[f"{name}.singular_values"] = m.singular_values_
        out[f"{name}.mean"] = m.mean_
        out[f"{name}.var"] = m.var_
        out[f"{name}.noise_variance"] = np.array([m.noise_variance_])
        out[f"{name}.n_samples_seen"] = np.array([m.n_samples_seen_])
    exact = PCA(n_components=4, svd_solver="full").fit(xd)
    # sign convention of the incremental one (largest-|.| entry of each component positive)
    comps = exact.components_.copy()
    for i in range(comps.shape[0]):
        j = np.argmax(np.abs(comps[i]))
        if comps[i, j] < 0:
            comps[i] = -comps[i]
    out["exact.components"] = comps
    out["exact.explained_variance"] = exact.explained_variance_
    out["exact.explained_variance_ratio"] = exact.explained_variance_ratio_
    out["exact.noise_variance"] = np.array([exact.noise_variance_])
    gap = np.abs(small.explained_variance_ - exact.explained_variance_) / exact.explained_variance_
    print(f"ipca: truncated incremental vs exact PCA, relative explained-variance gap up to {gap.max():.2e}")
    save_file(f32(out), os.path.join(OUT, "ipca_golden.safetensors"))
    print("wrote", os.path.join(OUT, "ipca_golden.safetensors"))


def default_seed_src():
    here = os.path.dirname(os.path.abspath(__file__))
    for up in range(1, 5):
        cand = os.path.join(here, *([".."] * up), "shared", "seed", "diffing-toolkit", "src")
        if os.path.isdir(cand):
            return os.path.normpath(cand)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["order", "ipca", "sae", "crosscoder", "pca-job", "betas"])
    ap.add_argument("--stores", help="activation stores of the tiny test pair (pca-job, sae-job)")
    ap.add_argument("--seed-src", default=default_seed_src(),
                    help="the seed's src/ folder (betas); default: shared/seed/diffing-toolkit/src in the first "
                         "folder above the repository that has it")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    if args.what == "pca-job":
        make_pca_job(args.stores)
    elif args.what == "betas":
        make_betas(args.seed_src)
    else:
        {"order": make_order, "ipca": make_ipca, "sae": make_sae, "crosscoder": make_crosscoder}[args.what]()


if __name__ == "__main__":
    sys.exit(main())
