/* rmsnorm.cu — see rmsnorm.cuh. One block of 256 threads per row; each thread owns the columns
 * j = threadIdx.x + k·256, so the in-place update of x needs no synchronisation beyond the reductions. */
#include "rmsnorm.cuh"

#include "common.cuh"

enum { NORM_THREADS = 256 };

__device__ __forceinline__ float norm_value(float v, float inv, float w, bool gemma) {
    return gemma ? (v * inv) * (1.0f + w) : w * (v * inv);
}

template <typename T>
__global__ void k_rmsnorm(T *out, const float *x, const int32_t *row_index, const float *w, int64_t dim, float eps,
                          bool gemma) {
    __shared__ float shared[32];
    const int64_t r = blockIdx.x;
    const float *xr = x + (row_index ? (int64_t)row_index[r] : r) * dim; /* (dim) */
    T *outr = out + r * dim;                                             /* (dim) */
    float ss = 0.0f;
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) ss += xr[j] * xr[j];
    ss = dk_block_sum(ss, shared);
    const float inv = 1.0f / sqrtf(ss / (float)dim + eps);
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) dk_st(outr + j, norm_value(xr[j], inv, w[j], gemma));
}

template <typename T>
__global__ void k_add_rmsnorm(float *x, const T *delta, const float *post_w, T *h, const float *w, int64_t dim,
                              float eps, bool gemma) {
    __shared__ float shared[32];
    const int64_t r = blockIdx.x;
    float *xr = x + r * dim; /* (dim) */
    if (delta) {
        const T *dr = delta + r * dim; /* (dim) */
        float inv_d = 1.0f;
        if (post_w) {
            float ss = 0.0f;
            for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
                const float d = dk_ld(dr + j);
                ss += d * d;
            }
            ss = dk_block_sum(ss, shared);
            inv_d = 1.0f / sqrtf(ss / (float)dim + eps);
        }
        for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
            const float d = dk_ld(dr + j);
            /* __fadd_rn: no FMA contraction, the product is rounded first as on the CPU */
            xr[j] = __fadd_rn(xr[j], post_w ? norm_value(d, inv_d, post_w[j], gemma) : d);
        }
    }
    if (!h) return;
    float ss = 0.0f;
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) ss += xr[j] * xr[j];
    ss = dk_block_sum(ss, shared);
    const float inv = 1.0f / sqrtf(ss / (float)dim + eps);
    T *hr = h + r * dim; /* (dim) */
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) dk_st(hr + j, norm_value(xr[j], inv, w[j], gemma));
}

extern "C" cudaError_t dk_cuda_rmsnorm(void *out, const float *x, const int32_t *row_index, const float *w,
                                       int64_t rows, int64_t dim, float eps, bool gemma, dk_cuda_dtype dtype,
                                       cudaStream_t stream) {
    if (rows == 0) return cudaSuccess;
    if (rows > 0x7fffffff) return cudaErrorInvalidValue;
    if (dtype == DK_CUDA_BF16)
        k_rmsnorm<<<(unsigned)rows, NORM_THREADS, 0, stream>>>((__nv_bfloat16 *)out, x, row_index, w, dim, eps, gemma);
    else
        k_rmsnorm<<<(unsigned)rows, NORM_THREADS, 0, stream>>>((float *)out, x, row_index, w, dim, eps, gemma);
    return cudaGetLastError();
}

extern "C" cudaError_t dk_cuda_add_rmsnorm(float *x, const void *delta, const float *post_w, void *h, const float *w,
                                           int64_t rows, int64_t dim, float eps, bool gemma, dk_cuda_dtype dtype,
                                           cudaStream_t stream) {
    if (rows == 0) return cudaSuccess;
    if (rows > 0x7fffffff || (h && !w)) return cudaErrorInvalidValue;
    if (dtype == DK_CUDA_BF16)
        k_add_rmsnorm<<<(unsigned)rows, NORM_THREADS, 0, stream>>>(x, (const __nv_bfloat16 *)delta, post_w,
                                                                   (__nv_bfloat16 *)h, w, dim, eps, gemma);
    else
        k_add_rmsnorm<<<(unsigned)rows, NORM_THREADS, 0, stream>>>(x, (const float *)delta, post_w, (float *)h, w,
                                                                   dim, eps, gemma);
    return cudaGetLastError();
}
