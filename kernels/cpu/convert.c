/* convert.c — see convert.h. Plain loops over the scalar conversions; the compiler vectorises the bf16 ones. */
#include "convert.h"

#include "../dtype_convert.h"

void dk_cpu_bf16_to_f32(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = dk_bf16_to_f32(src[i]);
}

void dk_cpu_f32_to_bf16(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = dk_f32_to_bf16(src[i]);
}

void dk_cpu_f16_to_f32(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = dk_f16_to_f32(src[i]);
}

void dk_cpu_f32_to_f16(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = dk_f32_to_f16(src[i]);
}
