/* activation_analysis.c — the activation analysis method (diff_activation_analysis; seed_spec §11): no model
 * runs; for every configured dataset (train split) and every cached layer it reads the two activation stores
 * and computes, per token, ‖ft − base‖, 1 − cos(base, ft), ‖base‖ and ‖ft‖ (kernels/cpu/diffops.h), then
 * statistics, histogram data, six max-activating tables and running means of ft − base (all tokens, positions
 * 0..4, each token of the empty chat template). Writing is activation_analysis_out.c.
 *
 * As the seed does it (activation_analysis/method.py):
 *   - sequences: the first method_params.max_samples of the store, those of 2 tokens or more;
 *   - skip_first_n_tokens: n = model.ignore_first_n_tokens_per_sample_during_training; a sequence's scores
 *     (max or mean of a metric) use positions n.. only, and its first n values of norm_diff, cos_dist,
 *     norm_base and norm_finetuned are set to 0 before they enter the tables, statistics and histograms (the
 *     running means and the cosine similarity histogram see every position). A sequence of n tokens or fewer
 *     has no position to score (the seed fails on it): it is left out and counted;
 *   - the running means see every position of every processed sequence.
 * Differences from the seed, on purpose: the metrics are computed in double from the stored bf16 values (the
 * seed computes them in bf16 arithmetic, so its values carry bf16 rounding), and the running means are exact
 * sums (bf16_sum.h) divided by the count (the seed's running mean is updated in bf16).
 *
 * Work split: the processed sequences are cut into one contiguous range per rank (balanced by tokens). Every
 * per-token value depends on its token only, the running means are exact sums, the tables merge in a total
 * order and the per-token values are gathered in sequence order: 1, 2 or 3 ranks give identical files. */
#include "methods/activation_analysis.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/node.h"
#include "core/check_mpi.h"
#include "core/finite.h"
#include "core/host_memory.h"
#include "core/log.h"
#include "core/progress.h"
#include "kernels/cpu/diffops.h"
#include "kernels/dtype_convert.h"
#include "methods/methods.h"
#include "tokenizer/chat_template.h"

const char *const AA_TABLES[AA_N_TABLES] = {"norm_diff", "mean_norm_diff", "cos_dist", "mean_cos_dist", "norm_base",
                                            "norm_finetuned"};
static const char *const POSITION_NAMES[AA_N_POSITIONS] = {"first_token", "second_token", "third_token",
                                                           "fourth_token", "fifth_token"};
static const char *const GROUPS[3] = {"dataset.chat", "dataset.pretraining", "organism.dataset"};
static const char *const USE_KEYS[3] = {"diffing.method.datasets.use_chat_dataset",
                                        "diffing.method.datasets.use_pretraining_dataset",
                                        "diffing.method.datasets.use_training_dataset"};
static const char STATS_KEY[] = "diffing.method.analysis.statistics";

/* ---- settings --------------------------------------------------------------------------------------------- */

/* analysis.statistics: the seed's list [mean, std, median, {percentiles: [...]}, max, min]. The seed reports
 * mean, std, median, min and max whatever the list says and takes the percentiles from it; so does this. */
