/* linear_fused.h — y = x·Wᵀ (+ b) for a few rows of x, read straight from bf16/f16/f32 weights.
 *
 * Why this exists: decoding feeds one token per sequence, so a projection has M = a handful of rows while W
 * is megabytes. The tiled path (host/model/weights.c: widen a 64 MB tile of W to fp32, then cblas_sgemm)
 * writes and re-reads twice the bytes of the weight and spends its time converting; at small M the product
 * is bound by reading W once. Here W is read once, a few hundred elements of 4 rows at a time are widened
 * into an L1-resident buffer and multiplied into all M rows of x with fp32 accumulation.
 *
 * Arithmetic, per output y[m][n]: 8 lane sums, lane j adding x[m][k]·W[n][k] for k ≡ j (mod 8) in increasing
 * k (FMA in the AVX2 path, multiply-then-add in the portable one), then bias + lane 0 + ... + lane 7 in that
 * order. It depends on the instruction set, never on how the rows [n0, n1) are split over threads.
 * Accuracy: fp32 accumulation of K terms, the same class as sgemm (not the same bits).
 */
#ifndef DK_CPU_LINEAR_FUSED_H
#define DK_CPU_LINEAR_FUSED_H

#include <stdint.h>

typedef enum { DK_CPU_WEIGHT_F32, DK_CPU_WEIGHT_BF16, DK_CPU_WEIGHT_F16 } dk_cpu_weight_type;

/* The most rows of x one call takes (the accumulators live on the stack). */
enum { DK_CPU_FUSED_MAX_M = 32 };

/* Columns [n0, n1) of y (M, N) = x (M, K) · W (N, K)ᵀ + bias (N; may be NULL). W is `type`, row-major, at any
 * byte address (safetensors data may be 2-byte misaligned for f32). 1 <= M <= DK_CPU_FUSED_MAX_M. Uses AVX2 +
 * FMA + F16C when the CPU has them (checked at run time), the portable loop otherwise. */
void dk_cpu_linear_fused(float *y, const float *x, const void *w, dk_cpu_weight_type type, const float *bias,
                         int64_t M, int64_t N, int64_t K, int64_t n0, int64_t n1);
/* Same, always the portable C loop (the fallback; exposed so that tests check both). */
void dk_cpu_linear_fused_portable(float *y, const float *x, const void *w, dk_cpu_weight_type type,
                                  const float *bias, int64_t M, int64_t N, int64_t K, int64_t n0, int64_t n1);

#endif
