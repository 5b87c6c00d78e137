/* rmsnorm.c — see rmsnorm.h. The mean of squares is accumulated in double and rounded to float once: at
 * least as accurate as torch's float32 reduction, so results agree with it to an ulp or two. */
#include "rmsnorm.h"

#include "../dtype_convert.h"

#include <math.h>

/* 1 / sqrt(mean(x^2) + eps) of one row, in float32 like torch.rsqrt(variance + eps). */
static float inverse_rms(const float *x, int64_t dim, float eps) {
    double sum_squares = 0.0;
    for (int64_t j = 0; j < dim; j++) sum_squares += (double)x[j] * (double)x[j];
    float variance = (float)(sum_squares / (double)dim);
    return 1.0f / sqrtf(variance + eps);
}

void dk_cpu_rmsnorm(float *out, const float *x, const float *weight, int64_t rows, int64_t dim, float eps,
                    dk_rmsnorm_kind kind) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim; // (dim)
        float *outr = out + r * dim;   // (dim)
        float inv = inverse_rms(xr, dim, eps);
        if (kind == DK_RMSNORM_GEMMA)
            for (int64_t j = 0; j < dim; j++) outr[j] = (xr[j] * inv) * (1.0f + weight[j]);
        else
            for (int64_t j = 0; j < dim; j++) outr[j] = weight[j] * (xr[j] * inv);
    }
}

static float round_bf16(float v) { return dk_bf16_to_f32(dk_f32_to_bf16(v)); }

void dk_cpu_rmsnorm_bf16_emulated(float *out, const float *x, const float *weight, int64_t rows, int64_t dim,
                                  float eps, dk_rmsnorm_kind kind) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim; // (dim) bf16 values
        float *outr = out + r * dim;   // (dim)
        float inv = inverse_rms(xr, dim, eps);
        if (kind == DK_RMSNORM_GEMMA) /* f32 all the way, one rounding at the end (output.type_as(x)) */
            for (int64_t j = 0; j < dim; j++) outr[j] = round_bf16((xr[j] * inv) * (1.0f + weight[j]));
        else /* weight * hidden.to(bf16): the normalized value is rounded, then the bf16 product */
            for (int64_t j = 0; j < dim; j++) outr[j] = round_bf16(weight[j] * round_bf16(xr[j] * inv));
    }
}
