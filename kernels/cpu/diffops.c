/* diffops.c — see diffops.h. Single-threaded and row by row on purpose: the reference stays obviously right,
 * and the methods spread rows over MPI ranks (and threads, where a job asks for them). */
#include "kernels/cpu/diffops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/dtype_convert.h"

static double logsumexp(const float *z, int64_t n, double scale) {
    double m = -INFINITY;
    for (int64_t v = 0; v < n; v++)
        if ((double)z[v] * scale > m) m = (double)z[v] * scale;
    double s = 0;
    for (int64_t v = 0; v < n; v++) s += exp((double)z[v] * scale - m);
    return m + log(s);
}

void dk_cpu_kl_rows(float *kl, const float *logits_ft, const float *logits_base, int64_t rows, int64_t V,
                    float temperature) {
    const double inv_t = 1.0 / (double)temperature;
    for (int64_t r = 0; r < rows; r++) {
        const float *zf = logits_ft + r * V, *zb = logits_base + r * V;
        const double lse_f = logsumexp(zf, V, inv_t), lse_b = logsumexp(zb, V, inv_t);
        double acc = 0;
        for (int64_t v = 0; v < V; v++) {
            const double lf = (double)zf[v] * inv_t - lse_f, lb = (double)zb[v] * inv_t - lse_b;
            acc += exp(lf) * (lf - lb);
        }
        kl[r] = (float)acc;
    }
}

/* (value, index) ordering: better = larger value (or smaller when !largest), then lower index */
static bool better(float a, int32_t ia, float b, int32_t ib, bool largest) {
    if (a != b) return largest ? a > b : a < b;
    return ia < ib;
}

/* a min-heap of the k best so far, the weakest at the root */
static void sift_down(float *hv, int32_t *hi, int64_t n, int64_t i, bool largest) {
    for (;;) {
        int64_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && better(hv[w], hi[w], hv[l], hi[l], largest)) w = l;
        if (r < n && better(hv[w], hi[w], hv[r], hi[r], largest)) w = r;
        if (w == i) return;
        float tv = hv[i];
        int32_t ti = hi[i];
        hv[i] = hv[w], hi[i] = hi[w];
        hv[w] = tv, hi[w] = ti;
        i = w;
    }
}

void dk_cpu_topk(const float *x, int64_t rows, int64_t n, int64_t k, bool largest, float *values, int32_t *ids) {
    if (k <= 0) return;
    for (int64_t r = 0; r < rows; r++) {
        const float *row = x + r * n;
        float *hv = values + r * k;
        int32_t *hi = ids + r * k;
        for (int64_t i = 0; i < k; i++) hv[i] = row[i], hi[i] = (int32_t)i;
        for (int64_t i = k / 2 - 1; i >= 0; i--) sift_down(hv, hi, k, i, largest);
        for (int64_t v = k; v < n; v++)
            if (better(row[v], (int32_t)v, hv[0], hi[0], largest)) {
                hv[0] = row[v], hi[0] = (int32_t)v;
                sift_down(hv, hi, k, 0, largest);
            }
        /* heap sort: repeatedly move the weakest to the end -> best first */
        for (int64_t end = k - 1; end > 0; end--) {
            float tv = hv[0];
            int32_t ti = hi[0];
            hv[0] = hv[end], hi[0] = hi[end];
            hv[end] = tv, hi[end] = ti;
            sift_down(hv, hi, end, 0, largest);
        }
    }
}

void dk_cpu_log_softmax_at(const float *x, int64_t rows, int64_t n, const int32_t *ids, int64_t k, float *out) {
    for (int64_t r = 0; r < rows; r++) {
        const double lse = logsumexp(x + r * n, n, 1.0);
        for (int64_t i = 0; i < k; i++) out[r * k + i] = (float)((double)x[r * n + ids[r * k + i]] - lse);
    }
}

void dk_cpu_pair_metrics(const uint16_t *base, const uint16_t *ft, int64_t rows, int64_t d, float *norm_diff,
                         float *cos_dist, float *cos_sim, float *norm_base, float *norm_ft) {
    const double eps = 1e-8; /* torch.nn.functional.cosine_similarity's default */
    for (int64_t r = 0; r < rows; r++) {
        double bb = 0, ff = 0, bf = 0, dd = 0;
        for (int64_t j = 0; j < d; j++) {
            const double b = dk_bf16_to_f32(base[r * d + j]), f = dk_bf16_to_f32(ft[r * d + j]);
            bb += b * b, ff += f * f, bf += b * f, dd += (f - b) * (f - b);
        }
        const double nb = sqrt(bb), nf = sqrt(ff);
        /* torch: each norm clamped to eps on its own, x/|x| · y/|y|; a zero row gives 0 */
        const double cos = bf / ((nb > eps ? nb : eps) * (nf > eps ? nf : eps));
        norm_diff[r] = (float)sqrt(dd);
        norm_base[r] = (float)nb;
        norm_ft[r] = (float)nf;
        cos_dist[r] = (float)(1.0 - cos);
        if (cos_sim) cos_sim[r] = (float)cos;
    }
}

void dk_cpu_sum_samples(double *acc, const float *x, const float *minus, int64_t n_samples, int64_t n_elems) {
    for (int64_t s = 0; s < n_samples; s++) {
        const float *xs = x + s * n_elems, *ms = minus ? minus + s * n_elems : NULL;
        for (int64_t i = 0; i < n_elems; i++) acc[i] += ms ? (double)xs[i] - (double)ms[i] : (double)xs[i];
    }
}
