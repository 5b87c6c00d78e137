/* test_diffops.c — the CPU diff ops (kernels/cpu/diffops.h), the reference of their CUDA twins, against naive
 * loops written from the definitions: KL from explicit softmaxes in long double, top-k from a full sort, log-softmax
 * from explicit sums, pair metrics from long double sums, sums over samples from long double; plus hand-computed
 * cases (KL of two-token distributions, 3-4-5 norms, orthogonal and opposite rows) and the tie rules (lower
 * index first, −0 ties with +0). Label: unit. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/diffops.h"
#include "kernels/dtype_convert.h"
#include "test.h"

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static double uniform(double lo, double hi) {
    rng_state ^= rng_state >> 12, rng_state ^= rng_state << 25, rng_state ^= rng_state >> 27;
    return lo + (hi - lo) * (double)((rng_state * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

/* ---------------------------------------------------------------------------------------------------
 * KL */

/* KL(p_ft ‖ p_base) from the two softmaxes, term by term, in long double. */
static long double naive_kl(const float *zf, const float *zb, int64_t V, float temperature) {
    long double mf = -INFINITY, mb = -INFINITY, sf = 0, sb = 0, kl = 0;
    for (int64_t v = 0; v < V; v++) {
        mf = fmaxl(mf, (long double)zf[v] / temperature);
        mb = fmaxl(mb, (long double)zb[v] / temperature);
    }
    for (int64_t v = 0; v < V; v++) {
        sf += expl((long double)zf[v] / temperature - mf);
        sb += expl((long double)zb[v] / temperature - mb);
    }
    for (int64_t v = 0; v < V; v++) {
        const long double pf = expl((long double)zf[v] / temperature - mf) / sf;
        const long double pb = expl((long double)zb[v] / temperature - mb) / sb;
        kl += pf * logl(pf / pb);
    }
    return kl;
}

static void test_kl(void) {
    /* two tokens: p_ft = (1/2, 1/2), p_base = (1/4, 3/4): KL = ln(4/3) / 2; at T = 2 with doubled base logits too */
    const float zf[2] = {0.0f, 0.0f}, zb[2] = {0.0f, (float)log(3.0)}, zb2[2] = {0.0f, 2.0f * (float)log(3.0)};
    float kl;
    dk_cpu_kl_rows(&kl, zf, zb, 1, 2, 1.0f);
    EXPECT(fabs(kl - 0.5 * log(4.0 / 3.0)) < 1e-7, "KL of (1/2,1/2) vs (1/4,3/4): %.9g, want %.9g", kl,
           0.5 * log(4.0 / 3.0));
    dk_cpu_kl_rows(&kl, zf, zb2, 1, 2, 2.0f);
    EXPECT(fabs(kl - 0.5 * log(4.0 / 3.0)) < 1e-7, "KL at T = 2: %.9g, want %.9g", kl, 0.5 * log(4.0 / 3.0));

    enum { ROWS = 6, V = 301 };
    static float f[ROWS * V], b[ROWS * V];
    for (int64_t i = 0; i < ROWS * V; i++) {
        b[i] = (float)uniform(-8, 8);
        f[i] = i / V == 0 ? b[i] : i / V == 1 ? b[i] + 5.0f : (float)(b[i] + uniform(-1, 1) * (double)(i / V));
    }
    static const float temps[] = {1.0f, 0.7f, 2.5f};
    for (int ti = 0; ti < 3; ti++) {
        float got[ROWS];
        dk_cpu_kl_rows(got, f, b, ROWS, V, temps[ti]);
        EXPECT(got[0] == 0.0f, "T %g: identical rows must give exactly 0, got %g", temps[ti], got[0]);
        EXPECT(fabs(got[1]) < 1e-12, "T %g: logits shifted by a constant give KL 0, got %g", temps[ti], got[1]);
        for (int r = 2; r < ROWS; r++) {
            const long double want = naive_kl(f + r * V, b + r * V, V, temps[ti]);
            EXPECT(fabsl(got[r] - want) <= 1.2e-7L * fabsl(want) + 1e-13L, "T %g row %d: KL %.9g, naive %.9Lg",
                   temps[ti], r, got[r], want);
        }
    }
}

/* ---------------------------------------------------------------------------------------------------
 * top-k */

static const float *sort_row;
static int sort_largest;
static int by_value_then_index(const void *pa, const void *pb) {
    const int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    const float va = sort_row[a], vb = sort_row[b];
    if (va != vb) return (sort_largest ? va > vb : va < vb) ? -1 : 1; /* −0 == +0: a tie */
    return a < b ? -1 : 1;
}

