/* kv_cache.cu — see kv_cache.cuh. One thread per (token, column), grid-stride. */
#include "kv_cache.cuh"

#include "common.cuh"

template <typename T>
__global__ void k_kv_append(T *k_cache, T *v_cache, const T *k, int64_t ldk, const T *v, int64_t ldv,
                            const int32_t *rows, int64_t n_tokens, int64_t kv_dim) {
    const int64_t n = n_tokens * kv_dim;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / kv_dim, c = i % kv_dim, dst = (int64_t)rows[t] * kv_dim + c;
        k_cache[dst] = k[t * ldk + c];
        v_cache[dst] = v[t * ldv + c];
    }
}

extern "C" cudaError_t dk_cuda_kv_append(void *k_cache, void *v_cache, const void *k, int64_t ldk, const void *v,
                                         int64_t ldv, const int32_t *rows, int64_t T, int64_t kv_dim,
                                         dk_cuda_dtype dtype, cudaStream_t stream) {
    if (T * kv_dim == 0) return cudaSuccess;
    const unsigned block = 256, grid = dk_grid_1d((size_t)(T * kv_dim), block);
    if (dtype == DK_CUDA_BF16)
        k_kv_append<<<grid, block, 0, stream>>>((__nv_bfloat16 *)k_cache, (__nv_bfloat16 *)v_cache,
                                                (const __nv_bfloat16 *)k, ldk, (const __nv_bfloat16 *)v, ldv, rows, T,
                                                kv_dim);
    else
        k_kv_append<<<grid, block, 0, stream>>>((float *)k_cache, (float *)v_cache, (const float *)k, ldk,
                                                (const float *)v, ldv, rows, T, kv_dim);
    return cudaGetLastError();
}
