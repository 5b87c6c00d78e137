/* dm_orderings.c — see dm_orderings.h. */
#include "methods/dm_orderings.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kernels/cpu/diffops.h"

static const char *const TYPE_ID[3] = {"top_k_occurring", "fraction_positive_diff", "nmf"};
static const char *const DISPLAY[3] = {"Top-K Occurring", "Fraction Positive Diff", "NMF Topics"};
static const char *const X_LABEL[3] = {"Occurrence Rate in Top-K (%)", "Fraction of Positive Shifts",
                                       "NMF Topic Weight"};

char *dm_token_str(const dk_tokenizer *tok, int32_t id) {
    if (id < 0 || id >= dk_tokenizer_vocab_size(tok)) return dk_strdup("");
    dk_err err = {0};
    char *s = dk_tokenizer_decode(tok, &id, 1, false, NULL, &err);
    return s ? s : dk_strdup("");
}

/* avg_logit_diff as the seed computes it: a float32 sum divided by #positions in float32 */
static float avg_of(const dm_totals *t, int64_t v) { return (float)t->sum[v] / (float)t->positions; }

/* The k highest of values (n), ties to the lower index: ids (k) and values (k). */
static int64_t top_of(const float *values, int64_t n, int64_t k, int32_t **ids, float **vals) {
    if (k > n) k = n;
    *ids = dk_malloc((size_t)(k ? k : 1) * sizeof **ids);
    *vals = dk_malloc((size_t)(k ? k : 1) * sizeof **vals);
    if (k > 0) dk_cpu_topk(values, 1, n, k, true, *vals, *ids);
    return k;
}

void dm_order_simple(const dm_totals *t, dm_ordering_type type, int64_t num_tokens, dm_type_result *out) {
    memset(out, 0, sizeof *out);
    out->type = type;
    out->type_id = TYPE_ID[type];
    snprintf(out->dir, sizeof out->dir, "%s", TYPE_ID[type]);
    float *value = dk_malloc((size_t)t->V * sizeof *value);
    const float total = (float)t->positions;
    for (int64_t v = 0; v < t->V; v++) /* torch: counts.float() / total (* 100), all float32 */
        value[v] = type == DM_TOP_K_OCCURRING ? ((float)t->topk_pos[v] / total) * 100.0f : (float)t->count_pos[v] / total;
    int32_t *ids;
    float *vals;
    const int64_t k = top_of(value, t->V, num_tokens, &ids, &vals);
    out->n_o = 1;
    out->o = dk_calloc(1, sizeof *out->o);
    dm_ordering *o = &out->o[0];
    snprintf(o->id, sizeof o->id, "global");
    snprintf(o->label, sizeof o->label, "%s", type == DM_TOP_K_OCCURRING ? "Global (by occurrence rate)"
                                                                        : "Global (by fraction positive)");
    o->e = dk_malloc((size_t)(k ? k : 1) * sizeof *o->e);
    for (int64_t i = 0; i < k; i++) {
        const int32_t v = ids[i];
        o->e[o->n++] = (dm_entry){v, vals[i], avg_of(t, v),
                                  type == DM_TOP_K_OCCURRING ? t->topk_pos[v] : t->count_pos[v],
                                  type == DM_TOP_K_OCCURRING ? t->topk_neg[v] : t->positions - t->count_pos[v], -1};
    }
    free(ids);
    free(vals);
    free(value);
}

