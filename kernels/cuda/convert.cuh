/* convert.cuh — array dtype conversions on the GPU, same semantics as kernels/cpu/convert.h
 * (both call the scalar functions of kernels/dtype_convert.h). Launchers are asynchronous on `stream` and return the launch status
 * (cudaGetLastError), which the host checks with CUDA_CHECK: kernels/ never ends the process itself. */
#ifndef DK_CUDA_CONVERT_CUH
#define DK_CUDA_CONVERT_CUH

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

cudaError_t dk_cuda_bf16_to_f32(float *dst, const uint16_t *src, size_t n, cudaStream_t stream);
cudaError_t dk_cuda_f32_to_bf16(uint16_t *dst, const float *src, size_t n, cudaStream_t stream);
cudaError_t dk_cuda_f16_to_f32(float *dst, const uint16_t *src, size_t n, cudaStream_t stream);
cudaError_t dk_cuda_f32_to_f16(uint16_t *dst, const float *src, size_t n, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
