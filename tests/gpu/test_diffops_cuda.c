/* test_diffops_cuda.c — the diffing methods' CUDA ops (kernels/cuda/diffops.cuh) against their CPU twins
 * (kernels/cpu/diffops.h) on odd shapes, ties, vocabulary-sized rows, with poisoned outputs and guard bands
 * (gpu_test.h) and bitwise repeatability (every launch is made twice). Label: gpu.
 *
 * Tolerances (derivations in kernels/cuda/diffops.cuh and tools/kl_fp32_error_sim.py):
 *   kl_rows          per row |gpu − cpu| ≤ 8 units + 4e-6·cpu, unit = 2^-24·(A + ln V + 1), A = max |z|/T
 *   log_softmax_at   per entry |gpu − cpu| ≤ 6 units (A = max |z| of the row)
 *   topk             exact: ids and value bits
 *   pair_metrics     per output |gpu − cpu| ≤ 2^-22·|cpu| + 1e-10 (double sums in another order)
 *   sum_samples      exact: the same double additions in the same order */
#include "gpu_test.h"

#include <stdbool.h>

#include "kernels/cpu/diffops.h"
#include "kernels/cuda/diffops.cuh"

/* ---------------------------------------------------------------------------------------------------
 * inputs */

/* Standard normal (Box–Muller on gpu_uniform). */
static float gpu_normal(void) {
    const float u1 = gpu_uniform(1e-7f, 1.0f), u2 = gpu_uniform(0.0f, 1.0f);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}

/* uniform in [0, n) (gpu_uniform's float product can round up to n) */
static int64_t gpu_index(int64_t n) {
    const int64_t i = (int64_t)gpu_uniform(0, (float)n);
    return i < n ? i : n - 1;
}

/* rows × n logits shaped like a language model's: a N(0, 2.5²) bulk and a few outliers up to +22. */
static float *lm_logits(int64_t rows, int64_t n) {
    float *z = malloc((size_t)(rows * n) * sizeof *z);
    for (int64_t i = 0; i < rows * n; i++) z[i] = 2.5f * gpu_normal();
    for (int64_t r = 0; r < rows; r++)
        for (int j = 0; j < 20 && j < n; j++) z[r * n + gpu_index(n)] += gpu_uniform(8, 22);
    return z;
}

/* max |z| of a row */
static double row_absmax(const float *z, int64_t n) {
    double a = 0;
    for (int64_t v = 0; v < n; v++) a = fabs(z[v]) > a ? fabs(z[v]) : a;
    return a;
}

/* ---------------------------------------------------------------------------------------------------
 * KL */

typedef enum { KL_NEAR, KL_SHIFT, KL_UNRELATED, KL_SAME } kl_kind;

/* misalign: both rows start one float past a 16-byte boundary (the scalar path even when V % 4 == 0) */
static void test_kl(int64_t rows, int64_t V, float temperature, kl_kind kind, bool misalign) {
    static const char *const kinds[] = {"near", "shift 7", "unrelated", "identical"};
    char what[112];
    snprintf(what, sizeof what, "kl_rows rows %lld V %lld T %g %s%s", (long long)rows, (long long)V, temperature,
             kinds[kind], misalign ? " misaligned" : "");
    const size_t n = (size_t)(rows * V), off = misalign ? 1 : 0;
    float *base = lm_logits(rows, V), *ft = malloc(n * sizeof *ft);
    for (size_t i = 0; i < n; i++)
        ft[i] = kind == KL_NEAR ? base[i] + 0.3f * gpu_normal() : kind == KL_SHIFT ? base[i] + 7.0f
                : kind == KL_SAME ? base[i] : 2.5f * gpu_normal();
    float *up_b = malloc((n + off) * sizeof(float)), *up_f = malloc((n + off) * sizeof(float));
    up_b[0] = up_f[0] = 0.0f;
    memcpy(up_b + off, base, n * sizeof(float));
    memcpy(up_f + off, ft, n * sizeof(float));
    dbuf d_b = dbuf_new(n + off, DK_CUDA_F32), d_f = dbuf_new(n + off, DK_CUDA_F32);
    dbuf d_kl = dbuf_new((size_t)rows, DK_CUDA_F32);
    dbuf_upload(&d_b, up_b), dbuf_upload(&d_f, up_f);
    const float *lb = (const float *)d_b.d + off, *lf = (const float *)d_f.d + off;
    CUDA_CHECK(dk_cuda_kl_rows(d_kl.d, lf, lb, rows, V, temperature, 0));
    float *got = dbuf_download(&d_kl), *want = malloc((size_t)rows * sizeof *want);
    dk_cpu_kl_rows(want, ft, base, rows, V, temperature);
    double worst = 0;
    size_t bad = 0, non_finite = 0;
    for (int64_t r = 0; r < rows; r++) {
        const double tol = gpu_kl_tolerance(ft + r * V, base + r * V, V, temperature, want[r]);
        const double err = fabs((double)got[r] - want[r]);
        non_finite += !isfinite(got[r]);
        bad += !(err <= tol);
        worst = err / tol > worst ? err / tol : worst;
        if (kind == KL_SAME) bad += got[r] != 0.0f; /* identical rows: exactly 0 */
    }
    printf("  %-56s worst error %.3g of the tolerance (kl[0] %.4g)\n", what, worst, want[0]);
    EXPECT(non_finite == 0, "%s: %zu non-finite outputs", what, non_finite);
    EXPECT(bad == 0, "%s: %zu rows outside the tolerance (worst %.3g of it)", what, bad, worst);
    gpu_expect_guards(what, &d_kl);
    CUDA_CHECK(dk_cuda_kl_rows(d_kl.d, lf, lb, rows, V, temperature, 0));
    float *again = dbuf_download(&d_kl);
    gpu_expect_same_bits(what, got, again, (size_t)rows * sizeof(float));
    dbuf_free(&d_b), dbuf_free(&d_f), dbuf_free(&d_kl);
    free(base), free(ft), free(up_b), free(up_f), free(got), free(want), free(again);
}

