/* ipca.c — see ipca.h. The running statistics follow scikit-learn's _incremental_mean_and_var (fp64); the SVD is
 * LAPACK's dgesvd without U (only S and V are needed), which for tall stacks does a QR first. */
#include "kernels/cpu/ipca.h"

#include <lapacke.h>
#include <stdbool.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) abort();
    return p;
}

void dk_ipca_init(dk_ipca *p, int64_t d) {
    memset(p, 0, sizeof *p);
    p->d = d;
    p->mean = calloc((size_t)d, sizeof(double));
    p->var = calloc((size_t)d, sizeof(double));
    p->S = calloc((size_t)d, sizeof(double));
    p->V = calloc((size_t)(d * d), sizeof(double));
    if (!p->mean || !p->var || !p->S || !p->V) abort();
}

void dk_ipca_free(dk_ipca *p) {
    free(p->mean), free(p->var), free(p->S), free(p->V);
    memset(p, 0, sizeof *p);
}

/* Chan's update of (n, mean, var) with a part holding n_b rows of sum sum_b and unnormalized variance u_b. */
static void update_moments(dk_ipca *p, int64_t n_b, const double *sum_b, const double *u_b) {
    const int64_t n_a = p->n_seen, n = n_a + n_b;
    for (int64_t j = 0; j < p->d; j++) {
        const double sum_a = p->mean[j] * (double)n_a;
        double u;
        if (n_a == 0) {
            u = u_b[j];
        } else {
            const double ratio = (double)n_a / (double)n_b, diff = sum_a / ratio - sum_b[j];
            u = p->var[j] * (double)n_a + u_b[j] + ratio / (double)n * diff * diff;
        }
        p->mean[j] = (sum_a + sum_b[j]) / (double)n;
        p->var[j] = u / (double)n;
    }
    p->n_seen = n;
}

/* SVD of a (m, d) row-major, keeping min(m, d) singular values and vectors in p; signs as svd_flip. */
static int svd_into(dk_ipca *p, double *a, int64_t m) {
    const int64_t d = p->d, k = m < d ? m : d;
    double *s = xmalloc((size_t)k * sizeof(double)), *vt = xmalloc((size_t)(k * d) * sizeof(double));
    double *superb = xmalloc((size_t)k * sizeof(double));
    double dummy_u = 0;
    lapack_int info = LAPACKE_dgesvd(LAPACK_ROW_MAJOR, 'N', 'S', (lapack_int)m, (lapack_int)d, a, (lapack_int)d, s,
                                     &dummy_u, 1, vt, (lapack_int)d, superb);
    if (info == 0) {
        for (int64_t i = 0; i < k; i++) {
            double *row = vt + i * d;
            int64_t best = 0;
            for (int64_t j = 1; j < d; j++)
                if (fabs(row[j]) > fabs(row[best])) best = j;
            if (row[best] < 0)
                for (int64_t j = 0; j < d; j++) row[j] = -row[j];
        }
        memcpy(p->S, s, (size_t)k * sizeof(double));
        memcpy(p->V, vt, (size_t)(k * d) * sizeof(double));
        for (int64_t i = k; i < d; i++) p->S[i] = 0;
        p->k = k;
    }
    free(s), free(vt), free(superb);
    return info == 0 ? 0 : -1;
}

