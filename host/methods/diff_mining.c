/* diff_mining.c — the diff mining method (diff_mining; seed_spec §13, the seed's diff_mining with `logits`
 * extraction): on the first max_samples samples of each configured dataset (dm_data.h), both models' logits at
 * every analysed position, diff = logits_ft − logits_base over the first min(V_base, V_ft) tokens (and below
 * max_vocab_size), the top_k largest and smallest diffs per position, and from them the token orderings
 * top_k_occurring, fraction_positive_diff and the NMF token topics (dm_stats.h, dm_orderings.h).
 *
 * Work split: samples are cut into batches of batch_size, the same whatever the rank count; batch b runs on rank
 * b % nranks. Per-token counts and fixed-point sums are added exactly across ranks; each batch's share of the NMF
 * matrix goes to rank 0 in batch order, which builds the seed's matrix, fits it (threads, deterministic) and
 * writes everything: 1, 2 or 3 ranks give the same results.
 *
 * Results (docs/formats.md, "diff_mining"): ${diffing.results_dir}/diff_mining/seed{seed}_top{top_k}/ holds
 * results.h5 (per dataset: the samples, the per-token statistics, the orderings, the NMF factors), the seed's
 * JSON files (run_metadata.json, {dataset}_global_token_stats.json, <ordering dir>/metadata.json,
 * <ordering dir>/{dataset}/{orderings,<ordering id>}.json) and summary.json, the DiffMiningAgent's overview.
 * logit_lens / patchscope_lens extraction, token relevance grading, plots and the seed's optional analyses are
 * refused when switched on (later issues). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/check_mpi.h"
#include "core/finite.h"
#include "core/host_memory.h"
#include "core/log.h"
#include "core/progress.h"
#include "methods/dm_data.h"
#include "methods/dm_orderings.h"
#include "methods/dm_stats.h"
#include "methods/method_job.h"
#include "methods/methods.h"
#include "pipeline/pp_dataset.h"

#define KEY "diffing.method."

typedef struct dm_state {
    int64_t batch_size, max_samples, n, top_k, k_pre, num_tokens, top_k_tokens;
    int64_t max_vocab;            /* −1: none */
    int64_t V;                    /* tokens compared: min(V_base, V_ft), capped by max_vocab_size */
    int n_types;
    dm_ordering_type types[3];    /* in the configured order */
    bool binary;                  /* nmf.mode = binary_occurrence */
    dm_nmf_settings nmf;
    char nmf_dir[320];
    const char *overview_type;
    int n_datasets;
    dm_dataset *ds;
    int *overview;                /* (n_overview) datasets of the overview, in its order */
    int n_overview;
} dm_state;

/* ---- settings ------------------------------------------------------------------------------------------------ */

