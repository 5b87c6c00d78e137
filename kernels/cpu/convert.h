/* convert.h — array dtype conversions on the CPU (the reference for kernels/cuda/convert.cu).
 * Used to widen bf16/f16 weights per layer or tile into fp32 scratch, and to narrow activations to bf16
 * for the activation store. n is the element count; src and dst must not overlap. */
#ifndef DK_CPU_CONVERT_H
#define DK_CPU_CONVERT_H

#include <stddef.h>
#include <stdint.h>

void dk_cpu_bf16_to_f32(float *dst, const uint16_t *src, size_t n);
void dk_cpu_f32_to_bf16(uint16_t *dst, const float *src, size_t n);
void dk_cpu_f16_to_f32(float *dst, const uint16_t *src, size_t n);
void dk_cpu_f32_to_f16(uint16_t *dst, const float *src, size_t n);

#endif
