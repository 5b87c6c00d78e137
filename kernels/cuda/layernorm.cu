/* layernorm.cu — see layernorm.cuh. One block of 256 threads per row; each thread owns the columns
 * j = threadIdx.x + k·256, so the in-place update of x needs no synchronisation beyond the reductions. */
#include "layernorm.cuh"

#include "common.cuh"

enum { NORM_THREADS = 256 };

/* LayerNorm of the fp32 row xr into outr. */
template <typename T>
__device__ void layernorm_row(T *outr, const float *xr, const float *w, const float *b, int64_t dim, float eps,
                              float *shared) {
    float sum = 0.0f;
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) sum += xr[j];
    const float mean = dk_block_sum(sum, shared) / (float)dim;
    float squares = 0.0f;
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
        const float d = xr[j] - mean;
        squares += d * d;
    }
    const float rstd = 1.0f / sqrtf(dk_block_sum(squares, shared) / (float)dim + eps);
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x)
        dk_st(outr + j, __fadd_rn(__fmul_rn(__fmul_rn(xr[j] - mean, rstd), w[j]), b[j]));
}

template <typename T>
__global__ void k_layernorm(T *out, const float *x, const int32_t *row_index, const float *w, const float *b,
                            int64_t dim, float eps) {
    __shared__ float shared[32];
    const int64_t r = blockIdx.x;
    layernorm_row(out + r * dim, x + (row_index ? (int64_t)row_index[r] : r) * dim, w, b, dim, eps, shared);
}

template <typename T>
__global__ void k_add_layernorm(float *x, const T *delta, T *h, const float *w, const float *b, int64_t dim,
                                float eps) {
    __shared__ float shared[32];
    const int64_t r = blockIdx.x;
    float *xr = x + r * dim; /* (dim) */
    if (delta)
        for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) xr[j] = __fadd_rn(xr[j], dk_ld(delta + r * dim + j));
    if (!h) return;
    __syncthreads(); /* every column of the row is updated before the reductions read it */
    layernorm_row(h + r * dim, xr, w, b, dim, eps, shared);
}

extern "C" cudaError_t dk_cuda_layernorm(void *out, const float *x, const int32_t *row_index, const float *w,
                                         const float *b, int64_t rows, int64_t dim, float eps, dk_cuda_dtype dtype,
                                         cudaStream_t stream) {
    if (rows == 0) return cudaSuccess;
    if (rows > 0x7fffffff) return cudaErrorInvalidValue;
    if (dtype == DK_CUDA_BF16)
        k_layernorm<<<(unsigned)rows, NORM_THREADS, 0, stream>>>((__nv_bfloat16 *)out, x, row_index, w, b, dim, eps);
    else
        k_layernorm<<<(unsigned)rows, NORM_THREADS, 0, stream>>>((float *)out, x, row_index, w, b, dim, eps);
    return cudaGetLastError();
}

extern "C" cudaError_t dk_cuda_add_layernorm(float *x, const void *delta, void *h, const float *w, const float *b,
                                             int64_t rows, int64_t dim, float eps, dk_cuda_dtype dtype,
                                             cudaStream_t stream) {
    if (rows == 0) return cudaSuccess;
    if (rows > 0x7fffffff || (h && (!w || !b))) return cudaErrorInvalidValue;
    if (dtype == DK_CUDA_BF16)
        k_add_layernorm<<<(unsigned)rows, NORM_THREADS, 0, stream>>>(x, (const __nv_bfloat16 *)delta,
                                                                     (__nv_bfloat16 *)h, w, b, dim, eps);
    else
        k_add_layernorm<<<(unsigned)rows, NORM_THREADS, 0, stream>>>(x, (const float *)delta, (float *)h, w, b, dim,
                                                                     eps);
    return cudaGetLastError();
}
