/* dict_train.c — see dict_train.h. */
#include "methods/dict_train.h"

#include "core/parallel.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "kernels/cpu/dict_step.h"

/* ---- collectives ----------------------------------------------------------------------------------------- */

void dk_dict_allreduce_f64(const dk_dist *d, double *v, int64_t n) {
    for (int64_t o = 0; o < n; o += 1 << 28) {
        int c = (int)(n - o < (1 << 28) ? n - o : (1 << 28));
        MPI_Allreduce(MPI_IN_PLACE, v + o, c, MPI_DOUBLE, MPI_SUM, d->comm);
    }
}

void dk_dict_allreduce_f32(const dk_dist *d, float *v, int64_t n) {
    for (int64_t o = 0; o < n; o += 1 << 28) {
        int c = (int)(n - o < (1 << 28) ? n - o : (1 << 28));
        MPI_Allreduce(MPI_IN_PLACE, v + o, c, MPI_FLOAT, MPI_SUM, d->comm);
    }
}

/* ---- schedule -------------------------------------------------------------------------------------------- */

int64_t dk_dict_k_at(const dk_dict_train_cfg *c, int64_t step) {
    if (c->k_anneal_steps > 0 && c->k_initial != c->k) {
        if (step >= c->k_anneal_steps) return c->k;
        const double progress = (double)step / (double)c->k_anneal_steps;
        const double kf = (double)c->k_initial - (double)(c->k_initial - c->k) * progress;
        const double r = nearbyint(kf); /* Python's round(): half to even (the default rounding mode) */
        return r > 1 ? (int64_t)r : 1;
    }
    return c->k_anneal_steps == 0 ? c->k_initial : c->k;
}

double dk_dict_lr_at(const dk_dict_train_cfg *c, int64_t step) {
    double f = 1.0;
    if (step < c->warmup_steps) f = (double)step / (double)c->warmup_steps;
    else if (c->decay_start >= 0 && step >= c->decay_start)
        f = (double)(c->steps - step) / (double)(c->steps - c->decay_start);
    return c->lr * f;
}

/* ---- setup ----------------------------------------------------------------------------------------------- */

void dk_dict_trainer_init(dk_dict_trainer *tr, const dk_dist *dist, const dk_dict_train_cfg *cfg, dk_dict_model *m,
                          int64_t max_rows) {
    memset(tr, 0, sizeof *tr);
    tr->dist = dist;
    tr->c = *cfg;
    tr->m = m;
    const int64_t P = m->P, D = m->s.D, F = m->s.F, rows = max_rows > 0 ? max_rows : 1;
    tr->grad = dk_calloc((size_t)P, sizeof(float));
    tr->adam_m = dk_calloc((size_t)P, sizeof(float));
    tr->adam_v = dk_calloc((size_t)P, sizeof(float));
    tr->since_fired = dk_calloc((size_t)F, sizeof(int64_t));
    tr->cap_rows = rows;
    tr->u = dk_malloc((size_t)(rows * D) * sizeof(float));
    tr->pre = dk_malloc((size_t)(rows * F) * sizeof(float));
    tr->scores = m->kind == DK_DICT_SAE ? NULL : dk_malloc((size_t)(rows * F) * sizeof(float)); /* SAE: pre */
    tr->hist = dk_malloc(65536 * sizeof(uint64_t));
    tr->hist_scratch = dk_malloc((size_t)(cfg->threads > 1 ? cfg->threads : 1) * 65536 * sizeof(uint64_t));
    tr->xhat = dk_malloc((size_t)(rows * D) * sizeof(float));
    tr->g = dk_malloc((size_t)(rows * D) * sizeof(float));
    tr->ehat = dk_malloc((size_t)(rows * D) * sizeof(float));
    tr->w = dk_malloc((size_t)F * sizeof(float));
    tr->row_ptr = dk_malloc((size_t)(rows + 1) * sizeof(int64_t));
    tr->aux_ptr = dk_malloc((size_t)(rows + 1) * sizeof(int64_t));
    /* the selection keeps k·B entries globally; a rank can hold all of them (at most rows·F) */
    int64_t k_max = cfg->k_initial > cfg->k ? cfg->k_initial : cfg->k;
    tr->cap_sel = rows * F < k_max * rows * 64 ? rows * F : k_max * rows * 64;
    tr->idx = dk_malloc((size_t)tr->cap_sel * sizeof(int32_t));
    tr->fval = dk_malloc((size_t)tr->cap_sel * sizeof(float));
    const int64_t aux_cap = rows * (cfg->top_k_aux < F ? cfg->top_k_aux : F);
    tr->aux_idx = dk_malloc((size_t)(aux_cap ? aux_cap : 1) * sizeof(int32_t));
    tr->aux_val = dk_malloc((size_t)(aux_cap ? aux_cap : 1) * sizeof(float));
    tr->col_ptr = dk_malloc((size_t)(F + 1) * sizeof(int64_t));
    const int64_t csc_cap = tr->cap_sel > aux_cap ? tr->cap_sel : (aux_cap ? aux_cap : 1); /* main code or AuxK's */
    tr->row_of = dk_malloc((size_t)csc_cap * sizeof(int32_t));
    tr->cval = dk_malloc((size_t)csc_cap * sizeof(float));
    tr->fired = dk_malloc((size_t)F);
    tr->dead = dk_malloc((size_t)F);
}

