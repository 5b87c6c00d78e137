/* activation.cu — see activation.cuh. One thread per output element, grid-stride loops. */
#include "activation.cuh"

#include "common.cuh"

__device__ __forceinline__ float act_scalar(float x, int act) {
    if (act == DK_CUDA_ACT_SILU) return x / (1.0f + expf(-x));
    if (act == DK_CUDA_ACT_GELU_TANH) {
        const float beta = 0.7978845608028654f, kappa = 0.044715f;
        const float inner = __fmul_rn(beta, __fadd_rn(x, __fmul_rn(__fmul_rn(__fmul_rn(kappa, x), x), x)));
        return __fmul_rn(__fmul_rn(0.5f, x), 1.0f + tanhf(inner));
    }
    return __fmul_rn(__fmul_rn(0.5f, x), 1.0f + erff(x * 0.70710678118654752f));
}

template <typename T>
__global__ void k_gated_act(T *out, const T *gu, int64_t n_tokens, int64_t I, int act) {
    const int64_t n = n_tokens * I;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / I, c = i % I;
        const float g = dk_ld(gu + t * 2 * I + c), u = dk_ld(gu + t * 2 * I + I + c);
        dk_st(out + i, act_scalar(g, act) * u);
    }
}

template <typename T>
__global__ void k_plain_act(T *out, const T *x, int64_t n, int act) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dk_st(out + i, act_scalar(dk_ld(x + i), act));
}

template <typename T>
__global__ void k_add_bias(T *y, int64_t ld, const float *b, int64_t n_rows, int64_t n) {
    const int64_t total = n_rows * n;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        T *p = y + (i / n) * ld + i % n;
        dk_st(p, dk_ld(p) + b[i % n]);
    }
}

__global__ void k_softcap(float *y, int64_t n, float cap) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = tanhf(y[i] / cap) * cap;
}

extern "C" cudaError_t dk_cuda_gated_act(void *out, const void *gu, int64_t T, int64_t I, dk_cuda_act act,
                                         dk_cuda_dtype dtype, cudaStream_t stream) {
    if (T * I == 0) return cudaSuccess;
    const unsigned block = 256, grid = dk_grid_1d((size_t)(T * I), block);
    if (dtype == DK_CUDA_BF16)
        k_gated_act<<<grid, block, 0, stream>>>((__nv_bfloat16 *)out, (const __nv_bfloat16 *)gu, T, I, (int)act);
    else
        k_gated_act<<<grid, block, 0, stream>>>((float *)out, (const float *)gu, T, I, (int)act);
    return cudaGetLastError();
}

extern "C" cudaError_t dk_cuda_plain_act(void *out, const void *x, int64_t T, int64_t I, dk_cuda_act act,
                                         dk_cuda_dtype dtype, cudaStream_t stream) {
    if (T * I == 0) return cudaSuccess;
    const unsigned block = 256, grid = dk_grid_1d((size_t)(T * I), block);
    if (dtype == DK_CUDA_BF16)
        k_plain_act<<<grid, block, 0, stream>>>((__nv_bfloat16 *)out, (const __nv_bfloat16 *)x, T * I, (int)act);
    else
        k_plain_act<<<grid, block, 0, stream>>>((float *)out, (const float *)x, T * I, (int)act);
    return cudaGetLastError();
}

extern "C" cudaError_t dk_cuda_add_bias(void *y, int64_t ld, const float *b, int64_t T, int64_t n, dk_cuda_dtype dtype,
                                        cudaStream_t stream) {
    if (T * n == 0) return cudaSuccess;
    const unsigned block = 256, grid = dk_grid_1d((size_t)(T * n), block);
    if (dtype == DK_CUDA_BF16)
        k_add_bias<<<grid, block, 0, stream>>>((__nv_bfloat16 *)y, ld, b, T, n);
    else
        k_add_bias<<<grid, block, 0, stream>>>((float *)y, ld, b, T, n);
    return cudaGetLastError();
}

extern "C" cudaError_t dk_cuda_softcap(float *y, int64_t n, float cap, cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    const unsigned block = 256;
    k_softcap<<<dk_grid_1d((size_t)n, block), block, 0, stream>>>(y, n, cap);
    return cudaGetLastError();
}
