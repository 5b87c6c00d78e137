/* test_dm_nmf.c — diff mining's NMF (host/methods/nmf.c) and torch's generator (torch_rng.c) against the seed's
 * library: tests/fixtures/methods/diff_mining/tiny/nmf_case.json, written by tools/make_diff_mining_goldens.py with
 * torchnmf 0.3.5 (NMF(V.shape, 3).fit(V, beta=2, max_iter=200) after torch.manual_seed(seed)) on the sparse matrix
 * the tiny case's top-k values make.
 *
 * Checked: W and H as torchnmf draws them (|randn|, within 1e-6: torch's float log/sin/cos differ from libm's
 * by an ulp); the fit from our own init against torchnmf's (same iteration count; W and H within 2e-5 of their
 * norm, measured 1.8e-6; the reconstruction error within 1e-6 relative); the fit from torchnmf's exact init
 * (within 2e-5); the same bits on 1 and 3 threads. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/file.h"
#include "methods/nmf.h"
#include "methods/torch_rng.h"
#include "test.h"

static float *matrix(const cJSON *m, int64_t rows, int cols) {
    float *out = malloc((size_t)(rows * cols) * sizeof *out);
    for (int64_t r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            out[r * cols + c] = (float)cJSON_GetArrayItem(cJSON_GetArrayItem(m, (int)r), c)->valuedouble;
    return out;
}

static double max_abs_diff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - (double)b[i]));
    return m;
}

static double rel_diff(const float *a, const float *b, int64_t n) {
    double d = 0, s = 0;
    for (int64_t i = 0; i < n; i++) d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), s += (double)b[i] * b[i];
    return sqrt(d / (s > 0 ? s : 1));
}

int main(void) {
    char *path = dk_fixture_path("methods/diff_mining/tiny/nmf_case.json");
    dk_err err = {0};
    size_t size = 0;
    char *text = dk_read_file(path, &size, &err);
    if (!text) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    cJSON *j = cJSON_ParseWithLength(text, size);
    free(text);
    const int64_t rows = (int64_t)cJSON_GetObjectItem(j, "rows")->valuedouble;
    const int64_t cols = (int64_t)cJSON_GetObjectItem(j, "cols")->valuedouble;
    const int rank = cJSON_GetObjectItem(j, "rank")->valueint;
    const uint64_t seed = (uint64_t)cJSON_GetObjectItem(j, "seed")->valuedouble;
    const int ref_iter = cJSON_GetObjectItem(j, "n_iter")->valueint;
    const double ref_err = cJSON_GetObjectItem(j, "reconstruction_error")->valuedouble;
    const cJSON *idx = cJSON_GetObjectItem(j, "indices"), *vals = cJSON_GetObjectItem(j, "values");
    const int64_t nnz = cJSON_GetArraySize(vals);

    /* V: torch's coalesced COO is sorted by (row, col): CSR directly */
    dk_nmf_csr V = {rows, cols, nnz, calloc((size_t)rows + 1, sizeof(int64_t)), malloc((size_t)nnz * sizeof(int32_t)),
                    malloc((size_t)nnz * sizeof(float))};
    const cJSON *ri = cJSON_GetArrayItem(idx, 0), *ci = cJSON_GetArrayItem(idx, 1);
    for (int64_t e = 0; e < nnz; e++) {
        V.row_ptr[(int64_t)cJSON_GetArrayItem(ri, (int)e)->valuedouble + 1]++;
        V.col[e] = (int32_t)cJSON_GetArrayItem(ci, (int)e)->valuedouble;
        V.val[e] = (float)cJSON_GetArrayItem(vals, (int)e)->valuedouble;
    }
    for (int64_t r = 0; r < rows; r++) V.row_ptr[r + 1] += V.row_ptr[r];

    float *W0 = matrix(cJSON_GetObjectItem(j, "W0"), cols, rank), *H0 = matrix(cJSON_GetObjectItem(j, "H0"), rows, rank);
    float *W = matrix(cJSON_GetObjectItem(j, "W"), cols, rank), *H = matrix(cJSON_GetObjectItem(j, "H"), rows, rank);

    /* 1. the init */
    dk_nmf_fit ours;
    dk_nmf_init(&ours, rows, cols, rank, seed);
    double dw = max_abs_diff(ours.W, W0, cols * rank), dh = max_abs_diff(ours.H, H0, rows * rank);
    EXPECT(dw <= 1e-6 && dh <= 1e-6, "init: W differs from torch's by %.3g, H by %.3g (max abs)", dw, dh);
    dk_torch_rng g;
    dk_torch_rng_seed(&g, 0);
    EXPECT(fabsf(dk_torch_rand_f32(&g) - 0.49625659f) < 1e-7f, "torch.manual_seed(0); torch.rand(1) = 0.4963");

    /* 2. the fit from our init */
    dk_nmf_run(&V, &ours, 200, 1e-4, 1);
    const double e_ours = dk_nmf_error(&V, &ours);
    EXPECT(ours.n_iter == ref_iter, "iterations: ours %d, torchnmf %d", ours.n_iter, ref_iter);
    double rw = rel_diff(ours.W, W, cols * rank), rh = rel_diff(ours.H, H, rows * rank);
    EXPECT(rw <= 2e-5 && rh <= 2e-5, "fit from our init: W differs from torchnmf's by %.3g, H by %.3g (relative)", rw,
           rh);
    EXPECT(fabs(e_ours - ref_err) <= 1e-6 * ref_err, "reconstruction error: ours %.9g, torchnmf %.9g", e_ours, ref_err);
    printf("init max |d| W %.3g H %.3g; fit: %d iterations (torchnmf %d), W rel %.3g, H rel %.3g, error %.9g "
           "(torchnmf %.9g)\n", dw, dh, ours.n_iter, ref_iter, rw, rh, e_ours, ref_err);

    /* 3. the fit from torchnmf's exact init: only the update arithmetic differs */
    dk_nmf_fit same = {.rows = rows, .cols = cols, .rank = rank, .W = malloc((size_t)(cols * rank) * sizeof(float)),
                       .H = malloc((size_t)(rows * rank) * sizeof(float))};
    memcpy(same.W, W0, (size_t)(cols * rank) * sizeof(float));
    memcpy(same.H, H0, (size_t)(rows * rank) * sizeof(float));
    dk_nmf_run(&V, &same, 200, 1e-4, 1);
    rw = rel_diff(same.W, W, cols * rank), rh = rel_diff(same.H, H, rows * rank);
    EXPECT(same.n_iter == ref_iter && rw <= 2e-5 && rh <= 2e-5,
           "fit from torchnmf's init: %d iterations (torchnmf %d), W rel %.3g, H rel %.3g", same.n_iter, ref_iter, rw, rh);
    printf("from torchnmf's init: W rel %.3g, H rel %.3g\n", rw, rh);

    /* 4. threads do not change a bit */
    dk_nmf_fit t3;
    dk_nmf_init(&t3, rows, cols, rank, seed);
    dk_nmf_run(&V, &t3, 200, 1e-4, 3);
    EXPECT(memcmp(t3.W, ours.W, (size_t)(cols * rank) * sizeof(float)) == 0 &&
           memcmp(t3.H, ours.H, (size_t)(rows * rank) * sizeof(float)) == 0 && t3.n_iter == ours.n_iter,
           "3 threads give other bits than 1");

    dk_nmf_free(&ours), dk_nmf_free(&same), dk_nmf_free(&t3);
    dk_nmf_csr_free(&V);
    free(W0), free(H0), free(W), free(H), free(path);
    cJSON_Delete(j);
    return dk_test_finish("test_dm_nmf");
}
