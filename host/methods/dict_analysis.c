/* dict_analysis.c — dk_dict_analyse: the analysis of a trained SAE or crosscoder over the activation stores (what
 * and why: dict_analysis.h). Three passes, every one collective over job->d:
 *   statistics   from the weights (dict_latents.c), identical on every rank;
 *   scaling      the first rows of the scaling set split into contiguous rank slices (dk_dict_slice), read in
 *                chunks, summed in fp64 (dict_latents.c) and reduced: 1, 2 or 3 ranks differ by fp64 rounding;
 *   activations  sequence q of each dataset on rank q % nranks (as diff_pca's max-activating pass); per latent
 *                the maximum (MPI_MAX), the active count and the token count (sums), and max-activating tables
 *                merged on rank 0 (dk_maxact_gather: the same k examples whatever the rank count).
 * Rank 0 writes every dataset and the summary entries. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/host_memory.h"
#include "core/log.h"
#include "kernels/cpu/dict_step.h"
#include "methods/dict_analysis.h"
#include "methods/dict_train.h"
#include "methods/maxact.h"

enum { TOP_LATENTS = 10, TOP_TEXTS = 3, TEXT_CHARS = 160 };

/* "base_error" -> "beta_error_base", "ft_activation" -> "beta_activation_ft" (the seed's latent_df names). */
static void beta_column(const char *target, char *out, size_t cap) {
    const bool base = strncmp(target, "base_", 5) == 0;
    snprintf(out, cap, "beta_%s_%s", target + (base ? 5 : 3), base ? "base" : "ft");
}

/* ---- latent scaling ----------------------------------------------------------------------------------------- */

/* Crosscoder: the seed's "effective ft-only" latents (the n lowest dec_norm_diff, or every ft_only latent when
 * n = -1) and an equal-size random sample of the shared latents (all of them when fewer, where the seed's pandas
 * sample(random_state=42) fails; ours:
 * splitmix64 from the job's seed, in index order). Marks both in the latent_df and writes the index lists. */
static void latent_subsets(dk_method_job *job, const dk_dict_analysis_cfg *cfg, dk_dict_latent_df *df,
                           const char *base, cJSON *js) {
    const int64_t F = df->F;
    int64_t *eff = dk_malloc((size_t)(F + 1) * sizeof(int64_t)), n_eff = 0;
    if (cfg->n_effective_ft_only < 0) {
        for (int64_t j = 0; j < F; j++)
            if (strcmp(df->tag[j], "ft_only") == 0) eff[n_eff++] = j;
    } else {
        n_eff = dk_dict_smallest(df, "dec_norm_diff", cfg->n_effective_ft_only, eff);
    }
    int64_t *shared = dk_malloc((size_t)(F + 1) * sizeof(int64_t)), n_shared = 0;
    for (int64_t j = 0; j < F; j++)
        if (strcmp(df->tag[j], "shared") == 0) shared[n_shared++] = j;
    const int64_t n_base = n_eff < n_shared ? n_eff : n_shared;
    uint64_t st = cfg->seed ^ 0x5348415245440000ull; /* "SHARED" */
    for (int64_t i = 0; i < n_base; i++) {           /* partial Fisher–Yates */
        const int64_t r = i + dk_dict_rng_below(&st, n_shared - i);
        const int64_t t = shared[i];
        shared[i] = shared[r], shared[r] = t;
    }
    double *is_eff = dk_dict_df_add(df, "effective_ft_only_latent"), *is_base = dk_dict_df_add(df, "shared_baseline_latent");
    for (int64_t j = 0; j < F; j++) is_eff[j] = 0, is_base[j] = 0;
    for (int64_t i = 0; i < n_eff; i++) is_eff[eff[i]] = 1;
    for (int64_t i = 0; i < n_base; i++) is_base[shared[i]] = 1;
    int64_t nb = 0;
    for (int64_t j = 0; j < F; j++)
        if (is_base[j]) shared[nb++] = j;
    char path[512];
    snprintf(path, sizeof path, "%s/latent_scaling/effective_ft_only_latents", base);
    dk_results_i64(&job->res, path, 1, &n_eff, eff);
    snprintf(path, sizeof path, "%s/latent_scaling/shared_baseline_latents", base);
    dk_results_i64(&job->res, path, 1, &nb, shared);
    cJSON_AddNumberToObject(js, "effective_ft_only_latents", (double)n_eff);
    cJSON_AddNumberToObject(js, "shared_baseline_latents", (double)nb);
    free(eff), free(shared);
}

