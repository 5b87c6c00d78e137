/* gemm.c — see gemm.h. */
#include "gemm.h"

#include <cblas.h>
#include <string.h>

void dk_cpu_linear(float *y, const float *x, const float *w, const float *bias, int64_t M, int64_t N, int64_t K) {
    dk_cpu_linear_strided(y, N, x, w, bias, M, N, K);
}

void dk_cpu_linear_strided(float *y, int64_t ldy, const float *x, const float *w, const float *bias, int64_t M,
                           int64_t N, int64_t K) {
    if (M == 0 || N == 0) return;
    if (K == 0) { /* an empty sum: y = bias or 0 (BLAS would reject lda = 0) */
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) y[m * ldy + n] = bias ? bias[n] : 0.0f;
        return;
    }
    float beta = 0.0f;
    if (bias) { /* start from the bias in every row, then accumulate the product onto it */
        for (int64_t m = 0; m < M; m++) memcpy(y + m * ldy, bias, (size_t)N * sizeof *y);
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)M, (blasint)N, (blasint)K, 1.0f, x, (blasint)K, w,
                (blasint)K, beta, y, (blasint)ldy);
}

void dk_cpu_linear_accumulate(float *y, const float *x, const float *w, int64_t M, int64_t N, int64_t K) {
    if (M == 0 || N == 0 || K == 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)M, (blasint)N, (blasint)K, 1.0f, x, (blasint)K, w,
                (blasint)K, 1.0f, y, (blasint)N);
}
