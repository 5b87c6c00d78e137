/* layernorm.c — see layernorm.h. Two passes over each row: the mean, then the variance around it. */
#include "layernorm.h"

#include <math.h>

void dk_cpu_layernorm(float *out, const float *x, const float *weight, const float *bias, int64_t rows, int64_t dim,
                      float eps) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim; /* (dim) */
        float *outr = out + r * dim;   /* (dim) */
        double sum = 0.0;
        for (int64_t j = 0; j < dim; j++) sum += xr[j];
        const double mean = sum / (double)dim;
        double squares = 0.0;
        for (int64_t j = 0; j < dim; j++) squares += ((double)xr[j] - mean) * ((double)xr[j] - mean);
        const float rstd = 1.0f / sqrtf((float)(squares / (double)dim) + eps);
        const float mean_f = (float)mean;
        for (int64_t j = 0; j < dim; j++) outr[j] = (xr[j] - mean_f) * rstd * weight[j] + bias[j];
    }
}
