/* test_aa_units.c — the pieces of the activation analysis method against their references
 * (tests/fixtures/methods/activation_analysis/units.json, made by tools/make_activation_analysis_goldens.py):
 *   dk_cpu_pair_metrics   torch.nn.functional.cosine_similarity and vector norms on bf16 rows, including rows of
 *                         norm under torch's eps 1e-8, a zero row, opposite and identical rows;
 *   dk_histogram_compute  numpy.histogram(values, 100, range=(nanmin, nanmax)) on float32 values, some exactly on
 *                         the edges and one float32 ulp below them, one repeated value, none, a NaN;
 *   dk_iqr_fences         the seed's torch_quantile("nearest") Tukey fences;
 *   dk_bf16_sum           exact sums (Python fractions) of bf16 differences across 70 binades and subnormals, and
 *                         bit-identical state whatever the order of the rows. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "io/file.h"
#include "kernels/cpu/diffops.h"
#include "methods/bf16_sum.h"
#include "methods/histogram.h"
#include "test.h"

static cJSON *load(void) {
    char *path = dk_fixture_path("methods/activation_analysis/units.json");
    dk_err err = {0};
    char *text = dk_read_file(path, NULL, &err);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    if (!j) fprintf(stderr, "cannot read %s as JSON (regenerate with tools/make_activation_analysis_goldens.py)\n", path);
    free(text), free(path);
    return j;
}

static double at(const cJSON *a, int i) { return cJSON_GetArrayItem(a, i)->valuedouble; }

static uint16_t *bits(const cJSON *a) {
    int n = cJSON_GetArraySize(a);
    uint16_t *b = malloc((size_t)(n ? n : 1) * sizeof *b);
    for (int i = 0; i < n; i++) b[i] = (uint16_t)at(a, i);
    return b;
}

static void pair_metrics(const cJSON *p) {
    const int d = (int)cJSON_GetObjectItem(p, "d")->valuedouble;
    uint16_t *b = bits(cJSON_GetObjectItem(p, "base")), *f = bits(cJSON_GetObjectItem(p, "ft"));
    const int rows = cJSON_GetArraySize(cJSON_GetObjectItem(p, "base")) / d;
    float nd[16], cd[16], cs[16], nb[16], nf[16];
    dk_cpu_pair_metrics(b, f, rows, d, nd, cd, cs, nb, nf);
    const char *names[5] = {"norm_diff", "cos_dist", "cos_sim", "norm_base", "norm_ft"};
    const float *got[5] = {nd, cd, cs, nb, nf};
    for (int m = 0; m < 5; m++) {
        const cJSON *want = cJSON_GetObjectItem(p, names[m]);
        for (int r = 0; r < rows; r++)
            EXPECT(fabs(got[m][r] - at(want, r)) <= 1e-6 * fabs(at(want, r)) + 1e-7, "row %d %s: %.9g, torch %.9g", r,
                   names[m], got[m][r], at(want, r));
    }
    free(b), free(f);
}

static void histograms(const cJSON *hs) {
    int idx = 0;
    for (const cJSON *h = hs->child; h; h = h->next, idx++) {
        const cJSON *vs = cJSON_GetObjectItem(h, "values");
        const int n = cJSON_GetArraySize(vs);
        float *v = malloc((size_t)(n ? n : 1) * sizeof *v), *sorted = malloc((size_t)(n ? n : 1) * sizeof *v);
        int m = 0;
        for (int i = 0; i < n; i++) {
            const cJSON *x = cJSON_GetArrayItem(vs, i);
            v[i] = cJSON_IsString(x) ? NAN : (float)x->valuedouble;
            if (!isnan(v[i])) sorted[m++] = v[i];
        }
        dk_histogram hist;
        dk_histogram_compute(&hist, v, n, 100);
        const cJSON *wc = cJSON_GetObjectItem(h, "counts"), *we = cJSON_GetObjectItem(h, "edges");
        int bad_c = 0, bad_e = 0;
        for (int i = 0; i < 100; i++) bad_c += hist.counts[i] != (int64_t)at(wc, i);
        for (int i = 0; i <= 100; i++) bad_e += hist.edges[i] != (float)at(we, i);
        EXPECT(bad_c == 0, "histogram %d: %d counts differ from numpy's", idx, bad_c);
        EXPECT(bad_e == 0, "histogram %d: %d edges differ from numpy's", idx, bad_e);
        dk_histogram_free(&hist);
        if (cJSON_GetObjectItem(h, "lower")) {
            for (int i = 1; i < m; i++) /* insertion sort: small */
                for (int j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
                    float t = sorted[j];
                    sorted[j] = sorted[j - 1], sorted[j - 1] = t;
                }
            float lo, hi;
            dk_iqr_fences(sorted, m, &lo, &hi);
            EXPECT(lo == (float)cJSON_GetObjectItem(h, "lower")->valuedouble, "histogram %d: lower fence %.9g, torch %.9g",
                   idx, lo, cJSON_GetObjectItem(h, "lower")->valuedouble);
            EXPECT(hi == (float)cJSON_GetObjectItem(h, "upper")->valuedouble, "histogram %d: upper fence %.9g, torch %.9g",
                   idx, hi, cJSON_GetObjectItem(h, "upper")->valuedouble);
        }
        free(v), free(sorted);
    }
}

