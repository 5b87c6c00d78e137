/* dict_step.c — see dict_step.h. The encoder is one OpenBLAS sgemm; everything after the selection touches only
 * the selected latents (about B·k of B·F entries), so the sparse loops cost a few percent of the GEMM. */
#include "kernels/cpu/dict_step.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void dk_cpu_dict_encode(const dk_dict_shape *s, const float *x, int64_t n, const float *W_enc, const float *b_enc,
                        const float *b_dec, float *u, float *pre) {
    const int64_t D = s->D, F = s->F;
    const float *in = x;
    if (b_dec) {
        for (int64_t r = 0; r < n; r++)
            for (int64_t i = 0; i < D; i++) u[r * D + i] = x[r * D + i] - b_dec[i];
        in = u;
    } else if (u && u != x) {
        memcpy(u, x, (size_t)(n * D) * sizeof(float));
    }
    for (int64_t r = 0; r < n; r++) memcpy(pre + r * F, b_enc, (size_t)F * sizeof(float));
    if (n > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)F, (int)D, 1.0f, in, (int)D, W_enc, (int)D,
                    1.0f, pre, (int)F);
}

void dk_cpu_dict_code_weights(const dk_dict_shape *s, const float *W_dec, float *w) {
    for (int64_t j = 0; j < s->F; j++) {
        float total = 0;
        for (int64_t l = 0; l < s->L; l++) {
            const float *v = W_dec + j * s->D + l * s->d;
            double ss = 0;
            for (int64_t i = 0; i < s->d; i++) ss += (double)v[i] * v[i];
            total += (float)sqrt(ss);
        }
        w[j] = total;
    }
}

static inline uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

void dk_cpu_dict_scores(float *pre, int64_t n, int64_t F, const float *w, float *scores, uint64_t *hist_hi) {
    for (int64_t r = 0; r < n; r++)
        for (int64_t j = 0; j < F; j++) {
            const int64_t i = r * F + j;
            const float a = pre[i] > 0 ? pre[i] : 0.0f;
            const float v = w ? a * w[j] : a;
            pre[i] = a;
            scores[i] = v;
            if (hist_hi && v > 0 && v <= FLT_MAX) hist_hi[bits_of(v) >> 16]++;
        }
}


void dk_cpu_hist_hi(const float *s, int64_t n, uint64_t *hist) {
    for (int64_t i = 0; i < n; i++)
        if (s[i] > 0 && s[i] <= FLT_MAX) hist[bits_of(s[i]) >> 16]++;
}

void dk_cpu_hist_lo(const float *s, int64_t n, uint32_t hi_bin, uint64_t *hist) {
    for (int64_t i = 0; i < n; i++) {
        if (!(s[i] > 0 && s[i] <= FLT_MAX)) continue;
        const uint32_t b = bits_of(s[i]);
        if ((b >> 16) == hi_bin) hist[b & 0xffffu]++;
    }
}

int64_t dk_cpu_select(const float *scores, const float *val, int64_t rows, int64_t F, float t, int64_t ties,
                      int64_t *row_ptr, int32_t *idx, float *fval, int64_t cap) {
    int64_t n = 0;
    row_ptr[0] = 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *sr = scores + r * F;
        for (int64_t j = 0; j < F; j++) {
            const float v = sr[j];
            bool take = t > 0 ? v > t : v > 0;
            if (!take && t > 0 && v == t && ties > 0) take = true, ties--;
            if (!take) continue;
            if (n >= cap) {
                fprintf(stderr, "dk_cpu_select: more than %lld entries selected\n", (long long)cap);
                abort();
            }
            idx[n] = (int32_t)j;
            fval[n] = val[r * F + j];
            n++;
        }
        row_ptr[r + 1] = n;
    }
    return n;
}

typedef struct scored {
    float s;
    int32_t j;
} scored;