/* ---------------------------------------------------------------------------------------------------
 * log-softmax at chosen ids */

static void test_log_softmax_at(int64_t rows, int64_t n, int64_t k) {
    char what[96];
    snprintf(what, sizeof what, "log_softmax_at rows %lld n %lld k %lld", (long long)rows, (long long)n, (long long)k);
    float *x = lm_logits(rows, n);
    int32_t *ids = malloc((size_t)(rows * k) * sizeof *ids);
    for (int64_t i = 0; i < rows * k; i++) ids[i] = (int32_t)gpu_index(n); /* repeats allowed */
    ids[0] = 0, ids[rows * k - 1] = (int32_t)(n - 1);
    dbuf d_x = dbuf_new((size_t)(rows * n), DK_CUDA_F32), d_ids = dbuf_new_raw((size_t)(rows * k), 4);
    dbuf d_out = dbuf_new((size_t)(rows * k), DK_CUDA_F32);
    dbuf_upload(&d_x, x), dbuf_put(&d_ids, ids);
    CUDA_CHECK(dk_cuda_log_softmax_at(d_x.d, rows, n, d_ids.d, k, d_out.d, 0));
    float *got = dbuf_download(&d_out), *want = malloc((size_t)(rows * k) * sizeof *want);
    dk_cpu_log_softmax_at(x, rows, n, ids, k, want);
    double worst = 0;
    size_t bad = 0;
    for (int64_t r = 0; r < rows; r++) {
        const double tol = 6 * ldexp(row_absmax(x + r * n, n) + log((double)n) + 1.0, -24);
        for (int64_t i = 0; i < k; i++) {
            const double err = fabs((double)got[r * k + i] - want[r * k + i]);
            bad += !(err <= tol); /* NaN counts as bad */
            worst = err / tol > worst ? err / tol : worst;
        }
    }
    printf("  %-56s worst error %.3g of the tolerance\n", what, worst);
    EXPECT(bad == 0, "%s: %zu entries outside the tolerance or non-finite (worst %.3g of it)", what, bad, worst);
    gpu_expect_guards(what, &d_out);
    CUDA_CHECK(dk_cuda_log_softmax_at(d_x.d, rows, n, d_ids.d, k, d_out.d, 0));
    float *again = dbuf_download(&d_out);
    gpu_expect_same_bits(what, got, again, (size_t)(rows * k) * sizeof(float));

    /* an id outside the row gives NaN, not a read outside it */
    ids[0] = (int32_t)n;
    dbuf_put(&d_ids, ids);
    CUDA_CHECK(dk_cuda_log_softmax_at(d_x.d, rows, n, d_ids.d, k, d_out.d, 0));
    float *bad_id = dbuf_download(&d_out);
    EXPECT(isnan(bad_id[0]), "%s: id n must give NaN, got %g", what, bad_id[0]);
    dbuf_free(&d_x), dbuf_free(&d_ids), dbuf_free(&d_out);
    free(x), free(ids), free(got), free(want), free(again), free(bad_id);
}

