/* linear_fused.h — y = x·Wᵀ (+ b) for a few rows of x, read straight from bf16/f16/f32 weights.
 *
 * Why this exists: decoding feeds one token per sequence, so a projection has M = a handful of rows while W
 * is megabytes. The tiled path (host/model/weights.c: widen a 64 MB tile of W to fp32, then cblas_sgemm)
 * writes and re-reads twice the bytes of the weight and spends its time converting; at small M the product
 * is bound by reading W once. Here W is read once, a few hundred elements of 4 rows at a time are widened
 * into an L1-resident buffer and multiplied into all M rows of x with fp32 accumulation (register-blocked
 * 4 weight rows × 2 (AVX2) or 4 (AVX-512) rows of x).
 *
 * Arithmetic, per output y[m][n]: L lane sums (L = 8, or 16 with AVX-512), lane j adding x[m][k]·W[n][k] for
 * k ≡ j (mod L) in increasing k (FMA in the AVX2/AVX-512 paths except for a chunk's last K mod L elements,
 * multiply-then-add in the portable one), then bias + lane 0 + ... + lane L-1 in that order. It depends on
 * the instruction set, never on how the rows [n0, n1) are split over threads.
 * Accuracy: fp32 accumulation of K terms, the same class as sgemm (not the same bits).
 */
#ifndef DK_CPU_LINEAR_FUSED_H
#define DK_CPU_LINEAR_FUSED_H

#include <stdbool.h>
#include <stdint.h>

typedef enum { DK_CPU_WEIGHT_F32, DK_CPU_WEIGHT_BF16, DK_CPU_WEIGHT_F16 } dk_cpu_weight_type;

/* The most rows of x one call takes (the accumulators live on the stack). */
enum { DK_CPU_FUSED_MAX_M = 64 };

/* The code paths, each compiled whatever the build's -march (x86-64 with GCC or Clang; elsewhere only the
 * portable one exists) and used only when the CPU reports the instructions. */
typedef enum {
    DK_CPU_FUSED_PORTABLE, /* plain C, vectorised by the compiler for the baseline ISA */
    DK_CPU_FUSED_AVX2,     /* AVX2 + FMA + F16C */
    DK_CPU_FUSED_AVX512,   /* AVX-512F */
    DK_CPU_FUSED_N_PATHS
} dk_cpu_fused_path;

/* Whether this CPU (and build) can run `path`. */
bool dk_cpu_fused_path_available(dk_cpu_fused_path path);
/* "portable", "avx2", "avx512" */
const char *dk_cpu_fused_path_name(dk_cpu_fused_path path);

/* Columns [n0, n1) of y (M, N) = x (M, K) · W (N, K)ᵀ + bias (N; may be NULL). W is `type`, row-major, at any
 * byte address (safetensors data may be 2-byte misaligned for f32). 1 <= M <= DK_CPU_FUSED_MAX_M. Uses the
 * widest available path (AVX-512, else AVX2, else portable). */
void dk_cpu_linear_fused(float *y, const float *x, const void *w, dk_cpu_weight_type type, const float *bias,
                         int64_t M, int64_t N, int64_t K, int64_t n0, int64_t n1);
/* Same on a given path (for tests and benchmarks; the portable one when `path` is not available). */
void dk_cpu_linear_fused_on(dk_cpu_fused_path path, float *y, const float *x, const void *w,
                            dk_cpu_weight_type type, const float *bias, int64_t M, int64_t N, int64_t K, int64_t n0,
                            int64_t n1);

#endif