static void sums(const cJSON *ss) {
    int idx = 0;
    for (const cJSON *s = ss->child; s; s = s->next, idx++) {
        const int n = (int)cJSON_GetObjectItem(s, "n")->valuedouble, d = (int)cJSON_GetObjectItem(s, "d")->valuedouble;
        uint16_t *b = bits(cJSON_GetObjectItem(s, "base")), *f = bits(cJSON_GetObjectItem(s, "ft"));
        dk_bf16_sum fwd, rev;
        dk_bf16_sum_init(&fwd, d), dk_bf16_sum_init(&rev, d);
        for (int i = 0; i < n; i++) dk_bf16_sum_add_diff(&fwd, f + i * d, b + i * d);
        for (int i = n - 1; i >= 0; i--) dk_bf16_sum_add_diff(&rev, f + i * d, b + i * d);
        EXPECT(memcmp(fwd.words, rev.words, (size_t)d * DK_BF16_SUM_WORDS * sizeof *fwd.words) == 0,
               "sum %d: the state depends on the order of the rows", idx);
        double *sum = malloc((size_t)d * sizeof *sum), *mean = malloc((size_t)d * sizeof *mean);
        dk_bf16_sum_value(&fwd, sum);
        dk_bf16_sum_mean(&fwd, mean);
        EXPECT(fwd.count == n, "sum %d: count %lld", idx, (long long)fwd.count);
        const cJSON *ws = cJSON_GetObjectItem(s, "sum"), *wm = cJSON_GetObjectItem(s, "mean");
        for (int j = 0; j < d; j++) {
            EXPECT(fabs(sum[j] - at(ws, j)) <= 4e-16 * fabs(at(ws, j)), "sum %d[%d]: %.17g, exact %.17g", idx, j, sum[j],
                   at(ws, j));
            EXPECT(fabs(mean[j] - at(wm, j)) <= 6e-16 * fabs(at(wm, j)), "mean %d[%d]: %.17g, exact %.17g", idx, j,
                   mean[j], at(wm, j));
        }
        dk_bf16_sum_free(&fwd), dk_bf16_sum_free(&rev);
        free(sum), free(mean), free(b), free(f);
    }
}

int main(void) {
    cJSON *u = load();
    if (!u) return 1;
    pair_metrics(cJSON_GetObjectItem(u, "pair_metrics"));
    histograms(cJSON_GetObjectItem(u, "histograms"));
    sums(cJSON_GetObjectItem(u, "bf16_sums"));
    cJSON_Delete(u);
    return dk_test_finish("test_aa_units");
}
