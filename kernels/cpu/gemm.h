/* gemm.h — torch.nn.Linear on the CPU through OpenBLAS: y = x·Wᵀ (+ b).
 * Checkpoints store W as (out_features, in_features), row-major, so the product is one cblas_sgemm with
 * W transposed; no copy or re-layout of the weights. fp32 in, fp32 accumulation (OpenBLAS), fp32 out. */
#ifndef DK_CPU_GEMM_H
#define DK_CPU_GEMM_H

#include <stdint.h>

/* y (M, N) = x (M, K) · W (N, K)ᵀ + bias (N) (bias may be NULL). y must not overlap x or W. */
void dk_cpu_linear(float *y, const float *x, const float *w, const float *bias, int64_t M, int64_t N, int64_t K);
/* Same, writing row m of y at y + m·ldy (ldy >= N): the columns of a wider output, for weights widened a
 * tile of output rows at a time. */
void dk_cpu_linear_strided(float *y, int64_t ldy, const float *x, const float *w, const float *bias, int64_t M,
                           int64_t N, int64_t K);
/* y (M, N) += x (M, K) · W (N, K)ᵀ (LoRA's second product onto the base output). */
void dk_cpu_linear_accumulate(float *y, const float *x, const float *w, int64_t M, int64_t N, int64_t K);

#endif
