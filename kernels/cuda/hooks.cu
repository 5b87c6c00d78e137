/* hooks.cu — see hooks.cuh. */
#include "hooks.cuh"

#include "common.cuh"

__global__ void k_steer(float *x, const float *vec, float strength, int64_t T, int64_t H) {
    const int64_t n = T * H;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        x[i] = __fadd_rn(x[i], __fmul_rn(strength, vec[i % H]));
}

extern "C" cudaError_t dk_cuda_steer(float *x, const float *vec, float strength, int64_t T, int64_t H,
                                     cudaStream_t stream) {
    if (T * H == 0) return cudaSuccess;
    const unsigned block = 256;
    k_steer<<<dk_grid_1d((size_t)(T * H), block), block, 0, stream>>>(x, vec, strength, T, H);
    return cudaGetLastError();
}

extern "C" cudaError_t dk_cuda_patch(float *x, const float *vec, int64_t token, int64_t H, cudaStream_t stream) {
    return cudaMemcpyAsync(x + token * H, vec, (size_t)H * sizeof(float), cudaMemcpyDeviceToDevice, stream);
}