/* ---------------------------------------------------------------------------------------------------
 * top-k */

typedef enum { TOPK_RANDOM, TOPK_FEW_VALUES, TOPK_BF16_LOGITS, TOPK_ALL_EQUAL, TOPK_MOSTLY_ZERO } topk_data;

static float *topk_input(topk_data kind, int64_t rows, int64_t n) {
    static const float few[] = {-2.0f, -1.0f, -0.0f, 0.0f, 1.0f, 2.0f, INFINITY, -INFINITY};
    float *x = malloc((size_t)(rows * n) * sizeof *x);
    for (int64_t i = 0; i < rows * n; i++) {
        switch (kind) {
        case TOPK_RANDOM: x[i] = gpu_uniform(-100, 100); break;
        case TOPK_FEW_VALUES: x[i] = few[gpu_index(8)]; break; /* ±0 tie, ±Inf */
        case TOPK_BF16_LOGITS: x[i] = gpu_round_bf16(2.5f * gpu_normal()); break; /* many ties */
        case TOPK_ALL_EQUAL: x[i] = 0.5f; break;
        case TOPK_MOSTLY_ZERO: x[i] = gpu_uniform(0, 1) < 0.002f ? 1.0f : (i % 3 ? 0.0f : -0.0f); break;
        }
    }
    return x;
}

static void test_topk(topk_data kind, int64_t rows, int64_t n, int64_t k, bool largest) {
    static const char *const kinds[] = {"random", "few values ±0 ±Inf", "bf16 logits", "all equal", "mostly ±0"};
    char what[112];
    snprintf(what, sizeof what, "topk %s rows %lld n %lld k %lld %s", kinds[kind], (long long)rows, (long long)n,
             (long long)k, largest ? "largest" : "smallest");
    float *x = topk_input(kind, rows, n);
    dbuf d_x = dbuf_new((size_t)(rows * n), DK_CUDA_F32), d_v = dbuf_new((size_t)(rows * k), DK_CUDA_F32);
    dbuf d_i = dbuf_new_raw((size_t)(rows * k), 4);
    dbuf_upload(&d_x, x);
    CUDA_CHECK(dk_cuda_topk(d_x.d, rows, n, k, largest, d_v.d, d_i.d, 0));
    float *got_v = dbuf_get(&d_v), *want_v = malloc((size_t)(rows * k) * sizeof *want_v);
    int32_t *got_i = dbuf_get(&d_i), *want_i = malloc((size_t)(rows * k) * sizeof *want_i);
    dk_cpu_topk(x, rows, n, k, largest, want_v, want_i);
    int64_t first_bad = -1;
    for (int64_t i = 0; i < rows * k && first_bad < 0; i++)
        if (got_i[i] != want_i[i] || memcmp(&got_v[i], &want_v[i], 4) != 0) first_bad = i;
    printf("  %-56s %s\n", what, first_bad < 0 ? "exact" : "DIFFERENT");
    if (first_bad >= 0)
        EXPECT(0, "%s: row %lld rank %lld: gpu id %d value %g, cpu id %d value %g", what, (long long)(first_bad / k),
               (long long)(first_bad % k), got_i[first_bad], got_v[first_bad], want_i[first_bad], want_v[first_bad]);
    gpu_expect_guards(what, &d_v);
    gpu_expect_guards(what, &d_i);
    CUDA_CHECK(dk_cuda_topk(d_x.d, rows, n, k, largest, d_v.d, d_i.d, 0));
    float *again_v = dbuf_get(&d_v);
    int32_t *again_i = dbuf_get(&d_i);
    gpu_expect_same_bits(what, got_v, again_v, (size_t)(rows * k) * 4);
    gpu_expect_same_bits(what, got_i, again_i, (size_t)(rows * k) * 4);
    dbuf_free(&d_x), dbuf_free(&d_v), dbuf_free(&d_i);
    free(x), free(got_v), free(want_v), free(got_i), free(want_i), free(again_v), free(again_i);
}

/* ---------------------------------------------------------------------------------------------------
 * pair metrics */