static int scaling_pass(dk_method_job *job, const dk_dict_model *m, const dk_dict_norm *nrm, dk_dict_target input,
                        const dk_dict_set *pairs, const dk_dict_analysis_cfg *cfg, dk_dict_latent_df *df,
                        const char *base, cJSON *sum, dk_err *err) {
    CHECK(pairs->target == DK_DICT_STACKED, "latent scaling reads stacked [base, ft] rows");
    const int64_t F = m->s.F, d = m->s.d;
    int64_t N = pairs->total;
    if (cfg->scaling_num_samples > 0 && cfg->scaling_num_samples < N) N = cfg->scaling_num_samples;
    int64_t lo, hi;
    dk_dict_slice(N, job->d.rank, job->d.nranks, &lo, &hi);
    const int64_t cap = dk_dict_chunk_rows(F);
    dk_dict_scaling s;
    dk_dict_scaling_init(&s, m, nrm, input, cap);
    float *buf = dk_malloc((size_t)(cap * 2 * d) * sizeof(float)); /* (cap, 2d) raw [base, ft] */
    int64_t *idx = dk_malloc((size_t)cap * sizeof(int64_t));
    int rc = 0;
    for (int64_t p = lo; p < hi && rc == 0; p += cap) {
        const int64_t n = hi - p < cap ? hi - p : cap;
        for (int64_t i = 0; i < n; i++) idx[i] = p + i;
        rc = dk_dict_set_read(pairs, idx, n, buf, err);
        if (rc == 0) dk_dict_scaling_add(&s, buf, n);
    }
    free(buf), free(idx);
    if (dk_dist_agree(&job->d, err) != 0) {
        dk_dict_scaling_free(&s);
        return -1;
    }
    dk_dict_allreduce_f64(&job->d, s.sums, (s.n_targets + 2) * F);

    char path[512], col[64];
    double *beta = dk_malloc((size_t)F * sizeof(double));
    for (int t = 0; t < s.n_targets; t++) {
        dk_dict_scaling_betas(&s, t, beta);
        beta_column(s.target[t], col, sizeof col);
        memcpy(dk_dict_df_add(df, col), beta, (size_t)F * sizeof(double));
        snprintf(path, sizeof path, "%s/latent_scaling/%s/beta", base, s.target[t]);
        dk_results_f64(&job->res, path, 1, &F, beta);
    }
    /* the seed's ratio columns (beta_analysis.py: add_possible_cols) */
    static const char *const ratios[][3] = {{"beta_activation_ratio", "beta_activation_base", "beta_activation_ft"},
                                            {"beta_ratio_reconstruction", "beta_reconstruction_base", "beta_reconstruction_ft"},
                                            {"beta_ratio_error", "beta_error_base", "beta_error_ft"}};
    for (int r = 0; r < 3; r++) {
        const double *b = dk_dict_df_col(df, ratios[r][1]), *f = dk_dict_df_col(df, ratios[r][2]);
        if (!b || !f) continue;
        double *out = dk_dict_df_add(df, ratios[r][0]);
        for (int64_t j = 0; j < F; j++) out[j] = b[j] / f[j];
    }
    const double *cnt = s.sums + (s.n_targets + 1) * F;
    int64_t *count = dk_malloc((size_t)F * sizeof(int64_t)), fired = 0;
    for (int64_t j = 0; j < F; j++) count[j] = (int64_t)cnt[j], fired += count[j] > 0;
    snprintf(path, sizeof path, "%s/latent_scaling/count_active", base);
    dk_results_i64(&job->res, path, 1, &F, count);
    snprintf(path, sizeof path, "%s/latent_scaling", base);
    dk_results_attr_i64(&job->res, path, "rows", N);
    dk_results_attr_str(&job->res, path, "encoded", dk_dict_target_name(s.input));
    cJSON *js = cJSON_AddObjectToObject(sum, "latent_scaling");
    cJSON_AddNumberToObject(js, "rows", (double)N);
    cJSON_AddNumberToObject(js, "latents_fired", (double)fired);
    cJSON *tl = cJSON_AddArrayToObject(js, "targets");
    for (int t = 0; t < s.n_targets; t++) cJSON_AddItemToArray(tl, cJSON_CreateString(s.target[t]));
    if (m->kind == DK_DICT_CROSSCODER) latent_subsets(job, cfg, df, base, js);
    if (job->d.rank == 0)
        LOG_INFO("dictionary analysis: latent scaling over %lld rows, %lld of %lld latents fired", (long long)N,
                 (long long)fired, (long long)F);
    free(beta), free(count);
    dk_dict_scaling_free(&s);
    return 0;
}

/* ---- latent activations ------------------------------------------------------------------------------------- */

static int64_t n_sequences(const dk_dict_source *s, const dk_dict_analysis_cfg *cfg) {
    return cfg->max_num_samples < s->pair.n_seqs ? cfg->max_num_samples : s->pair.n_seqs;
}