/* Python's repr of a float (str(2.0) = "2.0", str(1e-05) = "1e-05"): the seed names folders with it. */
static void py_float_repr(double x, char *out, size_t cap) {
    char e[64];
    int p = 1;
    for (; p <= 17; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, x);
        if (strtod(e, NULL) == x) break;
    }
    char digits[32];
    int nd = 0, exp10 = 0;
    const char *s = e;
    bool neg = *s == '-';
    if (neg) s++;
    for (; *s && *s != 'e'; s++)
        if (*s >= '0' && *s <= '9') digits[nd++] = *s;
    exp10 = atoi(s + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    char b[96];
    int k = 0;
    if (neg) b[k++] = '-';
    if (exp10 < -4 || exp10 >= 16) {
        b[k++] = digits[0];
        if (nd > 1) {
            b[k++] = '.';
            for (int i = 1; i < nd; i++) b[k++] = digits[i];
        }
        k += snprintf(b + k, sizeof b - (size_t)k, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
    } else if (exp10 < 0) {
        b[k++] = '0', b[k++] = '.';
        for (int i = 0; i < -exp10 - 1; i++) b[k++] = '0';
        for (int i = 0; i < nd; i++) b[k++] = digits[i];
    } else {
        for (int i = 0; i <= exp10; i++) b[k++] = i < nd ? digits[i] : '0';
        b[k++] = '.';
        if (nd > exp10 + 1)
            for (int i = exp10 + 1; i < nd; i++) b[k++] = digits[i];
        else
            b[k++] = '0';
    }
    b[k] = 0;
    snprintf(out, cap, "%s", b);
}

static int refuse_if(const dk_cfg *cfg, const char *key, const char *what, dk_err *err) {
    bool on = false;
    if (dk_cfg_try_bool(cfg, key, &on, err) != 0) return -1;
    if (on)
        return dk_err_set(err, DK_EXIT_USAGE, "%s = true: %s is not implemented in diffkit yet; set it to false",
                          key, what);
    return 0;
}

static int positive(const dk_cfg *cfg, const char *key, int64_t min, int64_t *out, dk_err *err) {
    if (dk_cfg_try_int(cfg, key, out, err) != 0) return -1;
    if (*out < min) return dk_err_set(err, DK_EXIT_USAGE, "%s = %lld: must be at least %lld", key, (long long)*out,
                                      (long long)min);
    return 0;
}

static int read_settings(dm_state *st, const dk_method_job *job, dk_err *err) {
    const dk_cfg *cfg = job->cfg;
    const char *method = NULL;
    if (dk_cfg_try_str(cfg, KEY "logit_extraction.method", false, &method, err) != 0) return -1;
    if (strcmp(method, "logit_lens") == 0 || strcmp(method, "patchscope_lens") == 0)
        return dk_err_set(err, DK_EXIT_USAGE, KEY "logit_extraction.method = %s: not implemented yet (logit_lens and "
                          "patchscope_lens extraction come with a later issue); use logits", method);
    if (strcmp(method, "logits") != 0)
        return dk_err_set(err, DK_EXIT_USAGE, KEY "logit_extraction.method = %s: expected logits, logit_lens or "
                          "patchscope_lens", method);
    if (refuse_if(cfg, KEY "token_relevance.enabled", "token relevance grading (it needs the agent's LLM client)",
                  err) != 0 ||
        refuse_if(cfg, KEY "positional_kde.enabled", "the positional KDE plots", err) != 0 ||
        refuse_if(cfg, KEY "sequence_likelihood_ratio.enabled", "the sequence likelihood ratio analysis", err) != 0 ||
        refuse_if(cfg, KEY "per_token_analysis.enabled", "the per-token occurrence analysis", err) != 0)
        return -1;
    int64_t plot_tokens = 0;
    if (positive(cfg, KEY "batch_size", 1, &st->batch_size, err) != 0 ||
        positive(cfg, KEY "max_samples", 1, &st->max_samples, err) != 0 ||
        positive(cfg, KEY "max_tokens_per_sample", 1, &st->n, err) != 0 ||
        positive(cfg, KEY "top_k", 1, &st->top_k, err) != 0 ||
        positive(cfg, KEY "pre_assistant_k", 0, &st->k_pre, err) != 0 ||
        positive(cfg, KEY "visualization.num_tokens_to_plot", 0, &plot_tokens, err) != 0 ||
        positive(cfg, KEY "agent.overview.top_k_tokens", 0, &st->top_k_tokens, err) != 0)
        return -1;
    st->num_tokens = plot_tokens > st->top_k ? plot_tokens : st->top_k; /* the seed: max(num_tokens_to_plot, top_k) */
    st->max_vocab = -1;
    if (dk_cfg_has(cfg, KEY "max_vocab_size") && positive(cfg, KEY "max_vocab_size", 1, &st->max_vocab, err) != 0)
        return -1;

    /* orderings */
    const dk_cfg_node *list = dk_cfg_get(cfg, KEY "token_ordering.method");
    if (!list || list->kind != DK_CFG_SEQ || list->n == 0 || list->n > 3)
        return dk_err_set(err, DK_EXIT_USAGE, KEY "token_ordering.method must be a non-empty list of top_k_occurring, "
                          "fraction_positive_diff, nmf");
    static const char *const names[3] = {"top_k_occurring", "fraction_positive_diff", "nmf"};
    for (size_t i = 0; i < list->n; i++) {
        const char *name = list->items[i]->kind == DK_CFG_SCALAR ? list->items[i]->text : "?";
        int t = -1;
        for (int k = 0; k < 3; k++)
            if (strcmp(name, names[k]) == 0) t = k;
        if (t < 0)
            return dk_err_set(err, DK_EXIT_USAGE, KEY "token_ordering.method[%zu] = %s: expected one of "
                              "top_k_occurring, fraction_positive_diff, nmf", i, name);
        for (int k = 0; k < st->n_types; k++)
            if ((int)st->types[k] == t)
                return dk_err_set(err, DK_EXIT_USAGE, KEY "token_ordering.method lists %s twice", name);
        st->types[st->n_types++] = (dm_ordering_type)t;
    }
    int64_t topics = 0, topn = 0;
    double beta = 0, weight = 0;
    bool enabled = false, orthogonal = false;
    const char *mode = NULL;
    if (positive(cfg, KEY "token_ordering.nmf.num_topics", 1, &topics, err) != 0 ||
        positive(cfg, KEY "token_ordering.nmf.top_n_tokens_per_topic", 1, &topn, err) != 0 ||
        dk_cfg_try_float(cfg, KEY "token_ordering.nmf.beta", &beta, err) != 0 ||
        dk_cfg_try_float(cfg, KEY "token_ordering.nmf.orthogonal_weight", &weight, err) != 0 ||
        dk_cfg_try_bool(cfg, KEY "token_ordering.nmf.enabled", &enabled, err) != 0 ||
        dk_cfg_try_bool(cfg, KEY "token_ordering.nmf.orthogonal", &orthogonal, err) != 0 ||
        dk_cfg_try_str(cfg, KEY "token_ordering.nmf.mode", false, &mode, err) != 0)
        return -1;
    bool want_nmf = false;
    for (int k = 0; k < st->n_types; k++) want_nmf |= st->types[k] == DM_NMF;
    if (want_nmf) {
        if (!enabled)
            return dk_err_set(err, DK_EXIT_USAGE, KEY "token_ordering.nmf.enabled = false but nmf is listed in "
                              KEY "token_ordering.method: remove it there or enable it (the seed refuses this too)");
        if (topics > DK_NMF_MAX_RANK)
            return dk_err_set(err, DK_EXIT_USAGE, KEY "token_ordering.nmf.num_topics = %lld: at most %d topics are "
                              "supported", (long long)topics, DK_NMF_MAX_RANK);
        if (beta != 2.0)
            return dk_err_set(err, DK_EXIT_USAGE, KEY "token_ordering.nmf.beta = %g: only 2 (Frobenius, the seed's "
                              "default) is implemented", beta);
        if (orthogonal)
            return dk_err_set(err, DK_EXIT_USAGE, KEY "token_ordering.nmf.orthogonal = true: the orthogonal NMF is not "
                              "implemented in diffkit yet; set it to false");
        if (strcmp(mode, "logit_diff_magnitude") != 0 && strcmp(mode, "binary_occurrence") != 0)
            return dk_err_set(err, DK_EXIT_USAGE, KEY "token_ordering.nmf.mode = %s: expected logit_diff_magnitude or "
                              "binary_occurrence", mode);
    }
    st->binary = strcmp(mode, "binary_occurrence") == 0;
    st->nmf = (dm_nmf_settings){(int)topics, (uint64_t)job->seed, job->threads, mode};
    char b[64], w[64];
    py_float_repr(beta, b, sizeof b);
    py_float_repr(weight, w, sizeof w);
    for (char *p = b; *p; p++) *p = *p == '.' ? 'p' : *p;
    for (char *p = w; *p; p++) *p = *p == '.' ? 'p' : *p;
    snprintf(st->nmf_dir, sizeof st->nmf_dir, "nmf_topics%lld_topn%lld_mode_%s_beta%s_orth%s_w%s", (long long)topics,
             (long long)topn, mode, b, orthogonal ? "true" : "false", w);
    if (dk_cfg_try_str(cfg, KEY "agent.overview.ordering_type", false, &st->overview_type, err) != 0) return -1;
    bool listed = false;
    for (int k = 0; k < st->n_types; k++) listed |= strcmp(names[st->types[k]], st->overview_type) == 0;
    if (!listed)
        return dk_err_set(err, DK_EXIT_USAGE, KEY "agent.overview.ordering_type = %s is not among "
                          KEY "token_ordering.method: the overview could not be built", st->overview_type);
    return 0;
}

/* The compared vocabulary: the seed's _maybe_slice_vocab. */
static int compared_vocab(dm_state *st, const dk_method_job *job, dk_err *err) {
    bool drop_new = false;
    if (dk_cfg_try_bool(job->cfg, KEY "drop_new_tokens", &drop_new, err) != 0) return -1;
    const int64_t vb = job->pair.vocab_size, vf = job->pair.ft_vocab_size; /* config.json: prepare runs before the models load */
    if (vb != vf && !drop_new)
        return dk_err_set(err, DK_EXIT_USAGE, "the base model has %lld logits and the finetuned model %lld: set "
                          KEY "drop_new_tokens=true to compare the first %lld", (long long)vb, (long long)vf,
                          (long long)(vb < vf ? vb : vf));
    st->V = vb < vf ? vb : vf;
    if (st->max_vocab > 0 && st->max_vocab < st->V) st->V = st->max_vocab;
    if (st->top_k > st->V)
        return dk_err_set(err, DK_EXIT_USAGE, KEY "top_k = %lld is more than the %lld tokens compared", (long long)st->top_k,
                          (long long)st->V);
    return 0;
}

/* One entry of diffing.method.datasets: resolved, named as the seed names it, its samples selected. */
static int load_dataset(dm_state *st, dk_method_job *job, size_t i, dm_dataset *ds, dk_err *err) {
    const dk_cfg *cfg = job->cfg;
    char key[160];
    const char *id = NULL, *split = NULL, *column = NULL;
    bool is_chat = false, streaming = false; /* the seed: dataset_entry.get("streaming", False) */
    snprintf(key, sizeof key, KEY "datasets.%zu", i);
    const dk_cfg_node *entry = dk_cfg_get(cfg, key);
    if (!entry || entry->kind != DK_CFG_MAP)
        return dk_err_set(err, DK_EXIT_USAGE, "%s must be a mapping {id: ..., is_chat: ..., text_column: ...}", key);
    snprintf(key, sizeof key, KEY "datasets.%zu.id", i);
    if (dk_cfg_try_str(cfg, key, false, &id, err) != 0) return -1;
    snprintf(key, sizeof key, KEY "datasets.%zu.is_chat", i);
    if (dk_cfg_try_bool(cfg, key, &is_chat, err) != 0) return -1;
    snprintf(key, sizeof key, KEY "datasets.%zu.streaming", i);
    if (dk_cfg_get(cfg, key) && dk_cfg_try_bool(cfg, key, &streaming, err) != 0) return -1;
    snprintf(key, sizeof key, KEY "datasets.%zu.subset", i);
    if (dk_cfg_has(cfg, key))
        return dk_err_set(err, DK_EXIT_USAGE, "%s is set: subsets are for Hugging Face datasets, which diffkit does not "
                          "download; give the subset's local file as the id", key);
    snprintf(key, sizeof key, KEY "datasets.%zu.%s", i, is_chat ? "messages_column" : "text_column");
    column = is_chat ? "messages" : "text";
    if (dk_cfg_has(cfg, key) && dk_cfg_try_str(cfg, key, false, &column, err) != 0) return -1;
    if (!is_chat && !streaming) {
        snprintf(key, sizeof key, KEY "datasets.%zu.streaming", i);
        return dk_err_set(err, DK_EXIT_USAGE, "%s = false: the seed then shuffles the dataset with datasets.shuffle(seed), "
                          "which diffkit does not reproduce; it reads datasets in file order (streaming: true)", key);
    }
    if (dk_cfg_try_str(cfg, KEY "split", false, &split, err) != 0) return -1;
    snprintf(key, sizeof key, KEY "datasets.%zu.id", i);
    char *short_name = NULL;
    if (dk_pp_resolve_dataset(id, split, key, &ds->path, &short_name, err) != 0) return -1;
    ds->name = dk_sprintf("%s_%s_%s", short_name, split, column);
    free(short_name);
    ds->id = dk_strdup(id);
    ds->column = dk_strdup(column);
    ds->is_chat = is_chat;
    for (int k = 0; k < st->n_datasets; k++)
        if (strcmp(st->ds[k].name, ds->name) == 0)
            return dk_err_set(err, DK_EXIT_USAGE, KEY "datasets lists %s twice (%s)", ds->name, id);
    int64_t debug = 0;
    if (dk_cfg_has(cfg, KEY "debug_print_samples") && dk_cfg_try_int(cfg, KEY "debug_print_samples", &debug, err) != 0)
        return -1;
    dm_load_options o = {.n = st->n, .max_samples = st->max_samples, .pre_assistant_k = st->k_pre,
                         .debug_print = job->d.rank == 0 ? debug : 0, .bos_token = job->pair.bos_token};
    if (is_chat) {
        const char *family = NULL;
        if (dk_cfg_try_str(cfg, "model.chat_template", false, &family, err) != 0 ||
            dk_chat_family_from_name(family, &o.family, err) != 0)
            return -1;
        if (job->d.rank == 0)
            LOG_WARN("diff_mining %s: chat datasets are read in file order; the seed shuffles them with "
                     "datasets.shuffle(seed) first", ds->name);
    }
    if (dm_dataset_load(ds, job->tok, &o, err) != 0) return -1;
    dk_method_input(job, "dataset", "%s %s %016llx: %lld samples, %lld tokens", ds->name, ds->path,
                    (unsigned long long)ds->content_hash, (long long)ds->n, (long long)ds->n_tokens);
    return 0;
}

static int dm_prepare(dk_method_job *job, dk_err *err) {
    dm_state *st = dk_calloc(1, sizeof *st);
    job->state = st;
    if (read_settings(st, job, err) != 0 || compared_vocab(st, job, err) != 0) return -1;
    const dk_cfg_node *list = dk_cfg_get(job->cfg, KEY "datasets");
    if (!list || list->kind != DK_CFG_SEQ || list->n == 0)
        return dk_err_set(err, DK_EXIT_USAGE, KEY "datasets must be a non-empty list of {id, is_chat, text_column | "
                          "messages_column}");
    st->ds = dk_calloc(list->n, sizeof *st->ds);
    for (size_t i = 0; i < list->n; i++) {
        int rc = load_dataset(st, job, i, &st->ds[st->n_datasets], err);
        st->n_datasets++;
        if (rc != 0) return -1;
    }
    /* the overview's datasets: the configured ones, else all (sorted by name, as the seed lists folders) */
    const dk_cfg_node *ov = dk_cfg_get(job->cfg, KEY "agent.overview.datasets");
    const size_t n_ov = ov && ov->kind == DK_CFG_SEQ ? ov->n : 0;
    st->overview = dk_malloc((n_ov > (size_t)st->n_datasets ? n_ov : (size_t)st->n_datasets) * sizeof *st->overview);
    if (n_ov > 0) {
        for (size_t i = 0; i < ov->n; i++) {
            const char *name = ov->items[i]->kind == DK_CFG_SCALAR ? ov->items[i]->text : "?";
            int found = -1;
            for (int k = 0; k < st->n_datasets; k++)
                if (strcmp(st->ds[k].name, name) == 0) found = k;
            if (found < 0)
                return dk_err_set(err, DK_EXIT_USAGE, KEY "agent.overview.datasets[%zu] = %s is not a dataset of this "
                                  "run (its datasets are named <id tail>_<split>_<column>, e.g. %s)", i, name,
                                  st->ds[0].name);
            st->overview[st->n_overview++] = found;
        }
    } else {
        for (int k = 0; k < st->n_datasets; k++) {
            int at = st->n_overview++;
            while (at > 0 && strcmp(st->ds[st->overview[at - 1]].name, st->ds[k].name) > 0)
                st->overview[at] = st->overview[at - 1], at--;
            st->overview[at] = k;
        }
    }
    dk_method_input(job, "seed", "%lld", (long long)job->seed);
    dk_method_input(job, "vocabulary compared", "%lld", (long long)st->V);
    /* the seed's run folder: <results_dir>/diff_mining/seed{seed}_top{top_k} */
    char *run_dir = dk_sprintf("%s/seed%lld_top%lld", job->results_dir, (long long)job->seed, (long long)st->top_k);
    free(job->results_dir);
    job->results_dir = run_dir;
    return 0;
}

/* ---- one dataset -------------------------------------------------------------------------------------------- */

typedef struct dm_packed {
    int32_t *ints;
    float *floats;
    int64_t n_ints, n_floats;
} dm_packed;

/* Names the model and sample of a non-finite logit. */
static int nonfinite_logits(const dk_method_job *job, const dm_dataset *ds, const float *logits, int64_t T, int64_t V,
                            int64_t s0, const int64_t *seq_start, int64_t n_seqs, bool finetuned, dk_err *err) {
    dk_nonfinite_at at;
    if (!dk_first_nonfinite_in_batch(logits, T, V, seq_start, n_seqs, &at)) return 0;
    return dk_err_set(err, DK_EXIT_RUNTIME, "%s produced non-finite logits (%s) on %s, sample %lld (%s line %lld), "
                      "token %lld: check the %s weights (adapter scale, NaN in the checkpoint)",
                      finetuned ? job->pair.ft_id : job->pair.base_id, dk_nonfinite_name(at.value), ds->name,
                      (long long)(s0 + at.seq), ds->path, (long long)ds->line_no[s0 + at.seq], (long long)at.token,
                      finetuned ? "finetuned model's" : "base model's");
}

/* Batch [s0, s1) of ds: both forwards, the diff at the analysed positions, the statistics. */
static int run_batch(dk_method_job *job, const dm_state *st, const dm_dataset *ds, int64_t s0, int64_t s1,
                     float *logits[2], float *diff, dm_accum *acc, dm_packed *out, dk_err *err) {
    const int64_t n = s1 - s0, t0 = ds->offsets[s0], T = ds->offsets[s1] - t0;
    int64_t *ids = dk_malloc((size_t)T * sizeof *ids), *seq_start = dk_malloc((size_t)(n + 1) * sizeof *seq_start);
    for (int64_t t = 0; t < T; t++) ids[t] = ds->ids[t0 + t];
    for (int64_t i = 0; i <= n; i++) seq_start[i] = ds->offsets[s0 + i] - t0;
    dk_batch batch = {ids, T, seq_start, n, true};
    int64_t Vm[2];
    int rc = 0;
    for (int side = 0; side < 2 && rc == 0; side++) {
        Vm[side] = dk_model_pair_model(&job->pair, side == 1)->cfg.vocab_size;
        dk_hook_plan plan = {.logits = DK_LOGITS_ALL, .logits_out = logits[side]};
        rc = dk_model_pair_forward(&job->pair, side == 1, &batch, &plan, err);
        if (rc == 0) rc = nonfinite_logits(job, ds, logits[side], T, Vm[side], s0, seq_start, n, side == 1, err);
    }
    if (rc == 0) {
        const int64_t V = st->V, rows = n * ds->n_pos;
        for (int64_t i = 0; i < n; i++)
            for (int64_t p = 0; p < ds->n_pos; p++) {
                const int64_t t = seq_start[i] + ds->first_pos[s0 + i] + p;
                const float *b = logits[0] + t * Vm[0], *f = logits[1] + t * Vm[1];
                float *d = diff + (i * ds->n_pos + p) * V;
                for (int64_t v = 0; v < V; v++) d[v] = f[v] - b[v];
            }
        dm_nmf_part part;
        dm_collect_batch(acc, diff, rows, st->top_k, st->binary, &part);
        dm_nmf_part_pack(&part, &out->ints, &out->n_ints, &out->floats, &out->n_floats);
        dm_nmf_part_free(&part);
    }
    free(ids);
    free(seq_start);
    return rc;
}

/* The NMF parts to rank 0 in batch order: round r carries batch r·nranks + i from rank i. */
static void gather_parts(const dk_method_job *job, dm_packed *mine, int64_t n_batches, dm_nmf_builder *b) {
    const dk_dist *d = &job->d;
    int *counts = d->rank == 0 ? dk_malloc((size_t)d->nranks * 2 * sizeof *counts) : NULL;
    int *displ = d->rank == 0 ? dk_malloc((size_t)d->nranks * 2 * sizeof *displ) : NULL;
    for (int64_t round = 0; round * d->nranks < n_batches; round++) {
        const int64_t my_b = round * d->nranks + d->rank;
        const dm_packed *p = my_b < n_batches ? &mine[round] : NULL;
        const int n_i = p ? (int)p->n_ints : 0, n_f = p ? (int)p->n_floats : 0;
        int both[2] = {n_i, n_f}, *all = d->rank == 0 ? dk_malloc((size_t)d->nranks * 2 * sizeof *all) : NULL;
        MPI_CHECK(MPI_Gather(both, 2, MPI_INT, all, 2, MPI_INT, 0, d->comm));
        int64_t ti = 0, tf = 0;
        if (d->rank == 0)
            for (int r = 0; r < d->nranks; r++) {
                counts[r] = all[2 * r], displ[r] = (int)ti, ti += all[2 * r];
                counts[d->nranks + r] = all[2 * r + 1], displ[d->nranks + r] = (int)tf, tf += all[2 * r + 1];
            }
        int32_t *ints = d->rank == 0 ? dk_malloc((size_t)(ti ? ti : 1) * sizeof *ints) : NULL;
        float *floats = d->rank == 0 ? dk_malloc((size_t)(tf ? tf : 1) * sizeof *floats) : NULL;
        MPI_CHECK(MPI_Gatherv(p ? p->ints : NULL, n_i, MPI_INT32_T, ints, counts, displ, MPI_INT32_T, 0, d->comm));
        MPI_CHECK(MPI_Gatherv(p ? p->floats : NULL, n_f, MPI_FLOAT, floats, counts ? counts + d->nranks : NULL,
                              displ ? displ + d->nranks : NULL, MPI_FLOAT, 0, d->comm));
        if (d->rank == 0)
            for (int r = 0; r < d->nranks && round * d->nranks + r < n_batches; r++) {
                dm_nmf_part part;
                dm_nmf_part_view(ints + displ[r], floats + displ[d->nranks + r], &part);
                dm_nmf_builder_add(b, &part);
            }
        free(all), free(ints), free(floats);
    }
    free(counts), free(displ);
}

static void reduce_i64(const dk_dist *d, int64_t *v, int64_t n) {
    int64_t *out = d->rank == 0 ? dk_malloc((size_t)n * sizeof *out) : NULL;
    MPI_CHECK(MPI_Reduce(v, out, (int)n, MPI_INT64_T, MPI_SUM, 0, d->comm));
    if (d->rank == 0) {
        memcpy(v, out, (size_t)n * sizeof *v);
        free(out);
    }
}

/* The per-token statistics of ds in results.h5 and {dataset}_global_token_stats.json. */
static void write_statistics(dk_method_job *job, const dm_dataset *ds, const dm_totals *t) {
    dk_results *r = &job->res;
    char path[512];
    const int64_t V = t->V, n1 = ds->n + 1;
#define DM_PATH(leaf) (snprintf(path, sizeof path, "%s/%s", ds->name, leaf), path)
    dk_results_f64(r, DM_PATH("sum_logit_diff"), 1, &V, t->sum);
    dk_results_i64(r, DM_PATH("count_positive"), 1, &V, t->count_pos);
    dk_results_i64(r, DM_PATH("topk_pos_counts"), 1, &V, t->topk_pos);
    dk_results_i64(r, DM_PATH("topk_neg_counts"), 1, &V, t->topk_neg);
    dk_results_i32(r, DM_PATH("tokens"), 1, &ds->n_tokens, ds->ids);
    dk_results_i64(r, DM_PATH("sample_offsets"), 1, &n1, ds->offsets);
    dk_results_i64(r, DM_PATH("first_position"), 1, &ds->n, ds->first_pos);
    dk_results_i64(r, DM_PATH("line_number"), 1, &ds->n, ds->line_no);
#undef DM_PATH
    dk_results_attr_str(r, ds->name, "dataset_id", ds->id);
    dk_results_attr_str(r, ds->name, "path", ds->path);
    dk_results_attr_i64(r, ds->name, "is_chat", ds->is_chat);
    dk_results_attr_i64(r, ds->name, "num_samples", ds->n);
    dk_results_attr_i64(r, ds->name, "positions_per_sample", ds->n_pos);
    dk_results_attr_i64(r, ds->name, "total_positions", t->positions);
    dk_results_attr_i64(r, ds->name, "vocab_size", V);

    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "dataset_name", ds->name);
    cJSON_AddNumberToObject(j, "num_samples", (double)ds->n);
    cJSON_AddNumberToObject(j, "total_positions_analyzed", (double)t->positions);
    cJSON_AddNumberToObject(j, "num_unique_tokens", (double)V);
    cJSON *list = cJSON_AddArrayToObject(j, "global_token_stats");
    for (int64_t v = 0; v < V; v++) {
        cJSON *x = cJSON_CreateObject();
        const char *token = dk_tokenizer_id_to_token(job->tok, (int32_t)v);
        cJSON_AddItemToObject(x, "token", token ? cJSON_CreateString(token) : cJSON_CreateNull());
        cJSON_AddNumberToObject(x, "token_id", (double)v);
        cJSON_AddNumberToObject(x, "sum_logit_diff", (double)(float)t->sum[v]); /* the seed's sum is float32 */
        cJSON_AddNumberToObject(x, "count_positive", (double)t->count_pos[v]);
        cJSON_AddItemToArray(list, x);
    }
    snprintf(path, sizeof path, "%s_global_token_stats.json", ds->name);
    dk_results_json(r, path, j);
}