void dk_dict_trainer_free(dk_dict_trainer *tr) {
    free(tr->grad), free(tr->adam_m), free(tr->adam_v), free(tr->since_fired);
    free(tr->u), free(tr->pre), free(tr->scores), free(tr->hist), free(tr->hist_scratch), free(tr->xhat), free(tr->g), free(tr->ehat), free(tr->w);
    free(tr->row_ptr), free(tr->aux_ptr), free(tr->idx), free(tr->fval), free(tr->aux_idx), free(tr->aux_val);
    free(tr->fired), free(tr->dead), free(tr->col_ptr), free(tr->row_of), free(tr->cval);
    memset(tr, 0, sizeof *tr);
}

/* ---- step 0: the geometric median of the global batch (per layer for the crosscoder) ---------------------- */

void dk_dict_geometric_median(const dk_dist *dist, const dk_dict_shape *s, const float *x, int64_t n, int64_t B,
                             float *out) {
    const int64_t L = s->L, d = s->d, D = s->D;
    double *acc = dk_calloc((size_t)(D + L), sizeof(double)); /* Σ w·x per layer, then Σ w per layer */
    float *guess = dk_malloc((size_t)D * sizeof(float)), *prev = dk_malloc((size_t)D * sizeof(float));
    for (int64_t r = 0; r < n; r++)
        for (int64_t i = 0; i < D; i++) acc[i] += x[r * D + i];
    dk_dict_allreduce_f64(dist, acc, D);
    for (int64_t i = 0; i < D; i++) guess[i] = (float)(acc[i] / (double)B);
    for (int it = 0; it < 100; it++) {
        memcpy(prev, guess, (size_t)D * sizeof(float));
        memset(acc, 0, (size_t)(D + L) * sizeof(double));
        for (int64_t r = 0; r < n; r++)
            for (int64_t l = 0; l < L; l++) {
                const float *xr = x + r * D + l * d, *gl = guess + l * d;
                double ss = 0;
                for (int64_t i = 0; i < d; i++) ss += ((double)xr[i] - gl[i]) * ((double)xr[i] - gl[i]);
                const double w = 1.0 / sqrt(ss); /* no guard, as the reference: a point at the guess gives inf */
                acc[D + l] += w;
                for (int64_t i = 0; i < d; i++) acc[l * d + i] += w * xr[i];
            }
        dk_dict_allreduce_f64(dist, acc, D + L);
        bool done = true;
        for (int64_t l = 0; l < L; l++) {
            double dist2 = 0;
            for (int64_t i = 0; i < d; i++) {
                guess[l * d + i] = (float)(acc[l * d + i] / acc[D + l]);
                const double dv = (double)guess[l * d + i] - prev[l * d + i];
                dist2 += dv * dv;
            }
            done = done && sqrt(dist2) < 1e-5;
        }
        if (done) break;
    }
    memcpy(out, guess, (size_t)D * sizeof(float));
    free(acc), free(guess), free(prev);
}