/* The tables of one dataset: F tables of n_max examples, each holding a copy of its sequence's tokens. */
static int tables_fit(const dk_dict_source *s, int64_t F, const dk_dict_analysis_cfg *cfg, dk_err *err) {
    const int64_t n = n_sequences(s, cfg);
    const double mean_len = n > 0 ? (double)(s->pair.seq_offsets[n] - s->pair.seq_offsets[0]) / (double)n : 0;
    const double kept = (double)(cfg->n_max_activations < n ? cfg->n_max_activations : n);
    const uint64_t need = (uint64_t)((double)F * (64.0 * (double)cfg->n_max_activations + kept * (mean_len * 4 + 256)));
    char what[256];
    snprintf(what, sizeof what, "the max-activating tables of %lld latents x %lld examples of %s (sequences of %.0f "
             "tokens on average)", (long long)F, (long long)cfg->n_max_activations, s->name, mean_len);
    return dk_host_memory_check(need, what, "lower diffing.method.analysis.latent_activations.n_max_activations or "
                                "max_num_samples", err);
}

static int activations_pass(dk_method_job *job, const dk_dict_model *m, const dk_dict_norm *nrm,
                            const dk_dict_set *rows, const dk_dict_analysis_cfg *cfg, dk_dict_latent_df *df,
                            const int64_t *top, int64_t n_top, cJSON **top_examples, const char *base, cJSON *sum,
                            dk_err *err) {
    const int64_t F = m->s.F;
    int64_t longest = 0;
    for (int k = 0; k < rows->n; k++) {
        const dk_dict_source *s = &rows->src[k];
        for (int64_t q = 0; q < n_sequences(s, cfg); q++) {
            const int64_t len = s->pair.seq_offsets[q + 1] - s->pair.seq_offsets[q];
            longest = len > longest ? len : longest;
        }
    }
    dk_dict_acts a;
    dk_dict_acts_init(&a, m, nrm, cfg->min_threshold, longest);
    float *x = dk_malloc((size_t)((longest + 1) * m->s.D) * sizeof(float)); /* (longest, D) one sequence */
    int rc = 0;
    int64_t written = 0;
    for (int k = 0; k < rows->n && rc == 0; k++) {
        const dk_dict_source *s = &rows->src[k];
        dk_maxact *tables = NULL;
        if (cfg->n_max_activations > 0) {
            rc = tables_fit(s, F, cfg, err);
            if (dk_dist_agree(&job->d, err) != 0) {
                rc = -1;
                break;
            }
            tables = dk_malloc((size_t)F * sizeof *tables);
            for (int64_t j = 0; j < F; j++) dk_maxact_init(&tables[j], cfg->n_max_activations, true);
        }
        for (int64_t q = job->d.rank; q < n_sequences(s, cfg) && rc == 0; q += job->d.nranks) {
            const int64_t row0 = s->pair.seq_offsets[q], T = s->pair.seq_offsets[q + 1] - row0;
            rc = dk_dict_read_range(rows, k, row0, T, x, err);
            if (rc == 0) dk_dict_acts_sequence(&a, x, T, s->pair.tokens + row0, q, tables);
        }
        if (dk_dist_agree(&job->d, err) != 0) rc = -1;
        for (int64_t j = 0; tables && j < F; j++) {
            if (rc == 0) dk_maxact_gather(&tables[j], &job->d);
            if (rc == 0 && job->d.rank == 0 && tables[j].n > 0) {
                char g[512];
                snprintf(g, sizeof g, "%s/max_act/%s/latent_%lld", base, s->name, (long long)j);
                dk_maxact_write(&tables[j], &job->res, g, job->tok);
                written++;
                for (int64_t i = 0; i < n_top; i++)
                    if (top[i] == j)
                        cJSON_AddItemToObject(top_examples[i], s->name,
                                              dk_maxact_texts(&tables[j], job->tok, TOP_TEXTS, TEXT_CHARS));
            }
            dk_maxact_free(&tables[j]);
        }
        free(tables);
    }
    if (rc == 0) {
        MPI_Allreduce(MPI_IN_PLACE, a.max_act, (int)F, MPI_DOUBLE, MPI_MAX, job->d.comm);
        dk_dict_allreduce_f64(&job->d, a.stats, F + 3);
        const double tokens = a.stats[F], l0 = a.stats[F + 1], seqs = a.stats[F + 2];
        char name[64], path[512];
        snprintf(name, sizeof name, "max_act_%s", rows->split);
        memcpy(dk_dict_df_add(df, name), a.max_act, (size_t)F * sizeof(double));
        snprintf(name, sizeof name, "freq_%s", rows->split);
        double *freq = dk_dict_df_add(df, name);
        int64_t fired = 0;
        for (int64_t j = 0; j < F; j++) freq[j] = a.stats[j] / tokens, fired += a.stats[j] > 0;
        snprintf(path, sizeof path, "%s/latent_activations", base);
        dk_results_attr_i64(&job->res, path, "total_tokens", (int64_t)tokens);
        dk_results_attr_i64(&job->res, path, "sequences", (int64_t)seqs);
        dk_results_attr_f64(&job->res, path, "mean_l0", l0 / tokens);
        dk_results_attr_str(&job->res, path, "split", rows->split);
        cJSON *js = cJSON_AddObjectToObject(sum, "latent_activations");
        cJSON_AddNumberToObject(js, "sequences", seqs);
        cJSON_AddNumberToObject(js, "tokens", tokens);
        cJSON_AddNumberToObject(js, "mean_l0", l0 / tokens);
        cJSON_AddNumberToObject(js, "latents_fired", (double)fired);
        cJSON_AddNumberToObject(js, "max_act_tables", (double)written);
        if (job->d.rank == 0)
            LOG_INFO("dictionary analysis: %lld sequences, %.0f tokens, mean L0 %.2f, %lld of %lld latents fired, "
                     "%lld max-activating tables", (long long)seqs, tokens, l0 / tokens, (long long)fired,
                     (long long)F, (long long)written);
    }
    dk_dict_acts_free(&a);
    free(x);
    return rc;
}