static int run_dataset(dk_method_job *job, dm_state *st, dm_dataset *ds, cJSON *groups, dk_err *err) {
    const dk_dist *d = &job->d;
    const int64_t n_batches = (ds->n + st->batch_size - 1) / st->batch_size;
    int64_t max_T = 0;
    for (int64_t s0 = 0; s0 < ds->n; s0 += st->batch_size) {
        const int64_t s1 = s0 + st->batch_size < ds->n ? s0 + st->batch_size : ds->n;
        if (ds->offsets[s1] - ds->offsets[s0] > max_T) max_T = ds->offsets[s1] - ds->offsets[s0];
    }
    const int64_t Vb = dk_model_pair_model(&job->pair, false)->cfg.vocab_size;
    const int64_t Vf = dk_model_pair_model(&job->pair, true)->cfg.vocab_size;
    const int64_t rows = st->batch_size * ds->n_pos;
    const uint64_t need = ((uint64_t)max_T * (uint64_t)(Vb + Vf) + (uint64_t)rows * (uint64_t)st->V) * sizeof(float);
    int rc = dk_host_memory_check(need, "diff_mining's logits of both models and their difference for one batch",
                                  "lower diffing.method.batch_size or max_tokens_per_sample", err);
    if (dk_dist_agree(d, err) != 0) return -1;
    float *logits[2] = {dk_malloc((size_t)(max_T * Vb) * sizeof(float)), dk_malloc((size_t)(max_T * Vf) * sizeof(float))};
    float *diff = dk_malloc((size_t)(rows * st->V) * sizeof(float));
    dm_accum acc;
    dm_accum_init(&acc, st->V);
    const int64_t my_rounds = (n_batches + d->nranks - 1) / d->nranks;
    dm_packed *mine = dk_calloc((size_t)(my_rounds ? my_rounds : 1), sizeof *mine);
    char label[200];
    snprintf(label, sizeof label, "diff_mining %s", ds->name);
    dk_progress prog;
    dk_progress_begin(&prog, label, (double)ds->n, "samples");
    for (int64_t b = 0; b < n_batches && rc == 0; b++) {
        if (b % d->nranks != d->rank) continue;
        const int64_t s0 = b * st->batch_size, s1 = s0 + st->batch_size < ds->n ? s0 + st->batch_size : ds->n;
        rc = run_batch(job, st, ds, s0, s1, logits, diff, &acc, &mine[b / d->nranks], err);
        dk_progress_add(&prog, (double)(s1 - s0) * d->nranks); /* rank 0 sees its share: an estimate of the whole */
    }
    dk_progress_end(&prog);
    free(logits[0]), free(logits[1]), free(diff);
    if (dk_dist_agree(d, err) != 0) rc = -1;
    dm_nmf_builder builder = {0};
    if (rc == 0) {
        /* exact reductions: integer counts and fixed-point sums */
        reduce_i64(d, acc.topk_pos, st->V);
        reduce_i64(d, acc.topk_neg, st->V);
        reduce_i64(d, acc.count_pos, st->V);
        reduce_i64(d, acc.sum_hi, st->V);
        reduce_i64(d, acc.sum_lo, st->V);
        acc.positions = dk_dist_sum_i64(d, acc.positions);
        if (d->rank == 0) dm_nmf_builder_init(&builder, st->V);
        gather_parts(job, mine, n_batches, &builder);
    }
    for (int64_t i = 0; i < my_rounds; i++) free(mine[i].ints), free(mine[i].floats);
    free(mine);
    if (rc == 0 && d->rank == 0) {
        double *sum = dk_malloc((size_t)st->V * sizeof *sum);
        for (int64_t v = 0; v < st->V; v++) sum[v] = dm_accum_sum(&acc, v);
        dm_totals t = {st->V, acc.positions, ds->n, acc.topk_pos, acc.topk_neg, acc.count_pos, sum};
        write_statistics(job, ds, &t);
        cJSON *mine_groups = cJSON_AddObjectToObject(groups, ds->name);
        for (int k = 0; k < st->n_types && rc == 0; k++) {
            dm_type_result res;
            int made = 1;
            if (st->types[k] == DM_NMF) {
                made = dm_order_nmf(&t, &builder, &st->nmf, st->num_tokens, &res, err);
                snprintf(res.dir, sizeof res.dir, "%s", st->nmf_dir);
                if (made == 0)
                    LOG_WARN("diff_mining %s: no positive top-k value anywhere: no NMF topics (the seed writes "
                             "nothing for nmf then)", ds->name);
                else if (made > 0)
                    LOG_INFO("diff_mining %s: NMF of %lld positions x %lld tokens (%lld values): %d iterations, "
                             "reconstruction error %.6g", ds->name, (long long)res.fit.rows, (long long)res.fit.cols,
                             (long long)res.nnz, res.fit.n_iter, res.error);
            } else {
                dm_order_simple(&t, st->types[k], st->num_tokens, &res);
            }
            if (made < 0) rc = -1;
            if (made > 0) {
                dm_write_orderings(&job->res, job->tok, ds->name, &res, &st->nmf);
                cJSON_AddItemToObject(mine_groups, res.type_id, dm_token_groups(&res, job->tok, st->top_k_tokens));
            }
            if (made > 0 && st->types[k] == DM_TOP_K_OCCURRING) {
                char line[1024] = "";
                for (int64_t e = 0; e < res.o[0].n && e < 12; e++) {
                    char *s = dm_token_str(job->tok, res.o[0].e[e].token_id);
                    snprintf(line + strlen(line), sizeof line - strlen(line), "%s'%s' %.1f%%", e ? ", " : "", s,
                             res.o[0].e[e].value);
                    free(s);
                }
                LOG_INFO("diff_mining %s: %lld samples, %lld positions; top_k_occurring: %s", ds->name,
                         (long long)ds->n, (long long)t.positions, line);
            }
            dm_type_result_free(&res);
        }
        free(sum);
    }
    if (d->rank == 0) dm_nmf_builder_free(&builder);
    dm_accum_free(&acc);
    return rc;
}