/* ---- the step's passes over threads (c.threads; results do not depend on the thread count) ---------------- */

typedef struct par_ctx {
    const dk_dict_shape *s;
    const int64_t *row_ptr, *col_ptr;
    const int32_t *idx, *row_of;
    const float *fval, *cval, *g, *u, *W_dec, *b_dec;
    float *out, *dW_enc, *db_enc, *dW_dec;
    float *p, *m, *v;
    const float *grad;
    float grad_scale;
    double lr;
    int64_t t, n;
    double *partial;
    const float *scores;
    uint64_t *hist;               /* (blocks, 65536) */
    int64_t blocks;
    uint32_t hi_bin;
    float *pre;
    const float *w;
    float *scores_out;
    int64_t F;
} par_ctx;

static void par_decode(void *ctx, int64_t r0, int64_t r1) {
    const par_ctx *c = ctx;
    dk_cpu_dict_decode(c->s, r1 - r0, c->row_ptr + r0, c->idx, c->fval, c->W_dec, c->b_dec, c->out + r0 * c->s->D);
}

static void par_backward(void *ctx, int64_t j0, int64_t j1) {
    const par_ctx *c = ctx;
    dk_cpu_dict_backward_latents(c->s, j0, j1, c->col_ptr, c->row_of, c->cval, c->g, c->u, c->W_dec, c->dW_enc,
                                 c->db_enc, c->dW_dec);
}

enum { SUMSQ_BLOCK = 1 << 16 };

static void par_sumsq(void *ctx, int64_t b0, int64_t b1) {
    par_ctx *c = ctx;
    for (int64_t b = b0; b < b1; b++) {
        const int64_t i0 = b * SUMSQ_BLOCK, len = c->n - i0 < SUMSQ_BLOCK ? c->n - i0 : SUMSQ_BLOCK;
        c->partial[b] = dk_cpu_sumsq(c->grad + i0, len);
    }
}

static void par_adam(void *ctx, int64_t i0, int64_t i1) {
    const par_ctx *c = ctx;
    dk_cpu_adam(c->p + i0, c->grad + i0, c->m + i0, c->v + i0, i1 - i0, c->grad_scale, c->lr, 0.9, 0.999, 1e-8, c->t);
}

/* low-half histogram block b of `blocks` equal ranges of the (n) scores, within high bin hi_bin */
static void par_hist_lo(void *ctx, int64_t b0, int64_t b1) {
    const par_ctx *c = ctx;
    for (int64_t b = b0; b < b1; b++) {
        const int64_t lo = c->n * b / c->blocks, hi = c->n * (b + 1) / c->blocks;
        uint64_t *h = c->hist + b * 65536;
        memset(h, 0, 65536 * sizeof(uint64_t));
        dk_cpu_hist_lo(c->scores + lo, hi - lo, c->hi_bin, h);
    }
}

/* hist (65536) += the per-block histograms of scratch (blocks, 65536), in block order */
static void add_block_hists(uint64_t *hist, const uint64_t *scratch, int64_t blocks) {
    for (int64_t b = 0; b < blocks; b++)
        for (int64_t i = 0; i < 65536; i++) hist[i] += scratch[b * 65536 + i];
}

/* hist (65536) += the low-half histogram of the count scores within high bin hi_bin, over the threads */
static void hist_lo_threads(int threads, const float *scores, int64_t count, uint32_t hi_bin, uint64_t *hist,
                            uint64_t *scratch) {
    const int64_t blocks = threads > 1 && count > 65536 ? threads : 1;
    par_ctx c = {.scores = scores, .n = count, .blocks = blocks, .hi_bin = hi_bin, .hist = scratch};
    dk_parallel_rows(threads, blocks, 1, par_hist_lo, &c);
    add_block_hists(hist, scratch, blocks);
}

