/* hooks.cuh — the hook plan's writes into the residual stream on the GPU, twins of after_block() in
 * host/model/forward.c. Captures need no kernel: the residual stream is fp32 (T, H), exactly the layout
 * of a capture buffer, so the host copies it with cudaMemcpyAsync into pinned memory.
 *
 * dk_cuda_steer:  x[t, j] += strength · vec[j]       every t < T, j < H (fp32, product rounded first)
 * dk_cuda_patch:  x[token, :] = vec                  one row (the host checks token < T) */
#ifndef DK_CUDA_HOOKS_CUH
#define DK_CUDA_HOOKS_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* x (T, H) fp32; vec (H) fp32 on the device. */
cudaError_t dk_cuda_steer(float *x, const float *vec, float strength, int64_t T, int64_t H, cudaStream_t stream);
/* x (T, H) fp32; vec (H) fp32 on the device. */
cudaError_t dk_cuda_patch(float *x, const float *vec, int64_t token, int64_t H, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
