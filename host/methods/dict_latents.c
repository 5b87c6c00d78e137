/* dict_latents.c — the per-latent numbers of the dictionary analysis that need no files: the seed's latent_df
 * columns from the weights (build_push_{crosscoder,sae_difference}_latent_df), the steering selection
 * (smallest |column|), and the closed-form latent-scaling sums (closed_form_scalars with the targets of
 * latent_scaling/utils.py). See dict_analysis.h for the formulas; dict_analysis.c streams the rows and writes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/host_memory.h"
#include "kernels/cpu/dict_step.h"
#include "methods/dict_analysis.h"

/* ---- latent_df ---------------------------------------------------------------------------------------------- */

void dk_dict_df_init(dk_dict_latent_df *df, int64_t F) {
    memset(df, 0, sizeof *df);
    df->F = F;
}

void dk_dict_df_free(dk_dict_latent_df *df) {
    for (int i = 0; i < df->n_cols; i++) free(df->col[i]);
    free(df->tag);
    memset(df, 0, sizeof *df);
}

double *dk_dict_df_col(const dk_dict_latent_df *df, const char *name) {
    for (int i = 0; i < df->n_cols; i++)
        if (strcmp(df->name[i], name) == 0) return df->col[i];
    return NULL;
}

double *dk_dict_df_add(dk_dict_latent_df *df, const char *name) {
    double *c = dk_dict_df_col(df, name);
    if (c) return c;
    CHECK(df->n_cols < DK_DICT_MAX_COLS, "latent_df: more than %d columns", DK_DICT_MAX_COLS);
    c = dk_malloc((size_t)(df->F ? df->F : 1) * sizeof(double));
    for (int64_t j = 0; j < df->F; j++) c[j] = NAN;
    snprintf(df->name[df->n_cols], sizeof df->name[0], "%s", name);
    df->col[df->n_cols++] = c;
    return c;
}

const char *dk_dict_tag(double x) {
    if (x < 0.1) return "ft_only";
    if (x > 0.9) return "base_only";
    if (fabs(x - 0.5) < 0.1) return "shared";
    return "other";
}