/* scores block b of `blocks` equal row ranges: relu in place, scores, and the block's high-half histogram */
static void par_scores(void *ctx, int64_t b0, int64_t b1) {
    const par_ctx *c = ctx;
    for (int64_t b = b0; b < b1; b++) {
        const int64_t lo = c->n * b / c->blocks, hi = c->n * (b + 1) / c->blocks;
        uint64_t *h = c->hist + b * 65536;
        memset(h, 0, 65536 * sizeof(uint64_t));
        dk_cpu_dict_scores(c->pre + lo * c->F, hi - lo, c->F, c->w, c->scores_out + lo * c->F, h);
    }
}

/* pre (n, F) → relu(pre), scores, and hist (65536) = the scores' high-half histogram, over the threads */
static void scores_threads(int threads, float *pre, int64_t n, int64_t F, const float *w, float *scores,
                           uint64_t *hist, uint64_t *scratch) {
    const int64_t blocks = threads > 1 && n > 1 ? (threads < n ? threads : n) : 1;
    par_ctx c = {.pre = pre, .n = n, .F = F, .w = w, .scores_out = scores, .blocks = blocks, .hist = scratch};
    dk_parallel_rows(threads, blocks, 1, par_scores, &c);
    memset(hist, 0, 65536 * sizeof(uint64_t));
    add_block_hists(hist, scratch, blocks);
}

static void decode_threads(int threads, const dk_dict_shape *s, int64_t rows, const int64_t *row_ptr,
                           const int32_t *idx, const float *fval, const float *W_dec, const float *b_dec, float *out) {
    par_ctx c = {.s = s, .row_ptr = row_ptr, .idx = idx, .fval = fval, .W_dec = W_dec, .b_dec = b_dec, .out = out};
    dk_parallel_rows(threads, rows, 16, par_decode, &c);
}

/* The sparse backward of a CSR code over blocks of rows: each block's rows of g and u (about 1.5 MiB) stay in the
 * cache while every latent's entries in the block are added (the block's CSC), so a latent's gradient rows are
 * revisited once per block instead of a row of g and u being fetched from memory once per entry. Latent ranges run
 * on the threads. Each latent's entries are still added in row order: the result does not depend on the block
 * size or the thread count. */
static void backward_threads(dk_dict_trainer *tr, int64_t rows, const int64_t *row_ptr, const int32_t *idx,
                             const float *fval, const float *g, const float *u, float *dW_enc, float *db_enc,
                             float *dW_dec) {
    const dk_dict_shape *s = &tr->m->s;
    int64_t block = (int64_t)(3 << 19) / (2 * s->D * (int64_t)sizeof(float));
    block = block < 16 ? 16 : block;
    for (int64_t r0 = 0; r0 < rows; r0 += block) {
        const int64_t nb = rows - r0 < block ? rows - r0 : block;
        if (row_ptr[r0 + nb] == row_ptr[r0]) continue;
        dk_cpu_dict_csc(nb, s->F, row_ptr + r0, idx, fval, tr->col_ptr, tr->row_of, tr->cval);
        par_ctx c = {.s = s, .col_ptr = tr->col_ptr, .row_of = tr->row_of, .cval = tr->cval, .g = g + r0 * s->D,
                     .u = u + r0 * s->D, .W_dec = dk_dict_W_dec(tr->m), .dW_enc = dW_enc, .db_enc = db_enc,
                     .dW_dec = dW_dec};
        dk_parallel_rows(tr->c.threads, s->F, 8, par_backward, &c);
    }
}

/* Σ x² in fp64 over fixed blocks of 65536 values summed in order (the same whatever the thread count) */
static double sumsq_threads(int threads, const float *x, int64_t n) {
    const int64_t blocks = (n + SUMSQ_BLOCK - 1) / SUMSQ_BLOCK;
    par_ctx c = {.grad = x, .n = n, .partial = dk_malloc((size_t)(blocks ? blocks : 1) * sizeof(double))};
    dk_parallel_rows(threads, blocks, 1, par_sumsq, &c);
    double sum = 0;
    for (int64_t b = 0; b < blocks; b++) sum += c.partial[b];
    free(c.partial);
    return sum;
}