/* larger score first, then lower index */
static int cmp_scored(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->s != y->s) return x->s > y->s ? -1 : 1;
    return (x->j > y->j) - (x->j < y->j);
}

int64_t dk_cpu_auxk_select(const float *scores, const float *val, int64_t rows, int64_t F, const uint8_t *dead,
                           int64_t k_aux, int64_t *row_ptr, int32_t *idx, float *fval) {
    scored *buf = malloc((size_t)(F ? F : 1) * sizeof *buf);
    if (!buf) abort();
    int64_t n = 0;
    row_ptr[0] = 0;
    for (int64_t r = 0; r < rows; r++) {
        int64_t m = 0;
        for (int64_t j = 0; j < F; j++)
            if (dead[j]) buf[m].s = scores[r * F + j], buf[m].j = (int32_t)j, m++;
        const int64_t k = k_aux < m ? k_aux : m;
        if (k < m) { /* partial: the k best by a selection, then sorted (small k) */
            qsort(buf, (size_t)m, sizeof *buf, cmp_scored);
        }
        for (int64_t i = 0; i < k; i++) {
            const float v = val[r * F + buf[i].j];
            if (!(v > 0)) continue;
            idx[n] = buf[i].j;
            fval[n] = v;
            n++;
        }
        row_ptr[r + 1] = n;
    }
    free(buf);
    return n;
}

void dk_cpu_dict_decode(const dk_dict_shape *s, int64_t rows, const int64_t *row_ptr, const int32_t *idx,
                        const float *fval, const float *W_dec, const float *b_dec, float *out) {
    const int64_t D = s->D, F = s->F;
    /* blocks of latents whose decoder rows (about 1.5 MiB) stay in the cache while every row takes its entries in
       the block (a row's entries are in ascending latent order: each output value adds its latents in that order,
       as an unblocked pass would) */
    int64_t block = (int64_t)(3 << 19) / (D * (int64_t)sizeof(float));
    block = block < 8 ? 8 : block;
    int64_t *at = malloc((size_t)(rows ? rows : 1) * sizeof(int64_t)); /* each row's next entry */
    if (!at) abort();
    for (int64_t r = 0; r < rows; r++) {
        float *o = out + r * D;
        if (b_dec) memcpy(o, b_dec, (size_t)D * sizeof(float));
        else memset(o, 0, (size_t)D * sizeof(float));
        at[r] = row_ptr[r];
    }
    for (int64_t j0 = 0; j0 < F; j0 += block) {
        const int64_t j1 = j0 + block;
        for (int64_t r = 0; r < rows; r++) {
            float *o = out + r * D;
            int64_t e = at[r];
            for (; e < row_ptr[r + 1] && idx[e] < j1; e++) {
                const float f = fval[e], *w = W_dec + (int64_t)idx[e] * D;
                for (int64_t i = 0; i < D; i++) o[i] += f * w[i];
            }
            at[r] = e;
        }
    }
    free(at);
}

void dk_cpu_dict_csc(int64_t rows, int64_t F, const int64_t *row_ptr, const int32_t *idx, const float *fval,
                     int64_t *col_ptr, int32_t *row_of, float *cval) {
    memset(col_ptr, 0, (size_t)(F + 1) * sizeof(int64_t));
    for (int64_t e = row_ptr[0]; e < row_ptr[rows]; e++) col_ptr[idx[e] + 1]++;
    for (int64_t j = 0; j < F; j++) col_ptr[j + 1] += col_ptr[j];
    int64_t *fill = malloc((size_t)(F ? F : 1) * sizeof(int64_t));
    if (!fill) abort(); /* out of memory: kernels/ has no error channel, as above */
    memcpy(fill, col_ptr, (size_t)F * sizeof(int64_t));
    for (int64_t r = 0; r < rows; r++) /* rows in order: each latent's entries stay in row order */
        for (int64_t e = row_ptr[r]; e < row_ptr[r + 1]; e++) {
            const int64_t at = fill[idx[e]]++;
            row_of[at] = (int32_t)r;
            cval[at] = fval[e];
        }
    free(fill);
}

