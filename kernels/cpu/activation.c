/* activation.c — see activation.h. Constants as in PyTorch's CPU kernels (GeluKernel: kBeta = √2·(2/√π)·½). */
#include "activation.h"

#include <math.h>

float dk_cpu_act_scalar(float x, dk_cpu_act act) {
    switch (act) {
    case DK_CPU_ACT_SILU: return x / (1.0f + expf(-x));
    case DK_CPU_ACT_GELU_TANH: {
        const float beta = 0.7978845608028654f; /* √(2/π) */
        const float kappa = 0.044715f;
        float inner = beta * (x + kappa * x * x * x);
        return 0.5f * x * (1.0f + tanhf(inner));
    }
    case DK_CPU_ACT_GELU_ERF: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    }
    return x;
}

void dk_cpu_gated_act(float *out, const float *gate, const float *up, size_t n, dk_cpu_act act) {
    for (size_t i = 0; i < n; i++) out[i] = dk_cpu_act_scalar(gate[i], act) * up[i];
}

void dk_cpu_plain_act(float *out, const float *x, size_t n, dk_cpu_act act) {
    for (size_t i = 0; i < n; i++) out[i] = dk_cpu_act_scalar(x[i], act);
}