/* The CPU's top-k against a full sort of each row, ids and value bits. */
static void check_topk(const char *what, const float *x, int64_t rows, int64_t n, int64_t k, bool largest) {
    float *values = malloc((size_t)(rows * k) * sizeof *values);
    int32_t *ids = malloc((size_t)(rows * k) * sizeof *ids), *order = malloc((size_t)n * sizeof *order);
    dk_cpu_topk(x, rows, n, k, largest, values, ids);
    int64_t bad = 0;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < n; i++) order[i] = (int32_t)i;
        sort_row = x + r * n, sort_largest = largest;
        qsort(order, (size_t)n, sizeof *order, by_value_then_index);
        for (int64_t i = 0; i < k; i++)
            bad += ids[r * k + i] != order[i] || memcmp(&values[r * k + i], &x[r * n + order[i]], 4) != 0;
    }
    EXPECT(bad == 0, "%s (n %lld k %lld %s): %lld entries differ from a full sort", what, (long long)n, (long long)k,
           largest ? "largest" : "smallest", (long long)bad);
    free(values), free(ids), free(order);
}

static void test_topk(void) {
    static const float few[] = {-2.0f, -1.0f, -0.0f, 0.0f, 1.0f, 2.0f, INFINITY, -INFINITY};
    enum { ROWS = 4, N = 517 };
    static float random[ROWS * N], ties[ROWS * N], equal[N];
    for (int64_t i = 0; i < ROWS * N; i++) {
        random[i] = (float)uniform(-100, 100);
        ties[i] = few[(int)uniform(0, 8) & 7];
    }
    for (int64_t i = 0; i < N; i++) equal[i] = 0.25f;
    for (int largest = 0; largest < 2; largest++) {
        check_topk("random", random, ROWS, N, 10, largest);
        check_topk("random, k = 1", random, ROWS, N, 1, largest);
        check_topk("random, k = n", random, ROWS, N, N, largest);
        check_topk("random, n = 1", random, ROWS, 1, 1, largest);
        check_topk("ties, ±0, ±Inf", ties, ROWS, N, 200, largest);
        check_topk("ties, k = n", ties, ROWS, N, N, largest);
        check_topk("all equal", equal, 1, N, 100, largest);
    }
    /* spelled out: −0 at index 1 ties with +0 at index 3, so the lower index comes first; best first */
    const float x[5] = {-1.0f, -0.0f, 2.0f, 0.0f, 2.0f};
    float v[5];
    int32_t id[5];
    dk_cpu_topk(x, 1, 5, 4, true, v, id);
    EXPECT(id[0] == 2 && id[1] == 4 && id[2] == 1 && id[3] == 3,
           "largest of {-1,-0,2,0,2}: ids %d %d %d %d, want 2 4 1 3", id[0], id[1], id[2], id[3]);
    EXPECT(signbit(v[2]) && !signbit(v[3]), "the values are the row's own (−0 stays −0)");
    dk_cpu_topk(x, 1, 5, 3, false, v, id);
    EXPECT(id[0] == 0 && id[1] == 1 && id[2] == 3, "smallest of {-1,-0,2,0,2}: ids %d %d %d, want 0 1 3", id[0], id[1],
           id[2]);
}

/* ---------------------------------------------------------------------------------------------------
 * log-softmax at ids */

static void test_log_softmax_at(void) {
    enum { ROWS = 3, N = 1001, K = 7 };
    static float x[ROWS * N];
    int32_t ids[ROWS * K];
    for (int64_t i = 0; i < ROWS * N; i++) x[i] = (float)uniform(-20, 20);
    for (int i = 0; i < ROWS * K; i++) ids[i] = (int32_t)((i * 389) % N);
    ids[0] = 0, ids[1] = N - 1, ids[2] = 0; /* ends, and a repeat */
    float got[ROWS * K];
    dk_cpu_log_softmax_at(x, ROWS, N, ids, K, got);
    int bad = 0;
    for (int r = 0; r < ROWS; r++) {
        long double s = 0;
        for (int v = 0; v < N; v++) s += expl((long double)x[r * N + v]);
        for (int i = 0; i < K; i++) {
            const long double want = logl(expl((long double)x[r * N + ids[r * K + i]]) / s);
            bad += !(fabsl(got[r * K + i] - want) <= ldexpl(fabsl(want), -23) + 1e-12L);
        }
    }
    EXPECT(bad == 0, "log_softmax_at: %d of %d entries differ from log(exp(x_id) / Σ exp(x))", bad, ROWS * K);
    const float two[2] = {0.0f, (float)log(3.0)};
    const int32_t both[2] = {0, 1};
    float lp[2];
    dk_cpu_log_softmax_at(two, 1, 2, both, 2, lp);
    EXPECT(fabs(lp[0] - log(0.25)) < 1e-7 && fabs(lp[1] - log(0.75)) < 1e-7, "log-softmax of (0, ln 3): %g %g", lp[0],
           lp[1]);
}

