/* rmsnorm.h — RMSNorm on the CPU, the two variants of the models in scope (models_formats.md §3.1).
 *
 *   Llama/Qwen (LlamaRMSNorm):  out = weight * cast(x * rsqrt(mean(x^2) + eps))        cast FIRST, then multiply
 *   Gemma (Gemma3RMSNorm):      out = cast((x * rsqrt(mean(x^2) + eps)) * (1 + weight)) multiply in f32, cast once
 * In fp32 the two orders give the same numbers, so dk_cpu_rmsnorm is the fp32 reference of both. The
 * *_bf16_emulated variant reproduces a bf16 model's rounding points exactly (inputs already bf16 values held
 * in floats), which is how the CUDA bf16 path is checked against transformers' bf16 output.
 * Gemma's stored weight is the offset w (effective scale 1 + w); callers pass it unchanged.
 */
#ifndef DK_CPU_RMSNORM_H
#define DK_CPU_RMSNORM_H

#include <stdint.h>

typedef enum { DK_RMSNORM_LLAMA, DK_RMSNORM_GEMMA } dk_rmsnorm_kind;

/* out (rows, dim) = RMSNorm(x (rows, dim)) with weight (dim). out may equal x. */
void dk_cpu_rmsnorm(float *out, const float *x, const float *weight, int64_t rows, int64_t dim, float eps,
                    dk_rmsnorm_kind kind);
/* Same, rounding to bf16 where transformers does for a bf16 model (x and weight must hold bf16 values). */
void dk_cpu_rmsnorm_bf16_emulated(float *out, const float *x, const float *weight, int64_t rows, int64_t dim,
                                  float eps, dk_rmsnorm_kind kind);

#endif