int dm_order_nmf(const dm_totals *t, const dm_nmf_builder *b, const dm_nmf_settings *s, int64_t num_tokens,
                 dm_type_result *out, dk_err *err) {
    memset(out, 0, sizeof *out);
    out->type = DM_NMF;
    out->type_id = TYPE_ID[DM_NMF];
    const dk_nmf_csr *V = &b->m;
    const int R = s->num_topics;
    if (V->rows == 0 || V->cols == 0 || V->nnz == 0) return 0;
    if (V->rows * R < 16 || V->cols * R < 16)
        return dk_err_set(err, DK_EXIT_RUNTIME, "the NMF matrix is %lld x %lld: too small to draw torchnmf's "
                          "initial factors the way it does (>= 16 values each); use more samples or a larger top_k",
                          (long long)V->rows, (long long)V->cols);
    dk_nmf_init(&out->fit, V->rows, V->cols, R, s->seed);
    dk_nmf_run(V, &out->fit, 200, 1e-4, s->threads);
    out->nnz = V->nnz;
    out->error = dk_nmf_error(V, &out->fit);
    out->col2tok = b->col2tok;
    const int64_t C = V->cols, N = V->rows;
    const float *W = out->fit.W, *H = out->fit.H;

    /* the seed's metrics (token_ordering._compute_topic_metrics, _run_nmf's cosine similarity) */
    double colsum[DK_NMF_MAX_RANK] = {0}, hsum[DK_NMF_MAX_RANK] = {0}, norm[DK_NMF_MAX_RANK] = {0};
    double entropy[DK_NMF_MAX_RANK] = {0}, count[DK_NMF_MAX_RANK] = {0};
    for (int64_t c = 0; c < C; c++)
        for (int k = 0; k < R; k++) colsum[k] += W[c * R + k], norm[k] += (double)W[c * R + k] * W[c * R + k];
    for (int k = 0; k < R; k++) {
        norm[k] = sqrt(norm[k]);
        if (!(colsum[k] > 0))
            return dk_err_set(err, DK_EXIT_RUNTIME, "NMF topic %d has no weight left (its W column is all zero): "
                              "the seed's metrics are undefined; use fewer topics", k);
    }
    for (int64_t r = 0; r < N; r++) {
        int best = 0;
        for (int k = 0; k < R; k++) {
            hsum[k] += H[r * R + k];
            if ((double)H[r * R + k] * colsum[k] > (double)H[r * R + best] * colsum[best]) best = k;
        }
        count[best] += 1;
    }
    for (int64_t c = 0; c < C; c++)
        for (int k = 0; k < R; k++) {
            double p = W[c * R + k] / colsum[k];
            if (p < 1e-12) p = 1e-12;
            entropy[k] -= p * log(p);
        }
    out->cosine = dk_malloc((size_t)(R * R) * sizeof *out->cosine);
    for (int a = 0; a < R; a++)
        for (int bb = 0; bb < R; bb++) {
            double dot = 0;
            for (int64_t c = 0; c < C; c++) dot += (double)W[c * R + a] * W[c * R + bb];
            out->cosine[a * R + bb] = dot / (norm[a] * norm[bb]);
        }

    out->n_o = R;
    out->o = dk_calloc((size_t)R, sizeof *out->o);
    float *column = dk_malloc((size_t)C * sizeof *column);
    for (int k = 0; k < R; k++) {
        dm_ordering *o = &out->o[k];
        snprintf(o->id, sizeof o->id, "topic_%d", k);
        snprintf(o->label, sizeof o->label, "Topic %d", k);
        o->topic = true;
        o->mass = hsum[k] * colsum[k];
        o->prevalence = count[k] / (double)N;
        o->concentration = C == 1 ? 1.0 : 1.0 - entropy[k] / log((double)C);
        for (int64_t c = 0; c < C; c++) column[c] = W[c * R + k];
        int32_t *ids;
        float *vals;
        const int64_t n = top_of(column, C, num_tokens, &ids, &vals);
        o->e = dk_malloc((size_t)(n ? n : 1) * sizeof *o->e);
        for (int64_t i = 0; i < n; i++) {
            if (vals[i] < 1e-6f) continue;
            const int32_t v = b->col2tok[ids[i]];
            o->e[o->n++] = (dm_entry){v, vals[i], avg_of(t, v), t->topk_pos[v], t->topk_neg[v], ids[i]};
        }
        free(ids);
        free(vals);
    }
    free(column);
    return 1;
}

void dm_type_result_free(dm_type_result *r) {
    for (int i = 0; i < r->n_o; i++) free(r->o[i].e);
    free(r->o);
    free(r->cosine);
    if (r->fit.W) dk_nmf_free(&r->fit);
    memset(r, 0, sizeof *r);
}

/* ---- outputs -------------------------------------------------------------------------------------------------- */