/* ---- the global BatchTopK threshold ------------------------------------------------------------------------ */

/* The CPU's low-half histogram of this rank's scores (dk_dict_hist_lo_fn). */
typedef struct cpu_scores {
    int threads;
    const float *scores;
    int64_t count;
    uint64_t *scratch;    /* (threads, 65536) the trainer's per-thread histograms */
} cpu_scores;

static void cpu_hist_lo(void *ctx, uint32_t hi_bin, uint64_t *hist) {
    const cpu_scores *c = ctx;
    hist_lo_threads(c->threads, c->scores, c->count, hi_bin, hist, c->scratch);
}

void dk_dict_global_threshold(const dk_dist *dist, uint64_t *h, int64_t K, dk_dict_hist_lo_fn hist_lo, void *ctx,
                              float *t, int64_t *ties) {
    enum { BINS = 65536 };
    uint64_t *mine = dk_calloc(BINS, sizeof(uint64_t));
    MPI_Allreduce(MPI_IN_PLACE, h, BINS, MPI_UINT64_T, MPI_SUM, dist->comm);
    uint64_t total = 0;
    for (int b = 0; b < BINS; b++) total += h[b];
    *t = 0;
    *ties = 0;
    if (total > (uint64_t)K) {
        uint64_t above = 0;
        int hb = BINS - 1;
        while (above + h[hb] < (uint64_t)K) above += h[hb--];
        hist_lo(ctx, (uint32_t)hb, mine);
        memcpy(h, mine, BINS * sizeof(uint64_t));
        MPI_Allreduce(MPI_IN_PLACE, h, BINS, MPI_UINT64_T, MPI_SUM, dist->comm);
        int lb = BINS - 1;
        while (above + h[lb] < (uint64_t)K) above += h[lb--];
        const uint32_t bits = ((uint32_t)hb << 16) | (uint32_t)lb;
        memcpy(t, &bits, sizeof bits);
        /* ties at t: the lowest global positions first (ranks hold the batch in rank order) */
        const int64_t need = K - (int64_t)above, local = (int64_t)mine[lb];
        int64_t before = 0;
        MPI_Exscan(&local, &before, 1, MPI_INT64_T, MPI_SUM, dist->comm);
        if (dist->rank == 0) before = 0;
        int64_t take = need - before;
        *ties = take < 0 ? 0 : take > local ? local : take;
    }
    free(mine);
}

/* ---- the step's host-side bookkeeping (shared with the GPU trainer, dict_train_cuda.c) -------------------- */

void dk_dict_fired_and_threshold(dk_dict_trainer *tr, float min_sel) {
    const dk_dict_train_cfg *c = &tr->c;
    dk_dict_model *m = tr->m;
    MPI_Allreduce(MPI_IN_PLACE, tr->fired, (int)m->s.F, MPI_UNSIGNED_CHAR, MPI_MAX, tr->dist->comm);
    if (tr->step > c->threshold_start_step) {
        MPI_Allreduce(MPI_IN_PLACE, &min_sel, 1, MPI_FLOAT, MPI_MIN, tr->dist->comm);
        const float mn = isinf(min_sel) ? 0.0f : min_sel;
        if (m->threshold < 0) m->threshold = mn;
        else m->threshold = (float)c->threshold_beta * m->threshold + (float)(1.0 - c->threshold_beta) * mn;
    }
}

void dk_dict_loss_stats(dk_dict_trainer *tr, double sums[2], int64_t B, int64_t k, int64_t n_sel) {
    const bool sae = tr->m->kind == DK_DICT_SAE;
    const int64_t L = tr->m->s.L;
    dk_dict_allreduce_f64(tr->dist, sums, 2);
    dk_dict_step_stats *st = &tr->last;
    memset(st, 0, sizeof *st);
    st->mse_loss = sums[0] / (double)(B * (sae ? 1 : L));
    st->l2_loss = sae ? sums[0] / (double)B : sums[1] / (double)(B * L);
    st->k = k;
    st->selected = n_sel;
}