/* ---- the run -------------------------------------------------------------------------------------------------- */

static cJSON *run_metadata(const dk_method_job *job, const dm_state *st) {
    static const char *const names[3] = {"top_k_occurring", "fraction_positive_diff", "nmf"};
    cJSON *m = cJSON_CreateObject();
    char when[32];
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", localtime(&now));
    cJSON_AddStringToObject(m, "timestamp", when);
    cJSON_AddNumberToObject(m, "seed", (double)job->seed);
    cJSON_AddNumberToObject(m, "max_samples", (double)st->max_samples);
    cJSON_AddNumberToObject(m, "max_tokens_per_sample", (double)st->n);
    cJSON_AddNumberToObject(m, "top_k", (double)st->top_k);
    cJSON_AddStringToObject(m, "logit_extraction_method", "logits");
    cJSON_AddNullToObject(m, "logit_lens_layer");
    cJSON_AddStringToObject(m, "base_model", job->pair.base_id);
    cJSON_AddStringToObject(m, "finetuned_model", job->pair.ft_id);
    if (st->max_vocab > 0) cJSON_AddNumberToObject(m, "max_vocab_size", (double)st->max_vocab);
    else cJSON_AddNullToObject(m, "max_vocab_size");
    cJSON *list = cJSON_AddArrayToObject(m, "ordering_methods");
    bool nmf = false;
    for (int k = 0; k < st->n_types; k++) {
        cJSON_AddItemToArray(list, cJSON_CreateString(names[st->types[k]]));
        nmf |= st->types[k] == DM_NMF;
    }
    cJSON_AddBoolToObject(m, "nmf_enabled", nmf);
    if (nmf) {
        cJSON *c = cJSON_AddObjectToObject(m, "nmf_config");
        cJSON_AddNumberToObject(c, "num_topics", st->nmf.num_topics);
        cJSON_AddNumberToObject(c, "beta", 2.0);
        cJSON_AddStringToObject(c, "mode", st->nmf.mode);
        cJSON_AddBoolToObject(c, "orthogonal", false);
    }
    return m;
}