static void test_pair_metrics(int64_t rows, int64_t d) {
    char what[96];
    snprintf(what, sizeof what, "pair_metrics rows %lld d %lld", (long long)rows, (long long)d);
    const size_t n = (size_t)(rows * d);
    float *b = malloc(n * sizeof *b), *f = malloc(n * sizeof *f);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < d; j++) {
            const size_t i = (size_t)(r * d + j);
            b[i] = 3.0f * gpu_normal();
            /* row kinds: 0 all zero base, 1 identical, 2 opposite, 3 nearly equal (1 − cos ~ 1e-5), else unrelated */
            const int kind = (int)(r % 5);
            if (kind == 0) b[i] = 0.0f;
            f[i] = kind == 1 ? b[i] : kind == 2 ? -b[i] : kind == 3 ? b[i] + 0.01f * gpu_normal() : 3.0f * gpu_normal();
        }
    dbuf d_b = dbuf_new(n, DK_CUDA_BF16), d_f = dbuf_new(n, DK_CUDA_BF16);
    dbuf_upload(&d_b, b), dbuf_upload(&d_f, f); /* rounds b and f to bf16 in place: the CPU sees the same values */
    dbuf out[4];
    for (int i = 0; i < 4; i++) out[i] = dbuf_new((size_t)rows, DK_CUDA_F32);
    CUDA_CHECK(dk_cuda_pair_metrics(d_b.d, d_f.d, rows, d, out[0].d, out[1].d, NULL, out[2].d, out[3].d, 0));
    uint16_t *hb = malloc(n * 2), *hf = malloc(n * 2);
    for (size_t i = 0; i < n; i++) hb[i] = dk_f32_to_bf16(b[i]), hf[i] = dk_f32_to_bf16(f[i]);
    float *want = malloc((size_t)(4 * rows) * sizeof *want);
    dk_cpu_pair_metrics(hb, hf, rows, d, want, want + rows, NULL, want + 2 * rows, want + 3 * rows);
    static const char *const names[] = {"norm_diff", "cos_dist", "norm_base", "norm_ft"};
    float *got[4], *again[4];
    for (int i = 0; i < 4; i++) {
        got[i] = dbuf_download(&out[i]);
        size_t bad = 0;
        double worst = 0;
        for (int64_t r = 0; r < rows; r++) {
            const double w = want[i * rows + r], tol = ldexp(fabs(w), -22) + 1e-10, err = fabs(got[i][r] - w);
            bad += !(err <= tol);
            worst = err / tol > worst ? err / tol : worst;
        }
        char w2[128];
        snprintf(w2, sizeof w2, "%s: %s", what, names[i]);
        printf("  %-56s worst error %.3g of the tolerance\n", w2, worst);
        EXPECT(bad == 0, "%s: %zu rows outside the tolerance or non-finite (worst %.3g of it)", w2, bad, worst);
        gpu_expect_guards(w2, &out[i]);
    }
    CUDA_CHECK(dk_cuda_pair_metrics(d_b.d, d_f.d, rows, d, out[0].d, out[1].d, NULL, out[2].d, out[3].d, 0));
    for (int i = 0; i < 4; i++) {
        again[i] = dbuf_download(&out[i]);
        gpu_expect_same_bits(what, got[i], again[i], (size_t)rows * 4);
        free(got[i]), free(again[i]);
        dbuf_free(&out[i]);
    }
    dbuf_free(&d_b), dbuf_free(&d_f);
    free(b), free(f), free(hb), free(hf), free(want);
}

/* ---------------------------------------------------------------------------------------------------
 * sums over samples */

static void test_sum_samples(int64_t n_samples, int64_t n_elems, bool with_minus) {
    char what[96];
    snprintf(what, sizeof what, "sum_samples %lld x %lld%s", (long long)n_samples, (long long)n_elems,
             with_minus ? " (x − minus)" : "");
    const size_t n = (size_t)(n_samples * n_elems);
    float *x = gpu_random(n, -50, 50), *m = gpu_random(n, -50, 50);
    double *acc = malloc((size_t)n_elems * sizeof *acc);
    for (int64_t i = 0; i < n_elems; i++) acc[i] = (double)gpu_uniform(-1, 1) * 1e3 + (double)gpu_uniform(0, 1) * 1e-9;
    dbuf d_x = dbuf_new(n, DK_CUDA_F32), d_m = dbuf_new(n, DK_CUDA_F32), d_acc = dbuf_new_raw((size_t)n_elems, 8);
    dbuf_upload(&d_x, x), dbuf_upload(&d_m, m), dbuf_put(&d_acc, acc);
    CUDA_CHECK(dk_cuda_sum_samples(d_acc.d, d_x.d, with_minus ? d_m.d : NULL, n_samples, n_elems, 0));
    double *got = dbuf_get(&d_acc);
    dk_cpu_sum_samples(acc, x, with_minus ? m : NULL, n_samples, n_elems);
    EXPECT(memcmp(got, acc, (size_t)n_elems * 8) == 0, "%s: not bit-identical to the CPU's sums", what);
    printf("  %-56s %s\n", what, memcmp(got, acc, (size_t)n_elems * 8) == 0 ? "exact" : "DIFFERENT");
    gpu_expect_guards(what, &d_acc);
    dbuf_free(&d_x), dbuf_free(&d_m), dbuf_free(&d_acc);
    free(x), free(m), free(acc), free(got);
}

