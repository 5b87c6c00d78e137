/* gemm.h — torch.nn.Linear on the CPU through OpenBLAS: y = x·Wᵀ (+ b).
 * Checkpoints store W as (out_features, in_features), row-major, so the product is one cblas_sgemm with
 * W transposed; no copy or re-layout of the weights. fp32 in, fp32 accumulation (OpenBLAS), fp32 out. */
#ifndef DK_CPU_GEMM_H
#define DK_CPU_GEMM_H

#include <stdint.h>

/* y (M, N) = x (M, K) · W (N, K)ᵀ + bias (N) (bias may be NULL). y must not overlap x or W. */
void dk_cpu_linear(float *y, const float *x, const float *w, const float *bias, int64_t M, int64_t N, int64_t K);

#endif