/* summary.json: the DiffMiningAgent's overview (agent_tools.get_overview) and every ordering's token groups. */
static cJSON *summary(const dk_method_job *job, const dm_state *st, cJSON *groups) {
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "method", "diff_mining");
    cJSON_AddStringToObject(s, "logit_extraction_method", "logits");
    const char *wanted = dk_cfg_str_or_null(job->cfg, KEY "agent.overview.extraction_method");
    cJSON_AddStringToObject(s, "overview_extraction_method_configured", wanted ? wanted : "");
    cJSON_AddStringToObject(s, "ordering_type", st->overview_type);
    cJSON_AddNumberToObject(s, "top_k_tokens", (double)st->top_k_tokens);
    cJSON *ov = cJSON_AddObjectToObject(cJSON_AddObjectToObject(s, "overview"), "datasets");
    cJSON *mapping = cJSON_AddObjectToObject(s, "dataset_mapping");
    for (int i = 0; i < st->n_overview; i++) {
        const dm_dataset *ds = &st->ds[st->overview[i]];
        char anon[32];
        snprintf(anon, sizeof anon, "ds%d", i + 1);
        cJSON_AddStringToObject(mapping, anon, ds->name);
        const cJSON *g = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(groups, ds->name),
                                                          st->overview_type);
        cJSON *entry = cJSON_AddObjectToObject(ov, anon);
        cJSON *copy = g ? cJSON_Duplicate(g, true) : cJSON_CreateArray();
        int64_t shown = 0;
        for (cJSON *it = copy->child; it; it = it->next) shown += cJSON_GetArraySize(it);
        cJSON_AddItemToObject(entry, "token_groups", copy);
        cJSON_AddNumberToObject(entry, "num_samples", (double)st->max_samples); /* the seed: run_metadata's max_samples */
        cJSON *meta = cJSON_AddObjectToObject(entry, "metadata");
        cJSON_AddNumberToObject(meta, "num_token_groups", cJSON_GetArraySize(copy));
        cJSON_AddNumberToObject(meta, "num_tokens_shown", (double)shown);
    }
    cJSON_AddItemToObject(s, "token_groups", groups);
    return s;
}