int64_t dk_dict_count_dead(dk_dict_trainer *tr, int64_t B) {
    int64_t n_dead = 0;
    for (int64_t j = 0; j < tr->m->s.F; j++) {
        tr->since_fired[j] = tr->fired[j] ? 0 : tr->since_fired[j] + B;
        tr->dead[j] = tr->since_fired[j] >= tr->c.dead_threshold;
        n_dead += tr->dead[j];
    }
    tr->last.dead = n_dead;
    return n_dead;
}

bool dk_dict_auxk_coef(dk_dict_trainer *tr, double nd[2], int64_t B, float *coef) {
    dk_dict_allreduce_f64(tr->dist, nd, 2);
    const double num = nd[0] / (double)B, den = nd[1] / (double)B, aux = num / den;
    if (!isfinite(aux)) return false;
    tr->last.auxk_loss = aux;
    /* h = ∂(α·num/den)/∂ê = −(2α/(B·den)) (e − ê); the residual is detached */
    *coef = (float)(-2.0 * tr->c.auxk_alpha / ((double)B * den));
    return true;
}

int dk_dict_check_loss(dk_dict_trainer *tr, dk_err *err) {
    dk_dict_step_stats *st = &tr->last;
    st->loss = st->l2_loss + tr->c.auxk_alpha * st->auxk_loss;
    if (isfinite(st->loss)) return 0;
    dk_err_set(err, DK_EXIT_RUNTIME, "the training loss is not finite at step %lld (reconstruction %g, auxiliary "
               "%g): the weights diverged; lower diffing.method.training.lr", (long long)tr->step, st->l2_loss,
               st->auxk_loss);
    return -1;
}

float dk_dict_clip_scale(dk_dict_trainer *tr, double sumsq) {
    const double norm = sqrt(sumsq);
    const float coef = (float)(tr->c.clip / (norm + 1e-6));
    tr->last.grad_norm = norm;
    tr->last.lr = dk_dict_lr_at(&tr->c, tr->step);
    return coef < 1.0f ? coef : 1.0f;
}

/* ---- the step -------------------------------------------------------------------------------------------- */