static cJSON *type_metadata(const dm_type_result *r, const dm_nmf_settings *s) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "ordering_type_id", r->type_id);
    if (r->type == DM_NMF) {
        char name[64];
        snprintf(name, sizeof name, "%s (%d topics)", DISPLAY[DM_NMF], s->num_topics);
        cJSON_AddStringToObject(m, "display_name", name);
    } else {
        cJSON_AddStringToObject(m, "display_name", DISPLAY[r->type]);
    }
    cJSON_AddStringToObject(m, "x_axis_label", X_LABEL[r->type]);
    cJSON_AddStringToObject(m, "y_axis_label", "Avg Logit Diff");
    if (r->type != DM_NMF) return m;
    const int R = s->num_topics;
    cJSON_AddNumberToObject(m, "num_topics", R);
    cJSON_AddNumberToObject(m, "beta", 2.0);
    cJSON_AddStringToObject(m, "mode", s->mode);
    cJSON *cos = cJSON_CreateArray();
    for (int a = 0; a < R; a++) {
        cJSON *row = cJSON_CreateArray();
        for (int b = 0; b < R; b++) cJSON_AddItemToArray(row, cJSON_CreateNumber(r->cosine[a * R + b]));
        cJSON_AddItemToArray(cos, row);
    }
    cJSON_AddItemToObject(cJSON_AddObjectToObject(m, "pairwise"), "cosine_similarity", cos);
    cJSON *tm = cJSON_AddArrayToObject(m, "topic_metrics");
    for (int k = 0; k < R; k++) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "nmf_topic_idx", k);
        cJSON_AddNumberToObject(x, "nmf_topic_mass", r->o[k].mass);
        cJSON_AddNumberToObject(x, "nmf_topic_prevalence", r->o[k].prevalence);
        cJSON_AddNumberToObject(x, "nmf_topic_concentration", r->o[k].concentration);
        cJSON_AddItemToArray(tm, x);
    }
    return m;
}