static int dm_run(dk_method_job *job, dk_err *err) {
    dm_state *st = job->state;
    cJSON *groups = cJSON_CreateObject();
    int rc = 0;
    for (int i = 0; i < st->n_datasets && rc == 0; i++) rc = run_dataset(job, st, &st->ds[i], groups, err);
    if (rc == 0) {
        dk_results_attr_str(&job->res, "", "logit_extraction_method", "logits");
        dk_results_attr_i64(&job->res, "", "seed", job->seed);
        dk_results_attr_i64(&job->res, "", "top_k", st->top_k);
        dk_results_attr_i64(&job->res, "", "max_samples", st->max_samples);
        dk_results_attr_i64(&job->res, "", "max_tokens_per_sample", st->n);
        if (job->d.rank == 0) dk_results_json(&job->res, "run_metadata.json", run_metadata(job, st));
        dk_results_summary(&job->res, summary(job, st, groups));
    } else {
        cJSON_Delete(groups);
    }
    return rc;
}

static void dm_free(dk_method_job *job) {
    dm_state *st = job->state;
    if (!st) return;
    for (int i = 0; i < st->n_datasets; i++) dm_dataset_free(&st->ds[i]);
    free(st->ds);
    free(st->overview);
    free(st);
    job->state = NULL;
}

const dk_method_spec dk_method_diff_mining = {
    .job = "diff_mining",
    .method = "diff_mining",
    .results_subdir = "diff_mining",
    .usage = "Which tokens the finetune pushes up: both models' logits at every position of the first samples of\n"
             "each dataset, the top-k largest and smallest differences per position, and orderings of the\n"
             "vocabulary (top-k occurrence, fraction of positive shifts, NMF token topics). Runs both models itself\n"
             "(no activation store). Settings: diffing.method.* (configs/diffing/method/diff_mining.yaml).\n"
             "    mpirun -n 2 diff_mining organism=NAME model=NAME [diffing.method.max_samples=1024]\n",
    .needs_models = true,
    .prepare = dm_prepare,
    .run = dm_run,
    .free_state = dm_free,
};