/* ---- the whole analysis ------------------------------------------------------------------------------------- */

static void write_df(dk_method_job *job, const dk_dict_latent_df *df, const char *base) {
    char path[512];
    for (int c = 0; c < df->n_cols; c++) {
        snprintf(path, sizeof path, "%s/latent_stats/%s", base, df->name[c]);
        dk_results_f64(&job->res, path, 1, &df->F, df->col[c]);
    }
    if (df->tag) {
        snprintf(path, sizeof path, "%s/latent_stats/tag", base);
        dk_results_strings(&job->res, path, df->F, df->tag);
    }
}

int dk_dict_analyse(dk_method_job *job, const dk_dict_model *m, const dk_dict_norm *nrm, const dk_dict_set *rows,
                    const dk_dict_set *pairs, const dk_dict_analysis_cfg *cfg, const char *base, cJSON *sum,
                    dk_err *err) {
    const int64_t F = m->s.F;
    const bool cc = m->kind == DK_DICT_CROSSCODER;
    dk_dict_latent_df df;
    dk_dict_df_init(&df, F);
    dk_dict_latent_norms(m, &df);
    cJSON_AddNumberToObject(sum, "n_latents", (double)F);
    if (cc) {
        static const char *const tags[] = {"ft_only", "shared", "base_only", "other"};
        cJSON *tc = cJSON_AddObjectToObject(sum, "latent_tags");
        for (int t = 0; t < 4; t++) {
            int64_t n = 0;
            for (int64_t j = 0; j < F; j++) n += strcmp(df.tag[j], tags[t]) == 0;
            cJSON_AddNumberToObject(tc, tags[t], (double)n);
        }
    }
    int rc = 0;
    if (cfg->latent_scaling)
        rc = scaling_pass(job, m, nrm, rows->target, pairs ? pairs : rows, cfg, &df, base, sum, err);

    /* the latents the seed's steering would pick, with their statistics and (below) example texts */
    const char *select = cc ? "dec_norm_diff" : "beta_activation_ratio";
    int64_t top[TOP_LATENTS];
    const int64_t n_top = rc == 0 ? dk_dict_smallest(&df, select, TOP_LATENTS, top) : 0;
    cJSON *top_json = cJSON_CreateArray(), *examples[TOP_LATENTS];
    for (int64_t i = 0; i < n_top; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "latent", (double)top[i]);
        cJSON_AddItemToArray(top_json, o);
        examples[i] = cJSON_CreateObject();
    }
    if (rc == 0 && cfg->latent_activations)
        rc = activations_pass(job, m, nrm, rows, cfg, &df, top, n_top, examples, base, sum, err);
    for (int64_t i = 0; i < n_top; i++) {
        cJSON *o = cJSON_GetArrayItem(top_json, (int)i);
        for (int c = 0; c < df.n_cols; c++) {
            const double v = df.col[c][top[i]];
            if (isfinite(v)) cJSON_AddNumberToObject(o, df.name[c], v);
        }
        if (df.tag) cJSON_AddStringToObject(o, "tag", df.tag[top[i]]);
        cJSON_AddItemToObject(o, "examples", examples[i]);
    }
    cJSON_AddStringToObject(sum, "top_latents_by", cc ? "smallest dec_norm_diff" : "smallest |beta_activation_ratio|");
    cJSON_AddItemToObject(sum, "top_latents", top_json);
    if (rc == 0) write_df(job, &df, base);
    dk_dict_df_free(&df);
    return rc;
}