/* ---------------------------------------------------------------------------------------------------
 * pair metrics */

static void test_pair_metrics(void) {
    /* rows: 3-4-5 against zero, itself, orthogonal, opposite */
    const float b[4][2] = {{3, 4}, {3, 4}, {1, 0}, {1, 1}}, f[4][2] = {{0, 0}, {3, 4}, {0, 2}, {-2, -2}};
    uint16_t hb[8], hf[8];
    for (int i = 0; i < 8; i++) hb[i] = dk_f32_to_bf16(b[i / 2][i % 2]), hf[i] = dk_f32_to_bf16(f[i / 2][i % 2]);
    float nd[4], cd[4], nb[4], nf[4];
    dk_cpu_pair_metrics(hb, hf, 4, 2, nd, cd, NULL, nb, nf);
    EXPECT(nd[0] == 5.0f && nb[0] == 5.0f && nf[0] == 0.0f && cd[0] == 1.0f, "vs zero: %g %g %g %g", nd[0], cd[0],
           nb[0], nf[0]);
    EXPECT(nd[1] == 0.0f && fabsf(cd[1]) < 1e-7f && nb[1] == 5.0f && nf[1] == 5.0f, "itself: %g %g", nd[1], cd[1]);
    EXPECT(fabsf(nd[2] - sqrtf(5.0f)) < 1e-6f && cd[2] == 1.0f && nf[2] == 2.0f, "orthogonal: %g %g", nd[2], cd[2]);
    EXPECT(fabsf(cd[3] - 2.0f) < 1e-7f && fabsf(nd[3] - sqrtf(18.0f)) < 1e-6f, "opposite: %g %g", cd[3], nd[3]);

    enum { ROWS = 5, D = 2049 };
    static uint16_t rb[ROWS * D], rf[ROWS * D];
    for (int i = 0; i < ROWS * D; i++) {
        rb[i] = dk_f32_to_bf16((float)uniform(-4, 4));
        rf[i] = dk_f32_to_bf16(dk_bf16_to_f32(rb[i]) + (float)uniform(-1, 1) * (float)(i / D) * 0.1f);
    }
    float out[4][ROWS];
    dk_cpu_pair_metrics(rb, rf, ROWS, D, out[0], out[1], NULL, out[2], out[3]);
    int bad = 0;
    for (int r = 0; r < ROWS; r++) {
        long double bb = 0, ff = 0, bf = 0, dd = 0;
        for (int j = 0; j < D; j++) {
            const long double x = dk_bf16_to_f32(rb[r * D + j]), y = dk_bf16_to_f32(rf[r * D + j]);
            bb += x * x, ff += y * y, bf += x * y, dd += (y - x) * (y - x);
        }
        const long double want[4] = {sqrtl(dd), 1.0L - bf / sqrtl(bb * ff), sqrtl(bb), sqrtl(ff)};
        for (int m = 0; m < 4; m++) bad += !(fabsl(out[m][r] - want[m]) <= ldexpl(fabsl(want[m]), -23) + 1e-12L);
    }
    EXPECT(bad == 0, "pair_metrics: %d of %d outputs differ from long double sums", bad, 4 * ROWS);
}

/* ---------------------------------------------------------------------------------------------------
 * sums over samples */

static void test_sum_samples(void) {
    enum { S = 9, N = 101 };
    static float x[S * N], m[S * N];
    double start[N], sum[N], diff[N];
    for (int i = 0; i < S * N; i++) x[i] = (float)uniform(-10, 10), m[i] = (float)uniform(-10, 10);
    for (int i = 0; i < N; i++) start[i] = sum[i] = diff[i] = uniform(-1, 1);
    dk_cpu_sum_samples(sum, x, NULL, S, N);
    dk_cpu_sum_samples(diff, x, m, S, N);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        long double s = start[i], d = start[i];
        for (int k = 0; k < S; k++) s += x[k * N + i], d += (long double)x[k * N + i] - m[k * N + i];
        bad += !(fabsl(sum[i] - s) <= 1e-13L) + !(fabsl(diff[i] - d) <= 1e-13L);
    }
    EXPECT(bad == 0, "sum_samples: %d sums differ from long double sums", bad);
    /* the order is sample after sample, each added to the running sum: (1e16 + 1) + 1 = 1e16 in double */
    const float ones[2] = {1.0f, 1.0f};
    double big = 1e16;
    dk_cpu_sum_samples(&big, ones, NULL, 2, 1);
    EXPECT(big == 1e16, "sum_samples adds sample after sample: (1e16 + 1) + 1 must round to 1e16, got %.17g", big);
}

int main(void) {
    test_kl();
    test_topk();
    test_log_softmax_at();
    test_pair_metrics();
    test_sum_samples();
    return dk_test_finish("test_diffops");
}
