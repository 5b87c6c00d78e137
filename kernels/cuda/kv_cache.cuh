/* kv_cache.cuh — appending a batch's keys and values to the GPU KV cache, twin of the two memcpy calls in
 * host/model/forward.c's block() that copy each sequence's new k and v rows to cache_rows(...) + past.
 *
 * dk_cuda_kv_append: for every token t < T and column c < kv_dim
 *     k_cache[rows[t], c] = k[t, c];   v_cache[rows[t], c] = v[t, c]
 * rows[t] is the cache row of token t within the layer (sequence · capacity + position, built on the host),
 * k and v are rows of stride ldk / ldv (the k and v column blocks of the fused q‖k‖v projection output), the
 * cache rows have stride kv_dim. A plain copy in the cache's dtype (bf16 in mode BF16, fp32 in F32): the cache
 * holds exactly what attention would have read from the projection output. */
#ifndef DK_CUDA_KV_CACHE_CUH
#define DK_CUDA_KV_CACHE_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

/* k_cache, v_cache (layer rows, kv_dim) dtype; k (T, ldk), v (T, ldv) dtype; rows (T) int32 on the device. */
cudaError_t dk_cuda_kv_append(void *k_cache, void *v_cache, const void *k, int64_t ldk, const void *v, int64_t ldv,
                              const int32_t *rows, int64_t T, int64_t kv_dim, dk_cuda_dtype dtype,
                              cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