int dk_dict_trainer_step(dk_dict_trainer *tr, const float *x, const float *raw, int64_t n, int64_t B, dk_err *err) {
    dk_dict_model *m = tr->m;
    const dk_dict_shape *s = &m->s;
    const dk_dict_train_cfg *c = &tr->c;
    const dk_dist *dist = tr->dist;
    const int64_t D = s->D, F = s->F, step = tr->step;
    const bool sae = m->kind == DK_DICT_SAE;
    CHECK(n <= tr->cap_rows, "dict step: %lld rows, scratch for %lld", (long long)n, (long long)tr->cap_rows);
    float *W_enc = dk_dict_W_enc(m), *b_enc = dk_dict_b_enc(m), *W_dec = dk_dict_W_dec(m), *b_dec = dk_dict_b_dec(m);
    float *gW_enc = tr->grad, *gb_enc = tr->grad + dk_dict_off_b_enc(s), *gW_dec = tr->grad + dk_dict_off_W_dec(s),
          *gb_dec = tr->grad + dk_dict_off_b_dec(s);

    if (step == 0) dk_dict_geometric_median(dist, s, sae ? raw : x, n, B, b_dec);

    /* 1. encode, scores, selection */
    const int64_t k = dk_dict_k_at(c, step), K = k * B;
    const float *w = NULL;
    if (!sae) {
        dk_cpu_dict_code_weights(s, W_dec, tr->w);
        w = tr->w;
    }
    const float *u = sae ? tr->u : x; /* the encoder's input, also the W_enc gradient's */
    dk_cpu_dict_encode(s, x, n, W_enc, b_enc, sae ? b_dec : NULL, sae ? tr->u : NULL, tr->pre);
    /* pre becomes relu(pre); the SAE's scores are relu(pre) itself */
    float *scores = sae ? tr->pre : tr->scores;
    scores_threads(c->threads, tr->pre, n, F, w, scores, tr->hist, tr->hist_scratch);
    float t;
    int64_t ties;
    cpu_scores cs = {c->threads, scores, n * F, tr->hist_scratch};
    dk_dict_global_threshold(dist, tr->hist, K, cpu_hist_lo, &cs, &t, &ties);
    const float *a = tr->pre;
    const int64_t n_sel = dk_cpu_select(scores, a, n, F, t, ties, tr->row_ptr, tr->idx, tr->fval, tr->cap_sel);

    /* 2. fired mask and threshold EMA */
    dk_dict_fired_and_threshold(tr, dk_cpu_dict_fired(n_sel, tr->idx, tr->fval, w, F, tr->fired));

    /* 3. decode, residual, loss and its gradient w.r.t. the reconstruction */
    decode_threads(c->threads, s, n, tr->row_ptr, tr->idx, tr->fval, W_dec, b_dec, tr->xhat);
    float *e = tr->xhat; /* e = x − x̂, in place */
    double sums[2]; /* Σ‖e_b‖², Σ_{b,l}‖e_bl‖ */
    dk_cpu_dict_residual(s, x, n, B, sae, e, tr->g, sums);
    dk_dict_loss_stats(tr, sums, B, k, n_sel);

    /* 4. dead latents (counted after this batch's firing), AuxK */
    memset(tr->grad, 0, (size_t)m->P * sizeof(float));
    const int64_t n_dead = dk_dict_count_dead(tr, B);
    if (n_dead > 0) {
        const int64_t k_aux = c->top_k_aux < n_dead ? c->top_k_aux : n_dead;
        dk_cpu_auxk_select(scores, a, n, F, tr->dead, k_aux, tr->aux_ptr, tr->aux_idx, tr->aux_val);
        decode_threads(c->threads, s, n, tr->aux_ptr, tr->aux_idx, tr->aux_val, W_dec, NULL, tr->ehat);
        double *mean_e = dk_malloc((size_t)D * sizeof(double));
        dk_cpu_dict_col_sums(e, n, D, mean_e);
        dk_dict_allreduce_f64(dist, mean_e, D);
        for (int64_t i = 0; i < D; i++) mean_e[i] /= (double)B;
        double nd[2]; /* Σ‖e − ê‖², Σ‖e − ē‖² */
        dk_cpu_dict_auxk_residual(e, tr->ehat, mean_e, n, D, nd);
        float coef;
        if (dk_dict_auxk_coef(tr, nd, B, &coef)) {
            dk_cpu_dict_auxk_grad(e, tr->ehat, n * D, coef);
            backward_threads(tr, n, tr->aux_ptr, tr->aux_idx, tr->aux_val, tr->ehat, u, gW_enc, gb_enc, gW_dec);
        }
        free(mean_e);
    }
    if (dk_dict_check_loss(tr, err) != 0) return -1;

    /* 5. backward of the main code, the decoder bias, the encoder's path to b_dec; sums over the ranks */
    backward_threads(tr, n, tr->row_ptr, tr->idx, tr->fval, tr->g, u, gW_enc, gb_enc, gW_dec);
    dk_cpu_dict_bdec_grad(tr->g, n, D, gb_dec);
    if (sae) dk_cpu_dict_bdec_through_encoder(s, W_enc, gb_enc, gb_dec);
    dk_dict_allreduce_f32(dist, tr->grad, m->P);

    /* 6. projection, clipping, Adam, renormalisation */
    if (sae) dk_cpu_dict_remove_parallel(s, W_dec, gW_dec);
    const float scale = dk_dict_clip_scale(tr, sumsq_threads(c->threads, tr->grad, m->P));
    par_ctx pc = {.p = m->p, .grad = tr->grad, .m = tr->adam_m, .v = tr->adam_v, .grad_scale = scale,
                  .lr = tr->last.lr, .t = step + 1};
    dk_parallel_rows(c->threads, m->P, 65536, par_adam, &pc);
    if (sae) dk_cpu_dict_unit_norm(s, W_dec);
    tr->step++;
    return 0;
}
