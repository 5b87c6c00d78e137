/* embedding.cu — see embedding.cuh. One thread per output element, grid-stride. */
#include "embedding.cuh"

#include "common.cuh"

template <typename T>
__global__ void k_embedding(float *x, const int32_t *ids, const T *table, int64_t n_tokens, int64_t H, float scale) {
    const int64_t n = n_tokens * H;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / H, j = i % H;
        const float v = dk_ld(table + (int64_t)ids[t] * H + j);
        x[i] = scale != 1.0f ? v * scale : v;
    }
}

extern "C" cudaError_t dk_cuda_embedding(float *x, const int32_t *ids, const void *table, dk_cuda_dtype table_dtype,
                                         int64_t T, int64_t H, float scale, cudaStream_t stream) {
    if (T * H == 0) return cudaSuccess;
    const unsigned block = 256, grid = dk_grid_1d((size_t)(T * H), block);
    if (table_dtype == DK_CUDA_BF16)
        k_embedding<<<grid, block, 0, stream>>>(x, ids, (const __nv_bfloat16 *)table, T, H, scale);
    else
        k_embedding<<<grid, block, 0, stream>>>(x, ids, (const float *)table, T, H, scale);
    return cudaGetLastError();
}

template <typename T>
__global__ void k_add_positions(float *x, const int32_t *positions, const T *table, int64_t n_tokens, int64_t H) {
    const int64_t n = n_tokens * H;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        x[i] = __fadd_rn(x[i], dk_ld(table + (int64_t)positions[i / H] * H + i % H));
}

extern "C" cudaError_t dk_cuda_add_position_embedding(float *x, const int32_t *positions, const void *table,
                                                      dk_cuda_dtype table_dtype, int64_t T, int64_t H,
                                                      cudaStream_t stream) {
    if (T * H == 0) return cudaSuccess;
    const unsigned block = 256, grid = dk_grid_1d((size_t)(T * H), block);
    if (table_dtype == DK_CUDA_BF16)
        k_add_positions<<<grid, block, 0, stream>>>(x, positions, (const __nv_bfloat16 *)table, T, H);
    else
        k_add_positions<<<grid, block, 0, stream>>>(x, positions, (const float *)table, T, H);
    return cudaGetLastError();
}
