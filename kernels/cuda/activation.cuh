/* activation.cuh — element-wise ops of the decoder on the GPU, twins of kernels/cpu/activation.h and of
 * the bias/softcap loops of the CPU forward.
 *
 * dk_cuda_gated_act: the MLP's act(gate) ⊙ up from ONE fused projection whose output row t is gate‖up
 *   (gate in columns [0, I), up in [I, 2I)): out[t, i] = act(gu[t, i]) · gu[t, I + i], fp32 arithmetic,
 *     SILU       x / (1 + expf(-x))
 *     GELU_TANH  0.5·x·(1 + tanhf(√(2/π)·(x + 0.044715·x³)))
 *     GELU_ERF   0.5·x·(1 + erff(x/√2))
 *   (the same expressions as dk_cpu_act_scalar; device expf/tanhf/erff are within 2 ulp of libm).
 * dk_cuda_plain_act: out[t, i] = act(x[t, i]), for an MLP without a gate (GPT-2); the same expressions.
 * dk_cuda_add_bias: y[t, j] += b[j] for j < n of rows of stride ld (projection biases, fp32 b).
 * dk_cuda_softcap: y = tanhf(y / c) · c on fp32 logits (Gemma 2's final_logit_softcapping). */
#ifndef DK_CUDA_ACTIVATION_CUH
#define DK_CUDA_ACTIVATION_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "dtype.h"

typedef enum { DK_CUDA_ACT_SILU, DK_CUDA_ACT_GELU_TANH, DK_CUDA_ACT_GELU_ERF } dk_cuda_act;

#ifdef __cplusplus
extern "C" {
#endif

/* out (T, I) dtype; gu (T, 2I) dtype. */
cudaError_t dk_cuda_gated_act(void *out, const void *gu, int64_t T, int64_t I, dk_cuda_act act, dk_cuda_dtype dtype,
                              cudaStream_t stream);
/* out (T, I) dtype; x (T, I) dtype (out may equal x). */
cudaError_t dk_cuda_plain_act(void *out, const void *x, int64_t T, int64_t I, dk_cuda_act act, dk_cuda_dtype dtype,
                              cudaStream_t stream);
/* y (T, ld) dtype, columns [0, n); b (n) fp32. */
cudaError_t dk_cuda_add_bias(void *y, int64_t ld, const float *b, int64_t T, int64_t n, dk_cuda_dtype dtype,
                             cudaStream_t stream);
/* y (n) fp32 in place; cap > 0. */
cudaError_t dk_cuda_softcap(float *y, int64_t n, float cap, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