int dk_ipca_partial_fit(dk_ipca *p, const float *x, int64_t n) {
    if (n <= 0) return 0;
    const int64_t d = p->d;
    const bool first = p->n_seen == 0;
    double *sum = calloc((size_t)d, sizeof(double)), *u = calloc((size_t)d, sizeof(double));
    double *bmean = xmalloc((size_t)d * sizeof(double)), *old_mean = xmalloc((size_t)d * sizeof(double));
    if (!sum || !u) abort();
    for (int64_t r = 0; r < n; r++)
        for (int64_t j = 0; j < d; j++) sum[j] += x[r * d + j];
    for (int64_t j = 0; j < d; j++) bmean[j] = sum[j] / (double)n;
    double *corr = calloc((size_t)d, sizeof(double)); /* Σ (x − T), the rounding correction */
    if (!corr) abort();
    for (int64_t r = 0; r < n; r++)
        for (int64_t j = 0; j < d; j++) {
            const double t = x[r * d + j] - bmean[j];
            corr[j] += t;
            u[j] += t * t;
        }
    for (int64_t j = 0; j < d; j++) u[j] -= corr[j] * corr[j] / (double)n;
    memcpy(old_mean, p->mean, (size_t)d * sizeof(double));
    const int64_t n_old = p->n_seen;
    update_moments(p, n, sum, u);

    const int64_t m = first ? n : p->k + n + 1;
    double *a = xmalloc((size_t)(m * d) * sizeof(double)); /* (m, d) the stack */
    int64_t r0 = 0;
    if (!first) {
        for (int64_t i = 0; i < p->k; i++)
            for (int64_t j = 0; j < d; j++) a[i * d + j] = p->S[i] * p->V[i * d + j];
        r0 = p->k;
    }
    const double *center = first ? p->mean : bmean;
    for (int64_t r = 0; r < n; r++)
        for (int64_t j = 0; j < d; j++) a[(r0 + r) * d + j] = (double)x[r * d + j] - center[j];
    if (!first) {
        const double f = sqrt((double)n_old / (double)p->n_seen * (double)n);
        for (int64_t j = 0; j < d; j++) a[(r0 + n) * d + j] = f * (old_mean[j] - bmean[j]);
    }
    int rc = svd_into(p, a, m);
    p->last_batch = n;
    free(a), free(sum), free(u), free(bmean), free(old_mean), free(corr);
    return rc;
}

int dk_ipca_merge(dk_ipca *a, const dk_ipca *b) {
    const int64_t d = a->d;
    if (b->n_seen == 0) return 0;
    if (a->n_seen == 0) {
        a->n_seen = b->n_seen, a->k = b->k, a->last_batch = b->last_batch;
        memcpy(a->mean, b->mean, (size_t)d * sizeof(double));
        memcpy(a->var, b->var, (size_t)d * sizeof(double));
        memcpy(a->S, b->S, (size_t)d * sizeof(double));
        memcpy(a->V, b->V, (size_t)(d * d) * sizeof(double));
        return 0;
    }
    double *sum = xmalloc((size_t)d * sizeof(double)), *u = xmalloc((size_t)d * sizeof(double));
    double *old_mean = xmalloc((size_t)d * sizeof(double));
    for (int64_t j = 0; j < d; j++) sum[j] = b->mean[j] * (double)b->n_seen, u[j] = b->var[j] * (double)b->n_seen;
    memcpy(old_mean, a->mean, (size_t)d * sizeof(double));
    const int64_t n_a = a->n_seen;
    update_moments(a, b->n_seen, sum, u);
    const int64_t m = a->k + b->k + 1;
    double *st = xmalloc((size_t)(m * d) * sizeof(double)); /* (m, d) */
    for (int64_t i = 0; i < a->k; i++)
        for (int64_t j = 0; j < d; j++) st[i * d + j] = a->S[i] * a->V[i * d + j];
    for (int64_t i = 0; i < b->k; i++)
        for (int64_t j = 0; j < d; j++) st[(a->k + i) * d + j] = b->S[i] * b->V[i * d + j];
    const double f = sqrt((double)n_a * (double)b->n_seen / (double)a->n_seen);
    for (int64_t j = 0; j < d; j++) st[(m - 1) * d + j] = f * (old_mean[j] - b->mean[j]);
    int rc = svd_into(a, st, m);
    a->last_batch = b->last_batch;
    free(st), free(sum), free(u), free(old_mean);
    return rc;
}

void dk_ipca_result(const dk_ipca *p, int64_t nc, double *components, double *singular_values,
                    double *explained_variance, double *explained_variance_ratio, double *noise_variance) {
    const int64_t d = p->d, n = p->n_seen;
    double total = 0;
    for (int64_t j = 0; j < d; j++) total += p->var[j] * (double)n;
    for (int64_t i = 0; i < nc; i++) {
        const double s = i < p->k ? p->S[i] : 0.0;
        singular_values[i] = s;
        explained_variance[i] = s * s / (double)(n - 1);
        explained_variance_ratio[i] = s * s / total;
        for (int64_t j = 0; j < d; j++) components[i * d + j] = i < p->k ? p->V[i * d + j] : 0.0;
    }
    double noise = 0;
    if (nc != d && nc != p->last_batch && p->k > nc) {
        for (int64_t i = nc; i < p->k; i++) noise += p->S[i] * p->S[i] / (double)(n - 1);
        noise /= (double)(p->k - nc);
    }
    *noise_variance = noise;
}