int main(void) {
    if (!gpu_available()) return GPU_SKIP;
    /* DK_TEST_ONLY=small: only the small shapes (compute-sanitizer memcheck and racecheck in tools/gpu_check.sh) */
    const char *only = getenv("DK_TEST_ONLY");
    const bool big = !(only && strcmp(only, "small") == 0);
    test_kl(1, 1, 1.0f, KL_UNRELATED, false);
    test_kl(7, 37, 1.0f, KL_NEAR, false);
    test_kl(5, 1001, 0.7f, KL_UNRELATED, false); /* V % 4 != 0: scalar path */
    test_kl(3, 4096, 1.0f, KL_SAME, false);      /* exactly 0, float4 path */
    test_kl(2, 4096, 1.0f, KL_SAME, true);       /* exactly 0, scalar path (rows not 16-byte aligned) */
    test_kl(2, 4099, 1.5f, KL_NEAR, false);
    if (big) {
        test_kl(3, 32004, 2.0f, KL_NEAR, false);   /* float4 path */
        test_kl(3, 32004, 1.0f, KL_NEAR, true);    /* same shape, scalar path */
        test_kl(4, 128256, 1.0f, KL_SHIFT, false); /* KL ≈ 0 from two large log-sum-exps */
        test_kl(2, 262144, 1.0f, KL_NEAR, false);
        test_kl(3, 151936, 1.0f, KL_SAME, false);
    }

    test_log_softmax_at(1, 1, 1);
    test_log_softmax_at(6, 37, 5);
    test_log_softmax_at(3, 1001, 17);
    if (big) test_log_softmax_at(2, 262144, 64);

    for (int largest = 0; largest < 2; largest++) {
        test_topk(TOPK_RANDOM, 5, 1000, 10, largest);
        test_topk(TOPK_RANDOM, 1, 1, 1, largest);
        test_topk(TOPK_RANDOM, 3, 37, 37, largest);   /* k = n, n below one block */
        test_topk(TOPK_RANDOM, 2, 5000, 1, largest);  /* k = 1 */
        test_topk(TOPK_RANDOM, 2, 5000, 1000, largest);
        test_topk(TOPK_FEW_VALUES, 7, 333, 50, largest);
        test_topk(TOPK_FEW_VALUES, 2, 1024, 1024, largest); /* k = n = the largest k */
        test_topk(TOPK_ALL_EQUAL, 2, 3000, 700, largest);
        test_topk(TOPK_MOSTLY_ZERO, 1, 4096, 64, largest);
        if (!big) continue;
        test_topk(TOPK_MOSTLY_ZERO, 2, 262144, 1024, largest); /* ties at the threshold across many chunks */
        test_topk(TOPK_BF16_LOGITS, 3, 262144, 1024, largest);
        test_topk(TOPK_BF16_LOGITS, 4, 151936, 100, largest);
    }

    test_pair_metrics(1, 1);
    test_pair_metrics(6, 33);
    test_pair_metrics(10, 2048);
    if (big) test_pair_metrics(5, 4099);

    test_sum_samples(1, 1, false);
    test_sum_samples(7, 33 * 45, true);
    test_sum_samples(64, 1003, false);
    if (big) test_sum_samples(5, 300007, true);

    /* shapes the ops do not take are refused, not run */
    EXPECT(dk_cuda_topk(NULL, 1, 4096, 1025, true, NULL, NULL, 0) == cudaErrorInvalidValue, "topk k 1025 refused");
    EXPECT(dk_cuda_topk(NULL, 1, 10, 11, true, NULL, NULL, 0) == cudaErrorInvalidValue, "topk k > n refused");
    EXPECT(dk_cuda_kl_rows(NULL, NULL, NULL, 1, 10, 0.0f, 0) == cudaErrorInvalidValue, "kl temperature 0 refused");
    CUDA_CHECK(cudaDeviceSynchronize());
    return dk_test_finish("test_diffops_cuda");
}