static int read_statistics(const dk_cfg *cfg, aa_state *st, dk_err *err) {
    const dk_cfg_node *list = dk_cfg_get(cfg, STATS_KEY);
    if (!list || list->kind != DK_CFG_SEQ)
        return dk_err_set(err, DK_EXIT_USAGE, "%s must be a list like [mean, std, median, {percentiles: [25, 75]}, "
                          "max, min]", STATS_KEY);
    for (size_t i = 0; i < list->n; i++) {
        const dk_cfg_node *it = list->items[i];
        char where[512];
        dk_cfg_node_where(it, where, sizeof where);
        if (it->kind == DK_CFG_SCALAR) {
            static const char *const known[] = {"mean", "std", "median", "max", "min"};
            bool ok = false;
            for (int k = 0; k < 5; k++) ok |= strcmp(it->text, known[k]) == 0;
            if (!ok)
                return dk_err_set(err, DK_EXIT_USAGE, "%s[%zu] = %s (%s): expected one of mean, std, median, max, min "
                                  "or {percentiles: [...]}", STATS_KEY, i, it->text, where);
            continue;
        }
        const dk_cfg_node *p = it->kind == DK_CFG_MAP && it->n == 1 ? dk_cfg_map_get(it, "percentiles") : NULL;
        if (!p || p->kind != DK_CFG_SEQ)
            return dk_err_set(err, DK_EXIT_USAGE, "%s[%zu] (%s): expected {percentiles: [numbers in 0..100]}",
                              STATS_KEY, i, where);
        for (size_t j = 0; j < p->n; j++) {
            double v;
            if (p->items[j]->kind != DK_CFG_SCALAR || !dk_cfg_parse_float(p->items[j]->text, &v) || !(v >= 0) ||
                !(v <= 100))
                return dk_err_set(err, DK_EXIT_USAGE, "%s[%zu].percentiles[%zu] = %s (%s): expected a number in "
                                  "0..100", STATS_KEY, i, j, p->items[j]->text ? p->items[j]->text : "?", where);
            st->percentiles = realloc(st->percentiles, (size_t)(st->n_percentiles + 1) * sizeof *st->percentiles);
            CHECK(st->percentiles, "out of memory");
            st->percentiles[st->n_percentiles++] = v;
        }
    }
    return 0;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

/* The seed's tokenizer.apply_chat_template([{"role": "user", "content": ""}], tokenize=True,
 * add_generation_prompt=True): the model's template (model.chat_template), encoded without special tokens (the
 * template holds them); distinct ids, ascending. No template (model.chat_template: null): none. */
static int template_tokens(dk_method_job *job, aa_state *st, dk_err *err) {
    const char *name = dk_cfg_str_or_null(job->cfg, "model.chat_template");
    if (!name) {
        if (job->d.rank == 0)
            LOG_INFO("diff_activation_analysis: model.chat_template is null: no running means of chat-template tokens");
        dk_method_input(job, "chat_template_tokens", "none");
        return 0;
    }
    dk_chat_family family;
    if (dk_chat_family_from_name(name, &family, err) != 0) {
        dk_err_prefix(err, "model.chat_template: ");
        return -1;
    }
    const char *config_json = dk_tokenizer_config_json(job->tok);
    char *bos = config_json ? dk_chat_config_bos_token(config_json) : NULL;
    dk_chat_message msg = {.role = "user", .content = ""};
    dk_chat_options opt = {.add_generation_prompt = true, .enable_thinking = -1, .bos_token = bos};
    char *text = dk_chat_render(family, &msg, 1, &opt, err);
    free(bos);
    if (!text) return -1;
    dk_tok_ids ids = {0};
    int rc = dk_tokenizer_encode(job->tok, text, strlen(text), false, &ids, err);
    free(text);
    if (rc != 0) {
        dk_tok_ids_free(&ids);
        return -1;
    }
    qsort(ids.ids, ids.n, sizeof *ids.ids, cmp_i32);
    st->template_ids = dk_malloc((ids.n ? ids.n : 1) * sizeof *st->template_ids);
    for (size_t i = 0; i < ids.n; i++)
        if (st->n_template == 0 || st->template_ids[st->n_template - 1] != ids.ids[i])
            st->template_ids[st->n_template++] = ids.ids[i];
    dk_tok_ids_free(&ids);
    dk_strbuf list = {0};
    for (int64_t i = 0; i < st->n_template; i++) dk_strbuf_printf(&list, "%s%d", i ? "," : "", st->template_ids[i]);
    dk_method_input(job, "chat_template_tokens", "%s %s", name, list.data ? list.data : "");
    dk_strbuf_free(&list);
    return 0;
}

/* Sequences of store pair p the seed processes: among the first max_samples, those of >= 2 tokens, and here
 * also > n_skip tokens. keep (n_seqs) marks them; returns their count, *tokens their tokens, *left_out the
 * others of >= 2 tokens. */
static int64_t select_sequences(const dk_act_pair *p, const aa_state *st, bool *keep, int64_t *tokens,
                                int64_t *left_out) {
    int64_t n = p->n_seqs, kept = 0;
    if (st->max_samples > 0 && st->max_samples < n) n = st->max_samples;
    *tokens = *left_out = 0;
    for (int64_t s = 0; s < p->n_seqs; s++) {
        const int64_t len = p->seq_offsets[s + 1] - p->seq_offsets[s];
        keep[s] = s < n && len >= 2 && len > st->n_skip;
        if (keep[s]) kept++, *tokens += len;
        else if (s < n && len >= 2) (*left_out)++;
    }
    return kept;
}

static int aa_prepare(dk_method_job *job, dk_err *err) {
    aa_state *st = dk_calloc(1, sizeof *st);
    job->state = st;
    const dk_cfg *cfg = job->cfg;
    bool skip = false;
    int64_t n_skip = 0;
    if (dk_cfg_has(cfg, "diffing.method.method_params.max_samples") &&
        dk_cfg_try_int(cfg, "diffing.method.method_params.max_samples", &st->max_samples, err) != 0)
        return -1;
    if (dk_cfg_try_bool(cfg, "diffing.method.method_params.skip_first_n_tokens", &skip, err) != 0 ||
        dk_cfg_try_int(cfg, "diffing.method.analysis.max_activating_examples.num_examples", &st->n_examples, err) != 0 ||
        dk_cfg_try_int(cfg, "model.ignore_first_n_tokens_per_sample_during_training", &n_skip, err) != 0)
        return -1;
    if (dk_cfg_has(cfg, "diffing.method.method_params.max_samples") && st->max_samples < 1)
        return dk_err_set(err, DK_EXIT_USAGE, "diffing.method.method_params.max_samples = %lld: must be at least 1 "
                          "(or null for every sequence)", (long long)st->max_samples);
    if (st->n_examples < 0)
        return dk_err_set(err, DK_EXIT_USAGE, "diffing.method.analysis.max_activating_examples.num_examples = %lld: "
                          "must be >= 0", (long long)st->n_examples);
    if (n_skip < 0)
        return dk_err_set(err, DK_EXIT_USAGE, "model.ignore_first_n_tokens_per_sample_during_training = %lld: must be "
                          ">= 0", (long long)n_skip);
    st->n_skip = skip ? n_skip : 0;
    dk_method_input(job, "skip_first_n", "%lld", (long long)st->n_skip);
    if (read_statistics(cfg, st, err) != 0) return -1;
    if (template_tokens(job, st, err) != 0) return -1;
    if (dk_method_store_layers(job, &st->layers, &st->n_layers, err) != 0) return -1;
    for (int g = 0; g < 3; g++) {
        bool use = false;
        if (dk_cfg_try_bool(cfg, USE_KEYS[g], &use, err) != 0) return -1;
        if (!use) continue;
        char *id_key = dk_sprintf("%s.id", GROUPS[g]);
        const bool configured = dk_cfg_has(cfg, id_key);
        aa_dataset *ds = &st->ds[st->n_datasets];
        if (configured) ds->id = dk_cfg_str(cfg, id_key);
        free(id_key);
        if (!configured) {
            if (job->d.rank == 0)
                LOG_INFO("diff_activation_analysis: %s is left out of the configuration; skipped", GROUPS[g]);
            continue;
        }
        ds->pairs = dk_calloc((size_t)st->n_layers, sizeof *ds->pairs);
        st->n_datasets++;
        for (int64_t li = 0; li < st->n_layers; li++) {
            char *name = NULL;
            if (dk_method_open_stores(job, GROUPS[g], "train", st->layers[li], &ds->pairs[li], &name, err) != 0) {
                for (int64_t k = 0; k < li; k++) dk_act_pair_close(&ds->pairs[k]);
                free(ds->pairs);
                ds->pairs = NULL;
                return -1;
            }
            if (!ds->name) ds->name = name;
            else free(name);
        }
        const dk_act_pair *p = &ds->pairs[0];
        bool *keep = dk_malloc((size_t)(p->n_seqs ? p->n_seqs : 1) * sizeof *keep);
        int64_t tokens = 0, left_out = 0;
        const int64_t kept = select_sequences(p, st, keep, &tokens, &left_out);
        free(keep);
        if (kept == 0)
            return dk_err_set(err, DK_EXIT_USAGE, "%s (train): no sequence of at least %lld tokens among the first "
                              "%lld: nothing to analyse (model.ignore_first_n_tokens_per_sample_during_training = %lld "
                              "positions of each sequence are skipped)", ds->name,
                              (long long)(st->n_skip + 1 > 2 ? st->n_skip + 1 : 2),
                              (long long)(st->max_samples ? st->max_samples : p->n_seqs), (long long)st->n_skip);
    }
    if (st->n_datasets == 0)
        return dk_err_set(err, DK_EXIT_USAGE, "no dataset to run on: every diffing.method.datasets.use_* is false or "
                          "its dataset group is left out");
    return 0;
}

/* ---- computing one (dataset, layer) ---------------------------------------------------------------------- */

/* Rows read per HDF5 call (both stores): ~8 MiB each, whole sequences. */
static int64_t block_rows(int64_t d) { return (int64_t)(8 << 20) / (2 * d) > 1 ? (int64_t)(8 << 20) / (2 * d) : 1; }

/* Index of the first NaN or Inf among n bf16 values (exponent bits all ones), or -1. */
static int64_t bf16_first_nonfinite(const uint16_t *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if ((x[i] & 0x7f80) == 0x7f80) return i;
    return -1;
}

/* A non-finite metric at row row0 + bad_row of a block of n rows: names the store, sequence and token. */
static int nonfinite_rows(const dk_method_job *job, const aa_dataset *ds, const dk_act_pair *p, int64_t row0,
                          int64_t n, const uint16_t *base, const uint16_t *ft, int64_t bad_row, dk_err *err) {
    const int64_t d = p->d_model;
    const int64_t in_base = bf16_first_nonfinite(base, n * d), in_ft = in_base < 0 ? bf16_first_nonfinite(ft, n * d) : -1;
    const int64_t row = row0 + (in_base >= 0 ? in_base / d : in_ft >= 0 ? in_ft / d : bad_row);
    int64_t s = 0;
    while (s + 1 < p->n_seqs && p->seq_offsets[s + 1] <= row) s++;
    if (in_base >= 0 || in_ft >= 0) {
        const bool b = in_base >= 0;
        return dk_err_set(err, DK_EXIT_RUNTIME, "%s holds a non-finite activation (%s) at layer %lld, sequence %lld, "
                          "token %lld, dimension %lld: the store of %s on %s is broken; rerun diff_preprocess with "
                          "preprocessing.overwrite=true", b ? p->base.path : p->ft.path,
                          dk_nonfinite_name(dk_bf16_to_f32(b ? base[in_base] : ft[in_ft])), (long long)p->base.layer,
                          (long long)s, (long long)(row - p->seq_offsets[s]), (long long)((b ? in_base : in_ft) % d),
                          b ? job->pair.base_id : job->pair.ft_id, ds->name);
    }
    return dk_err_set(err, DK_EXIT_RUNTIME, "%s, layer %lld, sequence %lld, token %lld: an activation norm overflows "
                      "float32 (finite bf16 values near 1e38); the stores %s and %s hold absurd activations", ds->name,
                      (long long)p->base.layer, (long long)s, (long long)(row - p->seq_offsets[s]), p->base.path,
                      p->ft.path);
}

typedef struct aa_block {
    uint16_t *base, *ft;                    /* (rows, d) */
    float *nd, *cd, *cs, *nb, *nf;          /* local per-token arrays: (local tokens) */
} aa_block;

/* Running means: every row of one sequence (rows (len, d) of both stores, its tokens). */
static void collect(aa_layer_out *out, const uint16_t *base, const uint16_t *ft, const int32_t *tokens, int64_t len,
                    int64_t d, const aa_state *st) {
    for (int64_t t = 0; t < len; t++) {
        const uint16_t *b = base + t * d, *f = ft + t * d;
        dk_bf16_sum_add_diff(&out->collectors[0].sum, f, b);
        if (t < AA_N_POSITIONS) dk_bf16_sum_add_diff(&out->collectors[1 + t].sum, f, b);
        if (st->n_template) {
            const int32_t *hit = bsearch(&tokens[t], st->template_ids, (size_t)st->n_template, sizeof *hit, cmp_i32);
            if (hit) dk_bf16_sum_add_diff(&out->collectors[1 + AA_N_POSITIONS + (hit - st->template_ids)].sum, f, b);
        }
    }
}

/* Scores of one sequence (values of length len, the first n_skip already zeroed), offered to the tables. */
static void score_sequence(aa_layer_out *out, const aa_state *st, int64_t seq, const int32_t *tokens, int64_t len,
                           const float *nd, const float *cd, const float *nb, const float *nf) {
    double max_nd = -INFINITY, sum_nd = 0, max_cd = -INFINITY, sum_cd = 0, max_nb = -INFINITY, max_nf = -INFINITY;
    for (int64_t t = st->n_skip; t < len; t++) {
        max_nd = nd[t] > max_nd ? nd[t] : max_nd;
        max_cd = cd[t] > max_cd ? cd[t] : max_cd;
        max_nb = nb[t] > max_nb ? nb[t] : max_nb;
        max_nf = nf[t] > max_nf ? nf[t] : max_nf;
        sum_nd += nd[t], sum_cd += cd[t];
    }
    const double n = (double)(len - st->n_skip);
    const double score[AA_N_TABLES] = {max_nd, sum_nd / n, max_cd, sum_cd / n, max_nb, max_nf};
    const float *values[AA_N_TABLES] = {nd, nd, cd, cd, nb, nf};
    for (int k = 0; k < AA_N_TABLES; k++)
        if (dk_maxact_wants(&out->tables[k], score[k], seq))
            dk_maxact_offer(&out->tables[k], score[k], seq, tokens, len, values[k]);
}

/* Gathers each rank's slice of a per-token array into all (rank 0), in rank order: rank r's slice starts at
 * first[r]. Pieces stay under 2^30 values (MPI counts are int). */
static void gather_in_order(const dk_dist *d, const float *mine, const int64_t *first, float *all) {
    const int64_t piece = (int64_t)1 << 30;
    if (d->rank == 0) {
        memcpy(all, mine, (size_t)(first[1] - first[0]) * sizeof *all);
        for (int r = 1; r < d->nranks; r++)
            for (int64_t off = first[r]; off < first[r + 1]; off += piece) {
                const int n = (int)(first[r + 1] - off < piece ? first[r + 1] - off : piece);
                MPI_CHECK(MPI_Recv(all + off, n, MPI_FLOAT, r, 7, d->comm, MPI_STATUS_IGNORE));
            }
    } else {
        for (int64_t off = first[d->rank]; off < first[d->rank + 1]; off += piece) {
            const int n = (int)(first[d->rank + 1] - off < piece ? first[d->rank + 1] - off : piece);
            MPI_CHECK(MPI_Send(mine + (off - first[d->rank]), n, MPI_FLOAT, 0, 7, d->comm));
        }
    }
}

static void layer_out_free(aa_layer_out *out) {
    free(out->norm_diff), free(out->cos_dist), free(out->cos_sim), free(out->norm_base), free(out->norm_finetuned);
    for (int c = 0; c < out->n_collectors; c++) dk_bf16_sum_free(&out->collectors[c].sum);
    free(out->collectors);
    for (int k = 0; k < AA_N_TABLES; k++) dk_maxact_free(&out->tables[k]);
    memset(out, 0, sizeof *out);
}

static void collectors_init(aa_layer_out *out, const aa_state *st, int64_t d) {
    out->n_collectors = (int)(1 + AA_N_POSITIONS + st->n_template);
    out->collectors = dk_calloc((size_t)out->n_collectors, sizeof *out->collectors);
    for (int c = 0; c < out->n_collectors; c++) {
        aa_collector *col = &out->collectors[c];
        col->position = c >= 1 && c <= AA_N_POSITIONS ? c - 1 : -1;
        col->token_id = c > AA_N_POSITIONS ? st->template_ids[c - 1 - AA_N_POSITIONS] : -1;
        if (c == 0) snprintf(col->name, sizeof col->name, "all_tokens");
        else if (col->position >= 0) snprintf(col->name, sizeof col->name, "%s", POSITION_NAMES[col->position]);
        else snprintf(col->name, sizeof col->name, "chat_token_%d", col->token_id);
        dk_bf16_sum_init(&col->sum, d);
    }
}

/* Computes one (dataset, layer) on every rank; rank 0 ends with everything in out. */
static int run_layer(dk_method_job *job, const aa_state *st, const aa_dataset *ds, int64_t li, aa_layer_out *out,
                     dk_progress *prog, dk_err *err) {
    const dk_act_pair *p = &ds->pairs[li];
    const dk_dist *dist = &job->d;
    const int64_t d = p->d_model;
    out->layer = st->layers[li];
    /* the processed sequences and, per rank, a contiguous range of them balanced by tokens */
    bool *keep = dk_malloc((size_t)(p->n_seqs ? p->n_seqs : 1) * sizeof *keep);
    out->n_seqs = select_sequences(p, st, keep, &out->n_tokens, &out->n_left_out);
    int64_t *seqs = dk_malloc((size_t)out->n_seqs * sizeof *seqs);              /* (n_seqs) store indices */
    int64_t *tok0 = dk_malloc((size_t)(out->n_seqs + 1) * sizeof *tok0);        /* (n_seqs + 1) token starts */
    int64_t k = 0;
    tok0[0] = 0;
    for (int64_t s = 0; s < p->n_seqs; s++)
        if (keep[s]) seqs[k] = s, tok0[k + 1] = tok0[k] + (p->seq_offsets[s + 1] - p->seq_offsets[s]), k++;
    free(keep);
    int64_t *first_seq = dk_malloc((size_t)(dist->nranks + 1) * sizeof *first_seq);
    int64_t *first_tok = dk_malloc((size_t)(dist->nranks + 1) * sizeof *first_tok);
    for (int r = 0, s = 0; r <= dist->nranks; r++) {
        const double target = (double)out->n_tokens * r / dist->nranks;
        while (s < out->n_seqs && (double)tok0[s] < target) s++;
        first_seq[r] = r == dist->nranks ? out->n_seqs : s;
        first_tok[r] = tok0[first_seq[r]];
    }
    const int64_t s_begin = first_seq[dist->rank], s_end = first_seq[dist->rank + 1];
    const int64_t local_tokens = first_tok[dist->rank + 1] - first_tok[dist->rank];

    int64_t max_rows = block_rows(d);
    for (int64_t i = s_begin; i < s_end; i++)
        if (tok0[i + 1] - tok0[i] > max_rows) max_rows = tok0[i + 1] - tok0[i];
    /* five per-token arrays of this rank's share (and, on rank 0, of everything), two blocks of bf16 rows */
    const uint64_t need = (uint64_t)(local_tokens + (dist->rank == 0 ? out->n_tokens : 0)) * 5 * sizeof(float) +
                          (uint64_t)max_rows * (uint64_t)d * 2 * sizeof(uint16_t);
    int rc = dk_host_memory_check(need, "diff_activation_analysis's per-token metrics of one dataset and layer",
                                  "lower diffing.method.method_params.max_samples", err);
    if (dk_dist_agree(dist, err) != 0) rc = -1;
    if (rc != 0) {
        free(seqs), free(tok0), free(first_seq), free(first_tok);
        return -1;
    }
    aa_block b = {0};
    b.base = dk_malloc((size_t)(max_rows * d) * sizeof *b.base);
    b.ft = dk_malloc((size_t)(max_rows * d) * sizeof *b.ft);
    const size_t nloc = (size_t)(local_tokens ? local_tokens : 1);
    b.nd = dk_malloc(nloc * sizeof(float)), b.cd = dk_malloc(nloc * sizeof(float));
    b.cs = dk_malloc(nloc * sizeof(float)), b.nb = dk_malloc(nloc * sizeof(float)), b.nf = dk_malloc(nloc * sizeof(float));
    collectors_init(out, st, d);
    for (int t = 0; t < AA_N_TABLES; t++) dk_maxact_init(&out->tables[t], st->n_examples, true);

    for (int64_t i = s_begin; i < s_end && rc == 0;) {
        /* a block: consecutive store sequences, whole, up to max_rows rows */
        int64_t j = i + 1;
        while (j < s_end && seqs[j] == seqs[j - 1] + 1 && tok0[j + 1] - tok0[i] <= block_rows(d)) j++;
        const int64_t row0 = p->seq_offsets[seqs[i]], n = tok0[j] - tok0[i], loc = tok0[i] - first_tok[dist->rank];
        if (dk_act_store_rows_bf16(&p->base, row0, n, b.base, err) != 0 ||
            dk_act_store_rows_bf16(&p->ft, row0, n, b.ft, err) != 0) {
            rc = -1;
            break;
        }
        dk_cpu_pair_metrics(b.base, b.ft, n, d, b.nd + loc, b.cd + loc, b.cs + loc, b.nb + loc, b.nf + loc);
        const float *checks[4] = {b.nd + loc, b.cs + loc, b.nb + loc, b.nf + loc};
        for (int c = 0; c < 4 && rc == 0; c++) {
            const int64_t bad = dk_first_nonfinite_f32(checks[c], (size_t)n);
            if (bad >= 0) rc = nonfinite_rows(job, ds, p, row0, n, b.base, b.ft, bad, err);
        }
        for (int64_t q = i; q < j && rc == 0; q++) {
            const int64_t off = tok0[q] - tok0[i], len = tok0[q + 1] - tok0[q], lo = loc + off;
            const int32_t *tokens = p->tokens + p->seq_offsets[seqs[q]];
            collect(out, b.base + off * d, b.ft + off * d, tokens, len, d, st);
            for (int64_t t = 0; t < st->n_skip && t < len; t++)
                b.nd[lo + t] = b.cd[lo + t] = b.nb[lo + t] = b.nf[lo + t] = 0.0f;
            score_sequence(out, st, seqs[q], tokens, len, b.nd + lo, b.cd + lo, b.nb + lo, b.nf + lo);
        }
        /* rank 0 sees its own share only: scaled to the whole */
        dk_progress_add(prog, (double)n * (double)out->n_tokens / (double)local_tokens);
        i = j;
    }
    free(b.base), free(b.ft);
    if (dk_dist_agree(dist, err) != 0) rc = -1;
    if (rc == 0) {
        for (int c = 0; c < out->n_collectors; c++) dk_bf16_sum_reduce(&out->collectors[c].sum, dist);
        for (int t = 0; t < AA_N_TABLES; t++) dk_maxact_gather(&out->tables[t], dist);
        float **mine[5] = {&b.nd, &b.cd, &b.cs, &b.nb, &b.nf};
        float **all[5] = {&out->norm_diff, &out->cos_dist, &out->cos_sim, &out->norm_base, &out->norm_finetuned};
        for (int a = 0; a < 5; a++) {
            if (dist->rank == 0) *all[a] = dk_malloc((size_t)(out->n_tokens ? out->n_tokens : 1) * sizeof(float));
            gather_in_order(dist, *mine[a], first_tok, *all[a]);
        }
    }
    free(b.nd), free(b.cd), free(b.cs), free(b.nb), free(b.nf);
    free(seqs), free(tok0), free(first_seq), free(first_tok);
    return rc;
}

static int aa_run(dk_method_job *job, dk_err *err) {
    aa_state *st = job->state;
    cJSON *summary = cJSON_CreateObject();
    cJSON_AddStringToObject(summary, "method", "activation_analysis");
    cJSON *layers = cJSON_AddArrayToObject(summary, "layers");
    for (int64_t li = 0; li < st->n_layers; li++) cJSON_AddItemToArray(layers, cJSON_CreateNumber((double)st->layers[li]));
    cJSON_AddNumberToObject(summary, "skip_first_n_tokens", (double)st->n_skip);
    cJSON *sum_ds = cJSON_AddObjectToObject(summary, "datasets");
    const char *hook = getenv("DIFFKIT_TEST_KILL_AFTER_LAYERS"); /* tests/methods/aa_bad_input.sh */
    const int kill_after = hook ? atoi(hook) : 0;
    int rc = 0, units_done = 0;
    for (int di = 0; di < st->n_datasets && rc == 0; di++) {
        const aa_dataset *ds = &st->ds[di];
        cJSON *json_layers = cJSON_CreateObject(), *sd = cJSON_AddObjectToObject(sum_ds, ds->name);
        double total = 0;
        for (int64_t li = 0; li < st->n_layers; li++) {
            bool *keep = dk_malloc((size_t)(ds->pairs[li].n_seqs ? ds->pairs[li].n_seqs : 1) * sizeof *keep);
            int64_t tokens = 0, left_out = 0;
            select_sequences(&ds->pairs[li], st, keep, &tokens, &left_out);
            free(keep);
            total += (double)tokens;
        }
        char label[160];
        snprintf(label, sizeof label, "activation analysis %s", ds->name);
        dk_progress prog;
        dk_progress_begin(&prog, label, total, "tokens");
        for (int64_t li = 0; li < st->n_layers && rc == 0; li++) {
            aa_layer_out out = {0};
            rc = run_layer(job, st, ds, li, &out, &prog, err);
            if (rc == 0 && job->d.rank == 0) aa_write_layer(job, st, ds, &out, json_layers, sd);
            layer_out_free(&out);
            if (++units_done == kill_after && job->d.rank == 0) { /* tests only: a SIGKILL mid-run */
                LOG_WARN("test hook: killing rank 0 after %d (dataset, layer) units", units_done);
                raise(SIGKILL);
            }
        }
        dk_progress_end(&prog);
        if (rc == 0 && job->d.rank == 0) aa_write_dataset_json(job, st, ds, json_layers);
        else cJSON_Delete(json_layers);
    }
    dk_results_summary(&job->res, summary);
    return rc;
}

static void aa_free(dk_method_job *job) {
    aa_state *st = job->state;
    if (!st) return;
    for (int i = 0; i < 3; i++) {
        if (st->ds[i].pairs)
            for (int64_t li = 0; li < st->n_layers; li++) dk_act_pair_close(&st->ds[i].pairs[li]);
        free(st->ds[i].pairs);
        free(st->ds[i].name);
    }
    free(st->percentiles), free(st->layers), free(st->template_ids);
    free(st);
    job->state = NULL;
}

const dk_method_spec dk_method_activation_analysis = {
    .job = "diff_activation_analysis",
    .method = "activation_analysis",
    .results_subdir = "activation_analysis",
    .usage = "Per token of the cached activations of each configured dataset (train split) at every cached layer:\n"
             "the norm of finetuned - base, the cosine distance, both norms; statistics, histogram data, six\n"
             "max-activating tables and running means of the difference. Reads the stores of diff_preprocess (no\n"
             "model runs). Settings: diffing.method.* (configs/diffing/method/activation_analysis.yaml).\n"
             "    mpirun -n 2 diff_activation_analysis organism=NAME model=NAME [diffing.method.method_params.max_samples=1000]\n",
    .needs_models = false,
    .prepare = aa_prepare,
    .run = aa_run,
    .free_state = aa_free,
};
