/* layernorm.h — LayerNorm on the CPU (GPT-2's ln_1, ln_2, ln_f; torch.nn.LayerNorm):
 *     out = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias        var: the biased (population) variance
 * per row of x, in float32 with the row's moments accumulated in double (at least as accurate as torch's
 * float32 reduction, so the two agree to an ulp or two). */
#ifndef DK_CPU_LAYERNORM_H
#define DK_CPU_LAYERNORM_H

#include <stdint.h>

/* out (rows, dim) = LayerNorm(x (rows, dim)) with weight (dim) and bias (dim). out may equal x. */
void dk_cpu_layernorm(float *out, const float *x, const float *weight, const float *bias, int64_t rows, int64_t dim,
                      float eps);

#endif