void dm_write_orderings(dk_results *res, const dk_tokenizer *tok, const char *dataset, const dm_type_result *r,
                        const dm_nmf_settings *s) {
    char path[512];
    snprintf(path, sizeof path, "%s/metadata.json", r->dir);
    dk_results_json(res, path, type_metadata(r, s));
    cJSON *index = cJSON_CreateObject();
    cJSON_AddStringToObject(index, "dataset_name", dataset);
    cJSON *list = cJSON_AddArrayToObject(index, "orderings");
    for (int i = 0; i < r->n_o; i++) {
        const dm_ordering *o = &r->o[i];
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "ordering_id", o->id);
        cJSON_AddStringToObject(x, "display_label", o->label);
        snprintf(path, sizeof path, "%s.json", o->id);
        cJSON_AddStringToObject(x, "path", path);
        cJSON_AddNumberToObject(x, "num_tokens", (double)o->n);
        cJSON_AddItemToArray(list, x);

        /* <id>.json and the HDF5 twin */
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "ordering_id", o->id);
        cJSON_AddStringToObject(j, "display_label", o->label);
        cJSON *toks = cJSON_AddArrayToObject(j, "tokens");
        char **strs = dk_malloc((size_t)(o->n ? o->n : 1) * sizeof *strs);
        int32_t *ids = dk_malloc((size_t)(o->n ? o->n : 1) * sizeof *ids), *cols = dk_malloc((size_t)(o->n ? o->n : 1) * sizeof *cols);
        double *value = dk_malloc((size_t)(o->n ? o->n : 1) * sizeof *value), *avg = dk_malloc((size_t)(o->n ? o->n : 1) * sizeof *avg);
        int64_t *cp = dk_malloc((size_t)(o->n ? o->n : 1) * sizeof *cp), *cn = dk_malloc((size_t)(o->n ? o->n : 1) * sizeof *cn);
        for (int64_t e = 0; e < o->n; e++) {
            const dm_entry *en = &o->e[e];
            strs[e] = dm_token_str(tok, en->token_id);
            ids[e] = en->token_id, cols[e] = en->col, value[e] = en->value, avg[e] = en->avg;
            cp[e] = en->count_positive, cn[e] = en->count_negative;
            cJSON *t = cJSON_CreateObject();
            cJSON_AddNumberToObject(t, "token_id", en->token_id);
            cJSON_AddStringToObject(t, "token_str", strs[e]);
            cJSON_AddNumberToObject(t, "ordering_value", en->value);
            cJSON_AddNumberToObject(t, "avg_logit_diff", en->avg);
            cJSON_AddNumberToObject(t, "count_positive", (double)en->count_positive);
            cJSON_AddNumberToObject(t, "count_negative", (double)en->count_negative);
            if (en->col >= 0) cJSON_AddNumberToObject(t, "nmf_col_idx", en->col);
            cJSON_AddItemToArray(toks, t);
        }
        if (o->topic) {
            cJSON_AddNumberToObject(j, "nmf_topic_idx", i);
            cJSON_AddNumberToObject(j, "nmf_topic_mass", o->mass);
            cJSON_AddNumberToObject(j, "nmf_topic_prevalence", o->prevalence);
            cJSON_AddNumberToObject(j, "nmf_topic_concentration", o->concentration);
        }
        snprintf(path, sizeof path, "%s/%s/%s.json", r->dir, dataset, o->id);
        dk_results_json(res, path, j);

        char g[384];
        snprintf(g, sizeof g, "%s/orderings/%s/%s", dataset, r->type_id, o->id);
        dk_results_attr_str(res, g, "display_label", o->label);
        if (o->topic) {
            dk_results_attr_f64(res, g, "nmf_topic_mass", o->mass);
            dk_results_attr_f64(res, g, "nmf_topic_prevalence", o->prevalence);
            dk_results_attr_f64(res, g, "nmf_topic_concentration", o->concentration);
        }
        snprintf(path, sizeof path, "%s/token_id", g);
        dk_results_i32(res, path, 1, &o->n, ids);
        snprintf(path, sizeof path, "%s/token_str", g);
        dk_results_strings(res, path, o->n, (const char *const *)strs);
        snprintf(path, sizeof path, "%s/ordering_value", g);
        dk_results_f64(res, path, 1, &o->n, value);
        snprintf(path, sizeof path, "%s/avg_logit_diff", g);
        dk_results_f64(res, path, 1, &o->n, avg);
        snprintf(path, sizeof path, "%s/count_positive", g);
        dk_results_i64(res, path, 1, &o->n, cp);
        snprintf(path, sizeof path, "%s/count_negative", g);
        dk_results_i64(res, path, 1, &o->n, cn);
        if (o->topic) {
            snprintf(path, sizeof path, "%s/nmf_col_idx", g);
            dk_results_i32(res, path, 1, &o->n, cols);
        }
        for (int64_t e = 0; e < o->n; e++) free(strs[e]);
        free(strs), free(ids), free(cols), free(value), free(avg), free(cp), free(cn);
    }
    snprintf(path, sizeof path, "%s/%s/orderings.json", r->dir, dataset);
    dk_results_json(res, path, index);
    char g[384];
    snprintf(g, sizeof g, "%s/orderings/%s", dataset, r->type_id);
    dk_results_attr_str(res, g, "folder", r->dir);
    if (r->type != DM_NMF) return;
    const int R = r->fit.rank;
    const int64_t wdims[2] = {r->fit.cols, R}, cdims[2] = {R, R};
    snprintf(g, sizeof g, "%s/nmf", dataset);
    snprintf(path, sizeof path, "%s/W", g);
    dk_results_f32(res, path, 2, wdims, r->fit.W);
    snprintf(path, sizeof path, "%s/col_token_id", g);
    dk_results_i32(res, path, 1, &r->fit.cols, r->col2tok);
    snprintf(path, sizeof path, "%s/cosine_similarity", g);
    dk_results_f64(res, path, 2, cdims, r->cosine);
    dk_results_attr_i64(res, g, "rows", r->fit.rows);
    dk_results_attr_i64(res, g, "cols", r->fit.cols);
    dk_results_attr_i64(res, g, "nnz", r->nnz);
    dk_results_attr_i64(res, g, "n_iter", r->fit.n_iter);
    dk_results_attr_f64(res, g, "reconstruction_error", r->error);
    dk_results_attr_i64(res, g, "seed", (int64_t)s->seed);
    dk_results_attr_str(res, g, "mode", s->mode);
}

/* Python's round(x, 2) for a double: the correctly rounded 2-decimal value, as printf gives it. */
static double round2(double x) {
    char b[64];
    snprintf(b, sizeof b, "%.2f", x);
    return strtod(b, NULL);
}

cJSON *dm_token_groups(const dm_type_result *r, const dk_tokenizer *tok, int64_t top_k_tokens) {
    cJSON *groups = cJSON_CreateArray();
    for (int i = 0; i < r->n_o; i++) {
        const int64_t budget = top_k_tokens / r->n_o + (i < top_k_tokens % r->n_o ? 1 : 0);
        if (budget <= 0) continue;
        cJSON *g = cJSON_CreateArray();
        for (int64_t e = 0; e < r->o[i].n && e < budget; e++) {
            cJSON *t = cJSON_CreateObject();
            char *s = dm_token_str(tok, r->o[i].e[e].token_id);
            cJSON_AddStringToObject(t, "token_str", s);
            free(s);
            cJSON_AddNumberToObject(t, "ordering_value", round2(r->o[i].e[e].value));
            cJSON_AddItemToArray(g, t);
        }
        cJSON_AddItemToArray(groups, g);
    }
    return groups;
}