/* w·g over n values with eight partial sums (vectorisable; fixed order, so the result does not depend on threads). */
static float dot8(const float *w, const float *g, int64_t n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += w[i + l] * g[i + l];
    float tail = 0;
    for (; i < n; i++) tail += w[i] * g[i];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

void dk_cpu_dict_backward_latents(const dk_dict_shape *s, int64_t j0, int64_t j1, const int64_t *col_ptr,
                                  const int32_t *row_of, const float *cval, const float *g, const float *u,
                                  const float *W_dec, float *dW_enc, float *db_enc, float *dW_dec) {
    const int64_t D = s->D;
    for (int64_t j = j0; j < j1; j++) {
        if (col_ptr[j] == col_ptr[j + 1]) continue;
        const float *w = W_dec + j * D;
        float *restrict dwd = dW_dec + j * D, *restrict dwe = dW_enc + j * D;
        float db = 0;
        for (int64_t e = col_ptr[j]; e < col_ptr[j + 1]; e++) {
            const int64_t r = row_of[e];
            const float f = cval[e], *restrict gr = g + r * D, *restrict ur = u + r * D;
            const float delta = dot8(w, gr, D);
            for (int64_t i = 0; i < D; i++) dwd[i] += f * gr[i];
            for (int64_t i = 0; i < D; i++) dwe[i] += delta * ur[i];
            db += delta;
        }
        db_enc[j] += db;
    }
}

void dk_cpu_dict_backward(const dk_dict_shape *s, int64_t rows, const int64_t *row_ptr, const int32_t *idx,
                          const float *fval, const float *g, const float *u, const float *W_dec, float *dW_enc,
                          float *db_enc, float *dW_dec) {
    const int64_t F = s->F, nnz = row_ptr[rows] - row_ptr[0];
    int64_t *col_ptr = malloc((size_t)(F + 1) * sizeof(int64_t));
    int32_t *row_of = malloc((size_t)(nnz ? nnz : 1) * sizeof(int32_t));
    float *cval = malloc((size_t)(nnz ? nnz : 1) * sizeof(float));
    if (!col_ptr || !row_of || !cval) abort();
    dk_cpu_dict_csc(rows, F, row_ptr, idx, fval, col_ptr, row_of, cval);
    dk_cpu_dict_backward_latents(s, 0, F, col_ptr, row_of, cval, g, u, W_dec, dW_enc, db_enc, dW_dec);
    free(col_ptr), free(row_of), free(cval);
}

void dk_cpu_dict_bdec_through_encoder(const dk_dict_shape *s, const float *W_enc, const float *db_enc, float *db_dec) {
    cblas_sgemv(CblasRowMajor, CblasTrans, (int)s->F, (int)s->D, -1.0f, W_enc, (int)s->D, db_enc, 1, 1.0f, db_dec, 1);
}

void dk_cpu_dict_remove_parallel(const dk_dict_shape *s, const float *W_dec, float *dW_dec) {
    const int64_t D = s->D;
    for (int64_t j = 0; j < s->F; j++) {
        const float *w = W_dec + j * D;
        float *g = dW_dec + j * D;
        double ss = 0;
        for (int64_t i = 0; i < D; i++) ss += (double)w[i] * w[i];
        const float inv = 1.0f / ((float)sqrt(ss) + 1e-6f);
        float dot = 0;
        for (int64_t i = 0; i < D; i++) dot += g[i] * (w[i] * inv);
        for (int64_t i = 0; i < D; i++) g[i] -= dot * (w[i] * inv);
    }
}

void dk_cpu_dict_unit_norm(const dk_dict_shape *s, float *W_dec) {
    const int64_t D = s->D;
    for (int64_t j = 0; j < s->F; j++) {
        float *w = W_dec + j * D;
        double ss = 0;
        for (int64_t i = 0; i < D; i++) ss += (double)w[i] * w[i];
        const float norm = (float)sqrt(ss) + FLT_EPSILON;
        for (int64_t i = 0; i < D; i++) w[i] /= norm;
    }
}

void dk_cpu_dict_residual(const dk_dict_shape *s, const float *x, int64_t n, int64_t B, bool sae, float *e, float *g,
                          double sums[2]) {
    const int64_t D = s->D, d = s->d, L = s->L;
    sums[0] = sums[1] = 0;
    for (int64_t r = 0; r < n; r++)
        for (int64_t l = 0; l < L; l++) {
            double ss = 0;
            for (int64_t i = 0; i < d; i++) {
                const int64_t o = r * D + l * d + i;
                e[o] = x[o] - e[o];
                ss += (double)e[o] * e[o];
            }
            sums[0] += ss;
            const float norm = (float)sqrt(ss);
            sums[1] += norm;
            for (int64_t i = 0; i < d; i++) {
                const int64_t o = r * D + l * d + i;
                g[o] = sae ? -2.0f / (float)B * e[o] : (norm > 0 ? -e[o] / norm / (float)(B * L) : 0.0f);
            }
        }
}

float dk_cpu_dict_fired(int64_t nnz, const int32_t *idx, const float *fval, const float *w, int64_t F, uint8_t *fired) {
    memset(fired, 0, (size_t)F);
    float min_sel = INFINITY;
    for (int64_t e = 0; e < nnz; e++) {
        fired[idx[e]] = 1;
        const float v = w ? fval[e] * w[idx[e]] : fval[e];
        if (v < min_sel) min_sel = v;
    }
    return min_sel;
}

void dk_cpu_dict_col_sums(const float *x, int64_t n, int64_t D, double *out) {
    memset(out, 0, (size_t)D * sizeof(double));
    for (int64_t r = 0; r < n; r++)
        for (int64_t i = 0; i < D; i++) out[i] += x[r * D + i];
}

void dk_cpu_dict_bdec_grad(const float *g, int64_t n, int64_t D, float *db_dec) {
    for (int64_t r = 0; r < n; r++)
        for (int64_t i = 0; i < D; i++) db_dec[i] += g[r * D + i];
}

void dk_cpu_dict_auxk_residual(const float *e, const float *ehat, const double *mean_e, int64_t n, int64_t D,
                               double nd[2]) {
    nd[0] = nd[1] = 0;
    for (int64_t r = 0; r < n; r++)
        for (int64_t i = 0; i < D; i++) {
            const double dh = (double)e[r * D + i] - ehat[r * D + i], dm = (double)e[r * D + i] - mean_e[i];
            nd[0] += dh * dh;
            nd[1] += dm * dm;
        }
}

void dk_cpu_dict_auxk_grad(const float *e, float *ehat, int64_t count, float coef) {
    for (int64_t i = 0; i < count; i++) ehat[i] = coef * (e[i] - ehat[i]);
}

double dk_cpu_sumsq(const float *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

void dk_cpu_adam(float *p, const float *g, float *m, float *v, int64_t n, float grad_scale, double lr, double beta1,
                 double beta2, double eps, int64_t t) {
    const dk_adam_coef c = dk_adam_coefs(lr, beta1, beta2, eps, t);
    const float step = c.step, bc2_sqrt = c.bc2_sqrt, w1 = c.w1, b2 = c.b2, w2 = c.w2, e = c.eps;
    for (int64_t i = 0; i < n; i++) {
        const float gi = g[i] * grad_scale;
        m[i] = m[i] + w1 * (gi - m[i]);
        v[i] = v[i] * b2 + w2 * gi * gi;
        const float denom = sqrtf(v[i]) / bc2_sqrt + e;
        p[i] = p[i] - step * (m[i] / denom);
    }
}
