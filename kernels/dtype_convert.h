/* dtype_convert.h — scalar bf16/f16 <-> f32 conversions, the same code for C host code and CUDA kernels.
 *
 * Semantics (checked exhaustively in tests/unit/test_dtype.c against ml_dtypes and the compiler's _Float16):
 *   - widening (bf16/f16 -> f32) is exact, subnormals included. NaN stays NaN with its payload; f16 NaNs
 *     come out quiet (the quiet bit set), as IEEE conversions, F16C and libgcc do; bf16 is a plain shift,
 *     as in ml_dtypes and torch.
 *   - narrowing (f32 -> bf16/f16) rounds to nearest, ties to even; overflow gives +-Inf; f16 subnormals are
 *     produced exactly; NaN stays NaN with its sign. bf16: NaN becomes the canonical quiet NaN 0x7FC0|sign
 *     (what torch and ml_dtypes give); f16: the quiet bit is set and the top 10 payload bits are kept (what
 *     the F16C instruction and libgcc give).
 * Model weights arrive as bf16 or f16 in safetensors and activations are stored as bf16, so every value that
 * enters or leaves the engine goes through these functions.
 */
#ifndef DK_DTYPE_CONVERT_H
#define DK_DTYPE_CONVERT_H

#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define DK_HOST_DEVICE __host__ __device__
#else
#define DK_HOST_DEVICE
#endif

DK_HOST_DEVICE static inline uint32_t dk_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

DK_HOST_DEVICE static inline float dk_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

DK_HOST_DEVICE static inline float dk_bf16_to_f32(uint16_t h) { return dk_bits_f32((uint32_t)h << 16); }

DK_HOST_DEVICE static inline uint16_t dk_f32_to_bf16(float f) {
    uint32_t u = dk_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)(((u >> 16) & 0x8000u) | 0x7fc0u); /* NaN */
    uint32_t round_bias = 0x7fffu + ((u >> 16) & 1u); /* ties to even: add half minus one, plus the lsb */
    return (uint16_t)((u + round_bias) >> 16);
}

DK_HOST_DEVICE static inline float dk_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu;
    uint32_t mantissa = h & 0x3ffu;
    if (exponent == 0x1f) /* Inf, or NaN made quiet */
        return dk_bits_f32(sign | 0x7f800000u | (mantissa ? 0x400000u : 0u) | (mantissa << 13));
    if (exponent != 0) return dk_bits_f32(sign | ((exponent + 112u) << 23) | (mantissa << 13));
    if (mantissa == 0) return dk_bits_f32(sign); /* +-0 */
    /* subnormal: value = mantissa * 2^-24; shift until the implicit bit (bit 10) is set */
    uint32_t shifts = 0;
    while ((mantissa & 0x400u) == 0) {
        mantissa <<= 1;
        shifts++;
    }
    return dk_bits_f32(sign | ((113u - shifts) << 23) | ((mantissa & 0x3ffu) << 13));
}

DK_HOST_DEVICE static inline uint16_t dk_f32_to_f16(float f) {
    uint32_t u = dk_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* NaN: quiet, payload kept */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  /* >= 65520 rounds to Inf (65504 is odd) */
    if (a >= 0x38800000u) {                                    /* normal f16 range, >= 2^-14 */
        uint32_t r = (a - 0x38000000u) >> 13;                  /* rebias exponent 127 -> 15, drop 13 bits */
        uint32_t rest = a & 0x1fffu;
        if (rest > 0x1000u || (rest == 0x1000u && (r & 1u))) r++;
        return (uint16_t)(sign | r);
    }
    if (a <= 0x33000000u) return sign; /* <= 2^-25: rounds to zero (the tie 2^-25 goes to even, i.e. 0) */
    /* subnormal f16: result in units of 2^-24 = mantissa_with_implicit_bit >> (126 - exponent) */
    uint32_t exponent = a >> 23;
    uint32_t mantissa = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - exponent;
    uint32_t r = mantissa >> shift;
    uint32_t rest = mantissa & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rest > half || (rest == half && (r & 1u))) r++;
    return (uint16_t)(sign | r);
}

#endif
