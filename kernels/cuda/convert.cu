/* convert.cu — GPU twin of kernels/cpu/convert.c: one thread per element, grid-stride loop, the scalar
 * conversions of kernels/dtype_convert.h so both backends round identically. */
#include "convert.cuh"

#include "../dtype_convert.h"

template <typename Dst, typename Src, Dst (*convert)(Src)>
__global__ void k_convert(Dst *dst, const Src *src, size_t n) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) dst[i] = convert(src[i]);
}

static unsigned grid_for(size_t n, unsigned block) {
    size_t blocks = (n + block - 1) / block;
    return (unsigned)(blocks > 65535u * 8u ? 65535u * 8u : (blocks ? blocks : 1));
}

template <typename Dst, typename Src, Dst (*convert)(Src)>
static cudaError_t launch(Dst *dst, const Src *src, size_t n, cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    const unsigned block = 256;
    k_convert<Dst, Src, convert><<<grid_for(n, block), block, 0, stream>>>(dst, src, n);
    return cudaGetLastError();
}

extern "C" cudaError_t dk_cuda_bf16_to_f32(float *dst, const uint16_t *src, size_t n, cudaStream_t stream) {
    return launch<float, uint16_t, dk_bf16_to_f32>(dst, src, n, stream);
}
extern "C" cudaError_t dk_cuda_f32_to_bf16(uint16_t *dst, const float *src, size_t n, cudaStream_t stream) {
    return launch<uint16_t, float, dk_f32_to_bf16>(dst, src, n, stream);
}
extern "C" cudaError_t dk_cuda_f16_to_f32(float *dst, const uint16_t *src, size_t n, cudaStream_t stream) {
    return launch<float, uint16_t, dk_f16_to_f32>(dst, src, n, stream);
}
extern "C" cudaError_t dk_cuda_f32_to_f16(uint16_t *dst, const float *src, size_t n, cudaStream_t stream) {
    return launch<uint16_t, float, dk_f32_to_f16>(dst, src, n, stream);
}