static double dot(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* torch.nn.functional.cosine_similarity: a·b / (max(‖a‖, eps) · max(‖b‖, eps)), eps 1e-8. */
static double cosine(double ab, double na, double nb) { return ab / (fmax(na, 1e-8) * fmax(nb, 1e-8)); }

/* ((n_b − n_f) / max(n_b, n_f) + 1) / 2: 0 finetuned-only, 1 base-only (NaN when both are 0, as in torch). */
static double norm_diff(double nb, double nf) { return ((nb - nf) / fmax(nb, nf) + 1) / 2; }

void dk_dict_latent_norms(const dk_dict_model *m, dk_dict_latent_df *df) {
    const dk_dict_shape *s = &m->s;
    const int64_t F = s->F, D = s->D, d = s->d;
    const float *We = dk_dict_W_enc(m), *Wd = dk_dict_W_dec(m);
    if (m->kind == DK_DICT_SAE) {
        double *dec = dk_dict_df_add(df, "dec_norm"), *enc = dk_dict_df_add(df, "enc_norm");
        for (int64_t j = 0; j < F; j++) {
            dec[j] = sqrt(dot(Wd + j * D, Wd + j * D, D));
            enc[j] = sqrt(dot(We + j * D, We + j * D, D));
        }
        return;
    }
    double *db = dk_dict_df_add(df, "dec_base_norm"), *dfn = dk_dict_df_add(df, "dec_ft_norm");
    double *dnd = dk_dict_df_add(df, "dec_norm_diff");
    double *eb = dk_dict_df_add(df, "enc_base_norm"), *ef = dk_dict_df_add(df, "enc_ft_norm");
    double *end = dk_dict_df_add(df, "enc_norm_diff");
    double *dcos = dk_dict_df_add(df, "dec_cos_sim"), *ecos = dk_dict_df_add(df, "enc_cos_sim");
    df->tag = dk_malloc((size_t)(F ? F : 1) * sizeof *df->tag);
    for (int64_t j = 0; j < F; j++) {
        const float *wdb = Wd + j * D, *wdf = wdb + d, *web = We + j * D, *wef = web + d;
        db[j] = sqrt(dot(wdb, wdb, d)), dfn[j] = sqrt(dot(wdf, wdf, d));
        eb[j] = sqrt(dot(web, web, d)), ef[j] = sqrt(dot(wef, wef, d));
        dnd[j] = norm_diff(db[j], dfn[j]);
        end[j] = norm_diff(eb[j], ef[j]);
        dcos[j] = cosine(dot(wdb, wdf, d), db[j], dfn[j]);
        ecos[j] = cosine(dot(web, wef, d), eb[j], ef[j]);
        df->tag[j] = dk_dict_tag(dnd[j]);
    }
}

typedef struct ranked {
    double v;
    int64_t j;
} ranked;

static int cmp_ranked(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? -1 : 1;
    return x->j < y->j ? -1 : x->j > y->j;
}

int64_t dk_dict_smallest(const dk_dict_latent_df *df, const char *column, int64_t k, int64_t *out) {
    const double *c = dk_dict_df_col(df, column);
    if (!c || k <= 0) return 0;
    ranked *r = dk_malloc((size_t)(df->F ? df->F : 1) * sizeof *r);
    int64_t n = 0;
    for (int64_t j = 0; j < df->F; j++)
        if (!isnan(c[j])) r[n].v = fabs(c[j]), r[n].j = j, n++;
    qsort(r, (size_t)n, sizeof *r, cmp_ranked);
    if (k > n) k = n;
    for (int64_t i = 0; i < k; i++) out[i] = r[i].j;
    free(r);
    return k;
}

int64_t dk_dict_chunk_rows(int64_t F) {
    const int64_t c = ((int64_t)1 << 24) / (F > 0 ? F : 1);
    return c < 1 ? 1 : c > 1024 ? 1024 : c;
}

/* ---- latent scaling ----------------------------------------------------------------------------------------- */

static const char *const SAE_TARGETS[] = {"base_activation", "ft_activation"};
static const char *const CC_TARGETS[] = {"base_activation", "ft_activation", "base_reconstruction",
                                         "ft_reconstruction", "base_error", "ft_error"};

void dk_dict_scaling_init(dk_dict_scaling *s, const dk_dict_model *m, const dk_dict_norm *nrm, dk_dict_target input,
                          int64_t cap) {
    memset(s, 0, sizeof *s);
    const int64_t F = m->s.F, D = m->s.D, d = m->s.d;
    const bool sae = m->kind == DK_DICT_SAE;
    s->m = m, s->nrm = nrm, s->input = sae ? input : DK_DICT_STACKED, s->F = F, s->cap = cap;
    s->n_targets = sae ? 2 : 6;
    for (int t = 0; t < s->n_targets; t++) s->target[t] = sae ? SAE_TARGETS[t] : CC_TARGETS[t];
    s->sums = dk_calloc((size_t)((s->n_targets + 2) * F), sizeof(double));
    s->x = dk_malloc((size_t)(cap * D) * sizeof(float));       /* (cap, D) encoder input, normalised */
    s->y = dk_malloc((size_t)(cap * 2 * d) * sizeof(float));   /* (cap, 2d) normalised [base, ft] */
    s->u = dk_malloc((size_t)(cap * D) * sizeof(float));
    s->pre = dk_malloc((size_t)(cap * F) * sizeof(float));     /* (cap, F) */
    s->xhat = dk_malloc((size_t)(cap * D) * sizeof(float));    /* (cap, D) reconstruction, normalised */
    s->val = dk_malloc((size_t)(cap * F) * sizeof(float));
    s->idx = dk_malloc((size_t)(cap * F) * sizeof(int32_t));
    s->row_ptr = dk_malloc((size_t)(cap + 1) * sizeof(int64_t));
    if (!sae) {
        s->w = dk_malloc((size_t)F * sizeof(float));
        dk_cpu_dict_code_weights(&m->s, dk_dict_W_dec(m), s->w);
    }
}

void dk_dict_scaling_free(dk_dict_scaling *s) {
    free(s->sums), free(s->x), free(s->y), free(s->u), free(s->pre), free(s->xhat), free(s->val), free(s->idx);
    free(s->row_ptr), free(s->w);
    memset(s, 0, sizeof *s);
}

void dk_dict_scaling_add(dk_dict_scaling *s, const float *pairs, int64_t n) {
    CHECK(n <= s->cap, "latent scaling: %lld rows, room for %lld", (long long)n, (long long)s->cap);
    const dk_dict_model *m = s->m;
    const int64_t F = s->F, D = m->s.D, d = m->s.d;
    const bool sae = m->kind == DK_DICT_SAE;
    const float *Wd = dk_dict_W_dec(m);
    /* the encoder's input, normalised as the model's .encode does */
    if (sae) {
        for (int64_t r = 0; r < n; r++) {
            const float *b = pairs + r * 2 * d, *f = b + d;
            float *x = s->x + r * d;
            for (int64_t i = 0; i < d; i++)
                x[i] = s->input == DK_DICT_DIFF_FTB ? f[i] - b[i] : s->input == DK_DICT_DIFF_BFT ? b[i] - f[i]
                       : s->input == DK_DICT_BASE   ? b[i] : f[i];
        }
        /* the targets: each model's rows normalised with the SAE's normaliser (normalize_batch_and_index_layer) */
        memcpy(s->y, pairs, (size_t)(n * 2 * d) * sizeof(float));
        dk_dict_norm_apply(s->nrm, s->y, 2 * n); /* width d: base and ft rows alike */
    } else {
        memcpy(s->x, pairs, (size_t)(n * D) * sizeof(float));
    }
    dk_dict_norm_apply(s->nrm, s->x, n);
    if (!sae) memcpy(s->y, s->x, (size_t)(n * D) * sizeof(float));
    dk_dict_encode_threshold(m, s->x, n, s->u, s->pre, s->w, s->row_ptr, s->idx, s->val);
    if (!sae)
        dk_cpu_dict_decode(&m->s, n, s->row_ptr, s->idx, s->val, Wd, dk_dict_b_dec(m), s->xhat);
    double *num = s->sums, *den = s->sums + s->n_targets * F, *cnt = den + F;
    for (int64_t r = 0; r < n; r++) {
        const float *yb = s->y + r * 2 * d, *yf = yb + d, *hb = s->xhat + r * D, *hf = hb + d;
        for (int64_t e = s->row_ptr[r]; e < s->row_ptr[r + 1]; e++) {
            const int64_t j = s->idx[e];
            const double f = s->val[e];
            const float *dj = sae ? Wd + j * D : Wd + j * D + d; /* the (finetuned) decoder vector of latent j */
            const double ab = dot(dj, yb, d), af = dot(dj, yf, d);
            num[0 * F + j] += f * ab;
            num[1 * F + j] += f * af;
            if (!sae) {
                const double rb = dot(dj, hb, d), rf = dot(dj, hf, d);
                const double cross_b = dot(dj, Wd + j * D, d), cross_f = dot(dj, dj, d);
                num[2 * F + j] += f * rb;
                num[3 * F + j] += f * rf;
                num[4 * F + j] += f * (ab - rb + f * cross_b); /* y = x̃_b − (x̂_b − f W_dec[j, base]) */
                num[5 * F + j] += f * (af - rf + f * cross_f); /* y = x̃_f − (x̂_f − f W_dec[j, ft]) */
            }
            den[j] += f * f;
            cnt[j] += 1;
        }
    }
}

void dk_dict_scaling_betas(const dk_dict_scaling *s, int t, double *beta) {
    const dk_dict_model *m = s->m;
    const int64_t F = s->F, D = m->s.D, d = m->s.d;
    const float *Wd = dk_dict_W_dec(m);
    const double *num = s->sums + t * F, *den = s->sums + s->n_targets * F;
    for (int64_t j = 0; j < F; j++) {
        const float *dj = m->kind == DK_DICT_SAE ? Wd + j * D : Wd + j * D + d;
        beta[j] = num[j] / (den[j] * dot(dj, dj, d)); /* 0/0 = NaN for a latent that never fired, as the seed's */
    }
}

/* ---- latent activations ------------------------------------------------------------------------------------- */

void dk_dict_acts_init(dk_dict_acts *a, const dk_dict_model *m, const dk_dict_norm *nrm, double min_threshold,
                       int64_t longest) {
    memset(a, 0, sizeof *a);
    CHECK(min_threshold >= 0, "latent activations: min_threshold %g < 0", min_threshold);
    const int64_t F = m->s.F, D = m->s.D;
    a->m = m, a->nrm = nrm, a->min_threshold = min_threshold, a->F = F;
    a->cap = dk_dict_chunk_rows(F);
    a->stats = dk_calloc((size_t)(F + 3), sizeof(double));
    a->max_act = dk_calloc((size_t)(F ? F : 1), sizeof(double));
    a->u = dk_malloc((size_t)(a->cap * D) * sizeof(float));
    a->pre = dk_malloc((size_t)(a->cap * F) * sizeof(float));
    a->val = dk_malloc((size_t)(a->cap * F) * sizeof(float));
    a->idx = dk_malloc((size_t)(a->cap * F) * sizeof(int32_t));
    a->row_ptr = dk_malloc((size_t)(a->cap + 1) * sizeof(int64_t));
    if (m->kind == DK_DICT_CROSSCODER) { /* the seed's get_activations: the code scaled by w_j */
        a->w = dk_malloc((size_t)F * sizeof(float));
        dk_cpu_dict_code_weights(&m->s, dk_dict_W_dec(m), a->w);
    }
    a->seq_max = dk_calloc((size_t)(F ? F : 1), sizeof(float));
    a->count = dk_calloc((size_t)(F ? F : 1), sizeof(int64_t));
    a->start = dk_calloc((size_t)(F ? F : 1), sizeof(int64_t));
    a->touched = dk_malloc((size_t)(F ? F : 1) * sizeof(int32_t));
    a->col = dk_calloc((size_t)(longest + 1), sizeof(float));
    a->longest = longest;
}

void dk_dict_acts_free(dk_dict_acts *a) {
    free(a->stats), free(a->max_act), free(a->u), free(a->pre), free(a->val), free(a->idx), free(a->row_ptr);
    free(a->w), free(a->e_tok), free(a->e_lat), free(a->e_val), free(a->sorted), free(a->seq_max), free(a->count);
    free(a->start), free(a->touched), free(a->col);
    memset(a, 0, sizeof *a);
}

static void push_entry(dk_dict_acts *a, int32_t t, int32_t j, float v) {
    if (a->n_e == a->cap_e) {
        a->cap_e = a->cap_e ? 2 * a->cap_e : 4096;
        a->e_tok = dk_realloc(a->e_tok, (size_t)a->cap_e * sizeof(int32_t));
        a->e_lat = dk_realloc(a->e_lat, (size_t)a->cap_e * sizeof(int32_t));
        a->e_val = dk_realloc(a->e_val, (size_t)a->cap_e * sizeof(float));
        a->sorted = dk_realloc(a->sorted, (size_t)a->cap_e * sizeof(int32_t));
    }
    a->e_tok[a->n_e] = t, a->e_lat[a->n_e] = j, a->e_val[a->n_e] = v, a->n_e++;
}

void dk_dict_acts_sequence(dk_dict_acts *a, float *x, int64_t T, const int32_t *tokens, int64_t q, dk_maxact *tables) {
    CHECK(T <= a->longest, "latent activations: a sequence of %lld tokens, room for %lld", (long long)T,
          (long long)a->longest);
    const int64_t D = a->m->s.D;
    a->n_e = 0;
    for (int64_t t0 = 0; t0 < T; t0 += a->cap) {
        const int64_t n = T - t0 < a->cap ? T - t0 : a->cap;
        float *xc = x + t0 * D;
        dk_dict_norm_apply(a->nrm, xc, n);
        dk_dict_encode_threshold(a->m, xc, n, a->u, a->pre, a->w, a->row_ptr, a->idx, a->val);
        for (int64_t r = 0; r < n; r++)
            for (int64_t e = a->row_ptr[r]; e < a->row_ptr[r + 1]; e++) {
                const int32_t j = a->idx[e];
                const float v = a->w ? a->val[e] * a->w[j] : a->val[e];
                if (v > a->min_threshold) push_entry(a, (int32_t)(t0 + r), j, v);
            }
    }
    double *active = a->stats, *totals = a->stats + a->F;
    totals[0] += (double)T, totals[1] += (double)a->n_e, totals[2] += 1;
    /* group the entries by latent (a counting sort; every entry is > min_threshold >= 0, so seq_max 0 = untouched) */
    int64_t n_touched = 0;
    for (int64_t e = 0; e < a->n_e; e++) {
        const int32_t j = a->e_lat[e];
        if (a->seq_max[j] == 0) a->touched[n_touched++] = j;
        if (a->e_val[e] > a->seq_max[j]) a->seq_max[j] = a->e_val[e];
        a->count[j]++;
    }
    int64_t off = 0;
    for (int64_t i = 0; i < n_touched; i++) {
        const int32_t j = a->touched[i];
        a->start[j] = off;
        off += a->count[j];
    }
    for (int64_t e = 0; e < a->n_e; e++) a->sorted[a->start[a->e_lat[e]]++] = (int32_t)e;
    for (int64_t i = 0; i < n_touched; i++) {
        const int32_t j = a->touched[i];
        const int64_t c = a->count[j], first = a->start[j] - c; /* start has moved past the latent's entries */
        active[j] += (double)c;
        if (a->seq_max[j] > a->max_act[j]) a->max_act[j] = a->seq_max[j];
        if (tables && dk_maxact_wants(&tables[j], a->seq_max[j], q)) {
            for (int64_t e = first; e < first + c; e++) a->col[a->e_tok[a->sorted[e]]] = a->e_val[a->sorted[e]];
            dk_maxact_offer(&tables[j], a->seq_max[j], q, tokens, T, a->col);
            for (int64_t e = first; e < first + c; e++) a->col[a->e_tok[a->sorted[e]]] = 0;
        }
        a->seq_max[j] = 0, a->count[j] = 0;
    }
}
