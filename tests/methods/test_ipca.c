/* test_ipca.c — kernels/cpu/ipca.c against scikit-learn's IncrementalPCA and PCA (fixture made by
 * tools/make_dict_goldens.py ipca: 6 batches of 100 rows, d = 12, well separated variances):
 *   1. partial_fit on the batches in order, n_components = d: mean, var, singular values, explained variance
 *      (and ratio), components and noise variance equal scikit-learn's within 1e-5 relative (the fixture
 *      stores fp32) and 1e-5 absolute for the unit-norm components;
 *   2. the same batches fitted by 2 and 3 "ranks" (batch g on rank g % n, each fitting its own in order) and
 *      merged in rank order give the one-rank result within 1e-9 relative (fp64 rounding only): diff_pca's
 *      merge across ranks;
 *   3. n_components = 4 equals scikit-learn's exact PCA (our states never drop a component before the end);
 *      scikit-learn's truncating IncrementalPCA differs from both by up to ~1% (printed, not asserted). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dict_fixture.h"
#include "kernels/cpu/ipca.h"

static const float *X;
static int64_t D, BATCH, NB;

static void fit_ranks(dk_ipca *out, int nranks) {
    dk_ipca st[3];
    for (int r = 0; r < nranks; r++) dk_ipca_init(&st[r], D);
    for (int64_t g = 0; g < NB; g++) EXPECT(dk_ipca_partial_fit(&st[g % nranks], X + g * BATCH * D, BATCH) == 0, "fit");
    dk_ipca_init(out, D);
    for (int r = 0; r < nranks; r++) {
        EXPECT(dk_ipca_merge(out, &st[r]) == 0, "merge");
        dk_ipca_free(&st[r]);
    }
}

typedef struct result {
    double comps[144], sv[12], ev[12], ratio[12], noise;
} result;

static void result_of(const dk_ipca *p, int64_t nc, result *r) { dk_ipca_result(p, nc, r->comps, r->sv, r->ev, r->ratio, &r->noise); }

static void compare_golden(const dk_st_checkpoint *ck, const char *prefix, const dk_ipca *p, const result *r,
                           int64_t nc, bool with_mean) {
    char name[96];
    float *g;
    int64_t n;
#define G(field) (snprintf(name, sizeof name, "%s.%s", prefix, field), g = fx_f32(ck, name, &n))
    if (with_mean) {
        G("mean");
        EXPECT(fx_worst("mean", p->mean, g, n, 1e-6, 1e-5) <= 1, "%s mean", prefix);
        free(g);
        G("var");
        EXPECT(fx_worst("var", p->var, g, n, 1e-6, 1e-5) <= 1, "%s var", prefix);
        free(g);
        G("singular_values");
        EXPECT(fx_worst("singular values", r->sv, g, nc, 1e-6, 1e-5) <= 1, "%s singular values", prefix);
        free(g);
        EXPECT((int64_t)fx_scalar(ck, (snprintf(name, sizeof name, "%s.n_samples_seen", prefix), name)) == p->n_seen,
               "%s n_samples_seen", prefix);
    }
    G("explained_variance");
    EXPECT(fx_worst("explained variance", r->ev, g, nc, 1e-6, 1e-5) <= 1, "%s explained variance", prefix);
    free(g);
    G("explained_variance_ratio");
    EXPECT(fx_worst("ratio", r->ratio, g, nc, 1e-7, 1e-5) <= 1, "%s explained variance ratio", prefix);
    free(g);
    G("components");
    EXPECT(n == nc * D && fx_worst("components", r->comps, g, nc * D, 1e-5, 0) <= 1, "%s components", prefix);
    free(g);
    double noise = fx_scalar(ck, (snprintf(name, sizeof name, "%s.noise_variance", prefix), name));
    EXPECT(fabs(r->noise - noise) <= 1e-6 + 1e-5 * fabs(noise), "%s noise variance %.9g vs %.9g", prefix, r->noise, noise);
#undef G
}

static double max_rel(const double *a, const double *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double r = fabs(a[i] - b[i]) / (1e-12 + fabs(b[i]));
        if (r > m) m = r;
    }
    return m;
}

int main(void) {
    char *path = dk_fixture_path("methods/dict/ipca_golden.safetensors");
    dk_err err = {0};
    dk_st_checkpoint *ck = dk_st_open(path, &err);
    if (!ck) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    int64_t n;
    float *x = fx_f32(ck, "x", &n);
    X = x;
    D = 12;
    BATCH = (int64_t)fx_scalar(ck, "batch");
    NB = n / D / BATCH;
    const int64_t small = (int64_t)fx_scalar(ck, "n_components_small");

    /* 1. one rank, every component */
    dk_ipca one;
    fit_ranks(&one, 1);
    result r1;
    result_of(&one, D, &r1);
    compare_golden(ck, "full", &one, &r1, D, true);

    /* 2. two and three ranks merged */
    for (int nr = 2; nr <= 3; nr++) {
        dk_ipca m;
        fit_ranks(&m, nr);
        result rm;
        result_of(&m, D, &rm);
        EXPECT(m.n_seen == one.n_seen, "%d ranks: rows", nr);
        EXPECT(max_rel(m.mean, one.mean, D) < 1e-9 && max_rel(m.var, one.var, D) < 1e-9, "%d ranks: mean/var", nr);
        EXPECT(max_rel(rm.ev, r1.ev, D) < 1e-9, "%d ranks: explained variance (max rel %.3g)", nr, max_rel(rm.ev, r1.ev, D));
        double dc = 0;
        for (int64_t i = 0; i < D * D; i++) dc = fmax(dc, fabs(rm.comps[i] - r1.comps[i]));
        EXPECT(dc < 1e-9, "%d ranks: components differ by %.3g", nr, dc);
        printf("%d ranks vs 1: explained variance max rel %.2e, components max abs %.2e\n", nr, max_rel(rm.ev, r1.ev, D), dc);
        compare_golden(ck, "full", &m, &rm, D, true);
        dk_ipca_free(&m);
    }

    /* 3. fewer components: the exact PCA */
    result rs;
    result_of(&one, small, &rs);
    compare_golden(ck, "exact", &one, &rs, small, false);
    float *trunc_ev = fx_f32(ck, "trunc.explained_variance", NULL);
    double gap = 0;
    for (int64_t i = 0; i < small; i++) gap = fmax(gap, fabs(rs.ev[i] - trunc_ev[i]) / trunc_ev[i]);
    printf("n_components=%lld: vs scikit-learn's truncating IncrementalPCA, explained variance differs by up to %.2e "
           "(their truncation after every batch; ours equals the exact PCA)\n", (long long)small, gap);
    free(trunc_ev);

    dk_ipca_free(&one);
    free(x);
    dk_st_close(ck);
    free(path);
    return dk_test_finish("test_ipca");
}
