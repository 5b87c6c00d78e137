/* rope.cuh — rotary position embedding on the GPU, twin of kernels/cpu/rope.h, fused with the per-head
 * q/k RMSNorm of Qwen3 and Gemma 3 (twin of dk_cpu_rmsnorm over rows of D, run before RoPE in forward.c).
 *
 * dk_cuda_rope_tables: cos, sin (n, D) from inv_freq (D/2, computed on the host by host/model/rope_freq.h,
 *   which covers default/linear/llama3/yarn) and positions (n):
 *     angle = (float)pos · inv_freq[i]  (one fp32 multiply);  cos[i] = cos[i+D/2] = cosf(angle) · scaling
 *   Device cosf/sinf are within 2 ulp of libm (CUDA C Programming Guide, Table "Single-Precision
 *   Mathematical Functions"); the angle is bit-identical to the CPU's.
 * dk_cuda_qk_norm_rope: for each token t and head h of x (T rows of stride ld elements; head h at columns
 *   [h·D, (h+1)·D)), in place:
 *     v = norm_w ? RMSNorm(v; norm_w, eps, kind) : v                   (fp32, not rounded in between)
 *     v[i]     = v[i]·cos[t,i]         − v[i+D/2]·sin[t,i]
 *     v[i+D/2] = v[i+D/2]·cos[t,i+D/2] + v[i]·sin[t,i+D/2]           i < D/2, products rounded before the add
 *   ld lets q and k be the column blocks of a fused q‖k‖v projection output. */
#ifndef DK_CUDA_ROPE_CUH
#define DK_CUDA_ROPE_CUH

#include <cuda_runtime.h>
#include <stdbool.h>
#include <stdint.h>

#include "dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

/* cos, sin (n, D) fp32; inv_freq (D/2) fp32; positions (n) int32. */
cudaError_t dk_cuda_rope_tables(float *cos, float *sin, const float *inv_freq, const int32_t *positions, int64_t n,
                                int64_t D, float scaling, cudaStream_t stream);
/* x (T, ld) dtype, heads at columns [0, n_heads·D); norm_w (D) fp32 or NULL; cos, sin (T, D) fp32. */
cudaError_t dk_cuda_qk_norm_rope(void *x, int64_t ld, int64_t T, int64_t n_heads, int64_t D, const float *norm_w,
                                 float eps, bool gemma, const float *cos, const float *sin, dk_cuda_dtype dtype,
                                 cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
